"""Learning-curve gates, FLOPs matching, learning-rate choice (resonance.runs) and the paired
statistics 04 reads them with (resonance.stats), on synthetic tables."""

import math

import numpy as np
import pandas as pd
import pytest

from resonance import runs, stats
from test_resonance_transformer_experiment import FLOPS, SEEDS, synthetic


def test_paired_effect_recovers_a_known_shift_with_its_interval():
    ref = np.array([4.0, 4.1, 4.2, 4.3, 4.4])
    treat = ref + np.log(0.9) + np.array([0.01, -0.01, 0.0, 0.005, -0.005])
    e = stats.paired_effect(treat, ref, margin=0.02)
    assert e["n_seeds"] == 5
    assert e["ppl_change"] == pytest.approx(-0.1, abs=1e-9)
    assert e["ppl_change_low"] < -0.1 < e["ppl_change_high"] < 0
    assert e["equivalent"] is False
    same = stats.paired_effect(ref + np.array([1e-3, -1e-3, 0, 5e-4, -5e-4]), ref, margin=0.02)
    assert same["equivalent"] is True and same["ppl_change_low"] < 0 < same["ppl_change_high"]
    with pytest.raises(ValueError, match="paired values"):
        stats.paired_effect([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="NaN"):
        stats.paired_effect([1.0, np.nan], [1.0, 2.0])

def test_gates_pass_flat_curves_and_fail_falling_or_weak_ones():
    final, curves = synthetic()
    gates = runs.plateau_gates(final, curves, 300.0, 0.5, 0.01, 0.2)
    assert gates["passed"].all() and len(gates) == len(final)
    _, falling = synthetic(slope=0.02)  # ~2 % better every tenth of training
    gates = runs.plateau_gates(final, falling, 300.0, 0.5, 0.01, 0.2)
    assert not gates["plateau"].any()
    assert gates["improvement_last"].min() == pytest.approx(1 - math.exp(-0.04), rel=1e-6)
    weak = runs.plateau_gates(final, curves, 80.0, 0.5, 0.01, 0.2)  # unigram only 80: 50+ fails
    assert not weak["below_unigram"].all()
    with pytest.raises(ValueError, match="without a learning curve"):
        runs.plateau_gates(final, curves[curves["config"] != "A_random_phase"], 300.0, 0.5, 0.01, 0.2)

def test_flops_matching_reads_the_cheaper_runs_budget():
    _, curves = synthetic()
    flops = {**FLOPS, "standard_wide": 2000}  # the wide model costs twice as much per token
    m = runs.flops_matched_losses(curves, flops, "A_random_phase", "standard_wide")
    assert len(m) == 2 * len(SEEDS)
    assert (m["budget"] == 1000 * 1000).all()  # A's whole run = half the wide run
    wide = curves.query("config == 'standard_wide' and step == 50")["val_loss"].to_numpy()
    np.testing.assert_allclose(np.sort(m["ref_loss"]), np.sort(wide), rtol=1e-12)

def test_choose_lr_takes_the_best_rate_and_needs_the_whole_grid():
    tuning = pd.DataFrame({"config": ["a", "a", "b", "b"], "lr": [1e-3, 3e-3, 1e-3, 3e-3],
                           "val_loss": [4.0, 3.9, 3.5, 3.5]})
    assert runs.choose_lr(tuning, [1e-3, 3e-3]) == {"a": 3e-3, "b": 1e-3}  # tie: smaller
    with pytest.raises(ValueError, match="lacks runs"):
        runs.choose_lr(tuning, [1e-3, 3e-3, 1e-2])

def test_seed_bootstrap_separates_cross_from_within_resonance():
    rng = np.random.default_rng(0)
    rows = []
    for a in SEEDS:
        for b in SEEDS:
            rows.append({"kind": "cross", "seed_a": a, "seed_b": b,
                         "value": 0.6 + 0.01 * rng.normal()})
            if a != b:
                for kind in ("within_A", "within_S"):
                    rows.append({"kind": kind, "seed_a": a, "seed_b": b,
                                 "value": 0.8 + 0.01 * rng.normal()})
    out = stats.cross_within_bootstrap(pd.DataFrame(rows), SEEDS, n_boot=200).set_index("quantity")
    assert out.loc["cross", "value"] == pytest.approx(0.6, abs=0.01)
    assert out.loc["cross_minus_within_A", "ci_high"] < -0.15
    assert out.loc["cross", "ci_low"] < out.loc["cross", "value"] < out.loc["cross", "ci_high"]
    with pytest.raises(ValueError, match="n_boot"):
        stats.cross_within_bootstrap(pd.DataFrame(rows), SEEDS, n_boot=10)
