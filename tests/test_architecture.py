"""Fast tests of the 02_architecture helpers (no models, no training); the classifier, concept
accuracy and Mapper purity it imports are tested in test_decoding.py."""

import numpy as np
import pandas as pd
import pytest

from resonance.experiments import architecture as A
from resonance.experiments.common import profile_config


def test_stratified_subsets_are_disjoint_and_balanced():
    labels = np.repeat(list("abcde"), 8)
    subsets = A.stratified_subsets(labels, 4, seed=0)
    assert len(subsets) == 4
    joined = np.concatenate(subsets)
    assert sorted(joined.tolist()) == list(range(len(labels)))
    for s in subsets:
        assert set(pd.Series(labels[s]).value_counts()) == {2}


def test_depth_layers_and_bootstrap():
    assert A.depth_layers(4, [0, 0.5, 1]) == [0, 2, 4]
    assert A.depth_layers(30, [0, 0.1, 1]) == [0, 3, 30]
    mean, lo, hi = A.bootstrap_mean([1.0, 2.0, 3.0], 200, seed=0)
    assert mean == 2.0 and 1.0 <= lo <= mean <= hi <= 3.0
    with pytest.raises(ValueError):
        A.bootstrap_mean([], 10, 0)


@pytest.mark.parametrize("profile", ["smoke", "paper"])
def test_profiles_validate(profile):
    config = profile_config(A.SIZES, profile, 0, {})
    A.validate_config(config)
    if profile == "paper":
        assert config["n_seeds"] >= 3
        # the GPT-2 shape is a rung of 01_scale's ladder, so the trained seeds are shared
        from resonance.experiments import scale
        assert config["shape"] in profile_config(scale.SIZES, "paper", 0, {})["ladder"]


@pytest.mark.parametrize("override, message", [
    ({"families": ["gpt2"]}, "two distinct"),
    ({"families": ["gpt2", "transformer-xl"]}, "unknown families"),
    ({"n_seeds": 1}, "n_seeds"),
    ({"n_subsets": 3}, "divisible"),
    ({"n_per_concept": 4, "n_subsets": 2}, ">= 8"),
    ({"pretrained": ["bert-large"]}, "unknown pretrained"),
    ({"map_pairs": [["gpt2-s0", "gpt2-s7"]]}, "map pair"),
    ({"shape": [100, 3]}, "shape"),
    ({"shape": [128]}, "shape"),
])
def test_bad_configs_are_rejected(override, message):
    config = profile_config(A.SIZES, "smoke", 0, override)
    with pytest.raises(ValueError, match=message):
        A.validate_config(config)


def test_unknown_override_is_rejected():
    with pytest.raises(ValueError, match="unknown parameter"):
        A.run("smoke", n_layers=3)


def test_local_cka_rows_signal_and_within_concept_null():
    rng = np.random.default_rng(0)
    labels = np.repeat(["a", "b", "c"], 12)
    X = rng.standard_normal((36, 8))
    Q, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    rows = A.local_cka_rows(X, 2.0 * X @ Q, labels, rng)  # same geometry within every concept
    assert [r["concept"] for r in rows] == ["a", "b", "c"]
    assert all(r["value"] == pytest.approx(1.0) for r in rows)
    assert all(abs(r["null"]) < 0.5 for r in rows)
    # a second cloud unrelated to X: local CKA near zero for every concept
    unrelated = A.local_cka_rows(X, rng.standard_normal((36, 8)), labels, rng)
    assert all(abs(r["value"]) < 0.5 for r in unrelated)


def test_local_by_concept_summarises_the_last_depth():
    local = pd.DataFrame([
        {"group": "in-house", "kind": kind, "concept": c, "depth": depth, "value": v, "null": 0.0}
        for kind, base in (("within", 0.8), ("across", 0.4))
        for c in ("a", "b") for depth in (0.0, 1.0) for v in (base - 0.05, base + 0.05)])
    table = A.local_by_concept(local, n_boot=100)
    assert len(table) == 4  # (kind, concept) at depth 1 only
    assert table.set_index(["kind", "concept"]).loc[("across", "a"), "mean"] == pytest.approx(0.4)
    meta = A._local_summary(table)
    assert meta["inhouse_local_concepts_above_null"] == 2
    assert meta["inhouse_local_concepts_below_ceiling"] == 2
