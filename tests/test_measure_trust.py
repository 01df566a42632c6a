"""08_measure_trust: the invariance routine, the seed bootstrap, and summarise/verdict on
synthetic tables."""

import numpy as np
import pandas as pd
import pytest

from resonance import invariance
from resonance.experiments import measure_trust as mt
from resonance.stats import seed_pair_bootstrap


# ------------------------------------------------------------------ invariance routine

def test_invariance_table_finds_known_invariances():
    t = invariance.invariance_table(["cka_linear", "mutual_knn", "pwcca"], n=40, d=6, seed=1)
    cell = t.set_index(["measure", "transform"])["invariant"]
    assert cell["cka_linear", "rotation"] and cell["cka_linear", "translation"]
    assert not cell["cka_linear", "invertible_linear"]
    assert not cell["mutual_knn", "translation"]        # cosine neighbours of uncentred rows
    assert cell["pwcca", "invertible_linear"]            # untruncated CCA
    assert not cell["cka_linear", "row_shuffle"]          # the pairing matters
    assert set(t["transform"]) == set(invariance.TRANSFORMS)


def test_invariance_matches_registry_expectations():
    t = mt.invariances({"invariance": {"n": 40, "d": 6}, "seed": 0})
    bad = t[t["invariant"] != t["expected"]]
    assert bad.empty, bad[["measure", "transform", "change"]]


def test_transform_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown transform 'shear'"):
        invariance.transform(np.ones((5, 2)), "shear", np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown measure"):
        invariance.invariance_table(["cka"], n=20, d=3)
    with pytest.raises(ValueError, match="need n >= 12"):
        invariance.invariance_table(["cka_linear"], n=5, d=3)


# ------------------------------------------------------------------ cluster bootstrap

def test_seed_pair_bootstrap_resamples_seeds():
    seeds = range(5)
    a, b = zip(*[(i, j) for i in seeds for j in seeds if i != j])
    # seed 0 is a bad model: every pair that involves it scores 0, all others 1
    values = [0.0 if 0 in (i, j) else 1.0 for i, j in zip(a, b)]
    mean, low, high = seed_pair_bootstrap(values, a, b, n_boot=500, seed=0)
    assert mean == pytest.approx(12 / 20)
    assert low < 0.45 and high == pytest.approx(1.0)   # a draw without seed 0 is all ones
    same, lo2, hi2 = seed_pair_bootstrap(np.ones(20), a, b, n_boot=100)
    assert (same, lo2, hi2) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="with itself"):
        seed_pair_bootstrap([1.0], [0], [0])
    assert np.isnan(seed_pair_bootstrap([1.0, 0.0], [0, 1], [1, 0])[1])  # 2 seeds: no interval


# ------------------------------------------------------------------ summarise / verdict

def _ident(hit_rate: dict, n_layers=4, seeds=range(4), condition="trained"):
    rows = []
    rng = np.random.default_rng(0)
    for label, rate in hit_rate.items():
        registry = mt.IDENTIFICATION[label][0]
        for a in seeds:
            for b in seeds:
                if a == b:
                    continue
                for layer in range(1, n_layers + 1):
                    best = layer if rng.random() < rate else (layer % n_layers) + 1
                    rows.append({"condition": condition, "measure": label, "registry": registry,
                                 "seed_a": a, "seed_b": b, "layer": layer, "best": best,
                                 "n_layers": n_layers})
    return pd.DataFrame(rows)


def _grounding(passing: set):
    """Grounding rows: every test passed by the measures in ``passing``, failed by the rest."""
    rows = []
    for label in mt.IDENTIFICATION:
        for test in mt.TESTS:
            ok = label in passing
            chance = mt.CHANCE[test]
            value = chance + (0.4 if ok else 0.0)
            rows.append({"measure": label, "test": test, "value": value,
                         "ci_low": value - (0.1 if ok else 0.2), "ci_high": value + 0.1,
                         "chance": chance, "p": 0.01 if test in mt.SEPARATION else np.nan})
    return pd.DataFrame(rows)


def _classifiers(real_acc=0.95):
    rows = [{"variant": v, "seed": s, "label_noise": n, "shortcut": sc,
             "train_accuracy": 1.0, "test_accuracy": real_acc if v == "real" else
             (0.1 if v == "random" else 0.8), "follows_code": 0.4 if sc else 0.1}
            for v, (n, sc) in mt.VARIANTS.items() for s in range(3)]
    return pd.DataFrame(rows)


def _tables(hit_rate, ppl=100.0, passing=("linear CKA",), real_acc=0.95):
    inv = mt.invariances({"invariance": {"n": 30, "d": 5}, "seed": 0})
    ref = pd.DataFrame([{"key": "x", "check": "x", "measure": "cka_linear", "library": 0.5,
                         "reference": 0.5, "agrees": True}])
    models = pd.DataFrame({"seed": range(4), "val_ppl": ppl, "unigram_ppl": 400.0,
                           "n_stimuli": 100})
    ident = pd.concat([_ident(hit_rate), _ident({k: 0.0 for k in hit_rate}, condition="init")])
    return {"invariances": inv, "reference": ref, "models": models, "identification": ident,
            "classifiers": _classifiers(real_acc), "grounding": _grounding(set(passing))}


def test_summarise_separates_reliable_from_chance_measures():
    meta = mt.summarise(_tables({"linear CKA": 1.0, "SVCCA 99 %": 0.0}), n_boot=200)
    assert meta["identifies_reliably"] == ["linear CKA"]
    assert meta["identifies_poorly"] == ["SVCCA 99 %"]
    assert meta["trained_linear_cka_accuracy"] == 1.0
    assert meta["trained_svcca_99_accuracy"] == 0.0
    assert meta["chance"] == 0.25 and meta["gate_passed"] and meta["classifier_gate_passed"]
    assert meta["best_measure"] == "linear CKA"
    text = mt.verdict(meta)
    verdicts = dict(meta["verdicts"])
    assert "trust it to match layers" in verdicts["linear CKA"]
    assert "do not use it to match layers" in verdicts["SVCCA 99 %"]
    assert "untrained twins 0%" in verdicts["linear CKA"]
    assert "1 of 13 measures" in text and "FAILED" not in text


def test_grounding_verdicts_follow_the_intervals():
    meta = mt.summarise(_tables({"linear CKA": 1.0, "RSA": 1.0}), n_boot=50)
    assert meta["grounding_all_passed"] == ["linear CKA"]
    assert meta["grounding_linear_cka_random_labels_passed"]
    assert not meta["grounding_rsa_output_passed"]          # interval reaches chance
    verdicts = dict(meta["verdicts"])
    assert "passes every grounding test" in verdicts["linear CKA"]
    assert "fails real vs random labels" in verdicts["RSA"]
    assert "Its value changes under rotation, translation" in verdicts["RSA"]
    assert "1 of 13 pass all five" in meta["headline"]


def test_failed_capability_gates_withhold_verdicts():
    meta = mt.summarise(_tables({"linear CKA": 1.0}, ppl=390.0), n_boot=50)
    assert not meta["gate_passed"]
    assert "Capability gate FAILED" in mt.verdict(meta)
    assert "no verdict" in dict(meta["verdicts"])["linear CKA"]
    meta = mt.summarise(_tables({"linear CKA": 1.0}, real_acc=0.3), n_boot=50)
    assert not meta["classifier_gate_passed"]
    assert "Classifier gate FAILED" in mt.verdict(meta)


def test_sizes_have_every_profile_and_the_paper_sizes_the_issue_asks_for():
    assert set(mt.SIZES) == {"smoke", "paper", "hub"}
    paper = mt.SIZES["paper"]
    assert len(paper["seeds"]) >= 5 and paper["n_stimuli"] >= 2000
    assert paper["model"]["n_layers"] >= 6 and paper["n_perm"] >= 99
    assert len(paper["classifiers"]["seeds"]) >= 5 and paper["rtd_trials"] == 10
    with pytest.raises(ValueError, match="unknown parameter"):
        mt.run("smoke", n_seeds=3)
