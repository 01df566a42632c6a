"""Router analysis: load shares, dead experts, specialisation against a shuffled null."""

import numpy as np
import pytest
from sklearn.metrics import mutual_info_score

from resonance import routing


def test_shares_and_dead_experts_as_the_seed_counts_them():
    experts = np.array([[0, 1], [0, 1], [2, 0], [1, 2]] * 2500)  # expert 3 never chosen
    shares = routing.assignment_shares(experts, 4)
    assert shares.sum() == pytest.approx(1.0) and shares[3] == 0
    u = routing.utilisation(shares)
    assert u["dead_frac"] == 0.25 and u["low_frac"] == 0.25
    assert routing.utilisation(np.full(8, 1 / 8))["entropy"] == pytest.approx(1.0)
    # one assignment in 20,000 is 0.005 % < 0.01 %: still dead
    e = np.zeros(20_000, int)
    e[0] = 1
    assert routing.utilisation(routing.assignment_shares(e, 2))["dead_frac"] == 0.5
    with pytest.raises(ValueError, match="expert ids"):
        routing.assignment_shares(np.array([0, 4]), 4)
    with pytest.raises(ValueError, match="summing to 1"):
        routing.utilisation([0.5, 0.2])


def test_token_classes():
    got = routing.token_classes(["Ġthe", "ĠLord", "ing", ",", "Ġ12", "Ġ."])
    assert list(got) == ["word", "capitalised", "piece", "punctuation", "number", "punctuation"]


def test_mutual_information_matches_sklearn():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 500), rng.integers(0, 3, 500)
    assert routing.mutual_information(a, b) == pytest.approx(mutual_info_score(a, b), abs=1e-10)


def test_specialisation_against_the_shuffled_null():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 2000)
    aligned = routing.specialisation(labels * 2 + rng.integers(0, 2, 2000), labels, n_null=99)
    assert aligned["nmi"] == pytest.approx(1.0) and aligned["purity"] == 1.0
    assert aligned["nmi_p"] == pytest.approx(0.01) and aligned["nmi_excess"] > 0.9
    random = routing.specialisation(rng.integers(0, 8, 2000), labels, n_null=99)
    assert random["nmi_p"] > 0.05 and abs(random["nmi_excess"]) < 0.01
    with pytest.raises(ValueError, match="constant"):
        routing.specialisation(labels, np.zeros(2000), n_null=9)
