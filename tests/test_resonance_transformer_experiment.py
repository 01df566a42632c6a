"""04's statistics and verdict on synthetic tables (no training)."""

import math

import numpy as np
import pandas as pd
import pytest

from resonance.experiments import resonance_transformer as rtx

CONFIG = {**rtx.SIZES["smoke"], "seed": 0, "n_seeds": 5, "tokens": 1000, "n_seeds_ablation": 3,
          "configs": list(rtx.CONFIGS)}
SEEDS = list(range(5))
# A true change in perplexity per configuration, relative to standard_fixed.
TRUE = {"A_random_phase": 0.0, "B_rhyme_phase": -0.01, "B_shuffled": -0.01,
        "C_small_rhyme": 0.08, "standard_seed": 0.25, "standard_fixed": 0.0, "A_no_bias": 0.0,
        "A_no_blend": 0.0, "standard_wide": -0.05}
FLOPS = {name: 1000 for name in rtx.CONFIGS}


def synthetic(noise=0.002, slope=0.0, seed=0):
    """final and curves tables: loss = log(50) + log(1 + TRUE) + a seed effect + noise, with
    a curve that falls from log(1000) and is flat over the last half (unless ``slope``)."""
    rng = np.random.default_rng(seed)
    final_rows, curve_rows = [], []
    for arm in rtx.ARMS:
        for name in rtx.CONFIGS:
            for s in SEEDS:
                end = math.log(50) + math.log1p(TRUE[name]) + 0.01 * s + noise * rng.normal()
                for step in range(0, 11):
                    if step == 0:
                        loss = math.log(1000)
                    else:
                        loss = end + max(0, 5 - step) * 0.3 + slope * (10 - step)
                    curve_rows.append({"arm": arm, "config": name, "seed": s, "step": step * 10,
                                       "tokens": step * 100, "val_loss": loss,
                                       "val_ppl": math.exp(loss)})
                final_rows.append({"arm": arm, "config": name, "seed": s, "lr": 3e-4,
                                   "params": 100, "steps": 100, "val_loss": end,
                                   "val_ppl": math.exp(end)})
    return pd.DataFrame(final_rows), pd.DataFrame(curve_rows)


def tables(final, curves, unigram=300.0):
    gates = rtx.run_gates(final, curves, unigram, 0.5, 0.01, 0.2)
    final = final.merge(gates[["arm", "config", "seed", "unigram_ratio", "improvement_last",
                               "below_unigram", "plateau", "passed"]])
    return {"final": final, "curves": curves, "summary": rtx.summary_table(final),
            "effects": rtx.effects_table(final, curves, FLOPS, 0.02)}


def test_paired_effect_recovers_a_known_shift_with_its_interval():
    ref = np.array([4.0, 4.1, 4.2, 4.3, 4.4])
    treat = ref + np.log(0.9) + np.array([0.01, -0.01, 0.0, 0.005, -0.005])
    e = rtx.paired_effect(treat, ref, margin=0.02)
    assert e["n_seeds"] == 5
    assert e["ppl_change"] == pytest.approx(-0.1, abs=1e-9)
    assert e["ppl_change_low"] < -0.1 < e["ppl_change_high"] < 0
    assert e["equivalent"] is False
    same = rtx.paired_effect(ref + np.array([1e-3, -1e-3, 0, 5e-4, -5e-4]), ref, margin=0.02)
    assert same["equivalent"] is True and same["ppl_change_low"] < 0 < same["ppl_change_high"]
    with pytest.raises(ValueError, match="paired values"):
        rtx.paired_effect([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="NaN"):
        rtx.paired_effect([1.0, np.nan], [1.0, 2.0])


def test_gates_pass_flat_curves_and_fail_falling_or_weak_ones():
    final, curves = synthetic()
    gates = rtx.run_gates(final, curves, 300.0, 0.5, 0.01, 0.2)
    assert gates["passed"].all() and len(gates) == len(final)
    _, falling = synthetic(slope=0.02)  # ~2 % better every tenth of training
    gates = rtx.run_gates(final, falling, 300.0, 0.5, 0.01, 0.2)
    assert not gates["plateau"].any()
    assert gates["improvement_last"].min() == pytest.approx(1 - math.exp(-0.04), rel=1e-6)
    weak = rtx.run_gates(final, curves, 80.0, 0.5, 0.01, 0.2)  # unigram only 80: 50+ fails
    assert not weak["below_unigram"].all()
    with pytest.raises(ValueError, match="without a learning curve"):
        rtx.run_gates(final, curves[curves["config"] != "A_random_phase"], 300.0, 0.5, 0.01, 0.2)


def test_flops_matching_reads_the_cheaper_runs_budget():
    _, curves = synthetic()
    flops = {**FLOPS, "standard_wide": 2000}  # the wide model costs twice as much per token
    m = rtx.flops_matched_losses(curves, flops, "A_random_phase", "standard_wide")
    assert len(m) == 2 * len(SEEDS)
    assert (m["budget"] == 1000 * 1000).all()  # A's whole run = half the wide run
    wide = curves.query("config == 'standard_wide' and step == 50")["val_loss"].to_numpy()
    np.testing.assert_allclose(np.sort(m["ref_loss"]), np.sort(wide), rtol=1e-12)


def test_summarise_and_verdict_state_the_fair_gap_from_the_tables():
    final, curves = synthetic()
    meta = rtx.summarise(tables(final, curves), CONFIG, 300.0)
    assert meta["all_passed"] and meta["n_runs"] == 2 * 9 * 5
    assert meta["published_gap_tuned"] == pytest.approx(100 * (1 / 1.25 - 1), abs=0.3)
    assert meta["published_gap_tuned_class"] == "better"
    assert abs(meta["fair_gap_tuned"]) < 0.3 and meta["fair_gap_tuned_class"] == "equivalent"
    assert meta["params_faithful_class"] == "worse" and meta["init_effect_tuned_class"] == "worse"
    text = rtx.verdict(meta)
    assert text == meta["verdict"]
    assert "All 90 runs passed" in text and "rules out anything like" in text
    assert f"{meta['fair_gap_tuned']:+.1f} %" in text
    # if the phase really were 57 % better than a fair Standard, the verdict must not say so
    TRUE_A = dict(TRUE)
    try:
        TRUE["A_random_phase"] = -0.57
        f2, c2 = synthetic()
        meta2 = rtx.summarise(tables(f2, c2), CONFIG, 300.0)
    finally:
        TRUE.clear()
        TRUE.update(TRUE_A)
    assert meta2["fair_gap_tuned_class"] == "better"
    assert "does not rule out" in meta2["verdict"]


def test_verdict_reports_failed_gates():
    final, curves = synthetic(slope=0.02)
    meta = rtx.summarise(tables(final, curves), CONFIG, 300.0)
    assert not meta["all_passed"]
    assert meta["verdict"].startswith(f"{meta['n_runs']} of {meta['n_runs']} runs failed")


def test_choose_lr_takes_the_best_rate_and_needs_the_whole_grid():
    tuning = pd.DataFrame({"config": ["a", "a", "b", "b"], "lr": [1e-3, 3e-3, 1e-3, 3e-3],
                           "val_loss": [4.0, 3.9, 3.5, 3.5]})
    assert rtx.choose_lr(tuning, [1e-3, 3e-3]) == {"a": 3e-3, "b": 1e-3}  # tie: smaller
    with pytest.raises(ValueError, match="lacks runs"):
        rtx.choose_lr(tuning, [1e-3, 3e-3, 1e-2])


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
    out = rtx.seed_bootstrap_cka(pd.DataFrame(rows), SEEDS, n_boot=200).set_index("quantity")
    assert out.loc["cross", "value"] == pytest.approx(0.6, abs=0.01)
    assert out.loc["cross_minus_within_A", "ci_high"] < -0.15
    assert out.loc["cross", "ci_low"] < out.loc["cross", "value"] < out.loc["cross", "ci_high"]
    with pytest.raises(ValueError, match="n_boot"):
        rtx.seed_bootstrap_cka(pd.DataFrame(rows), SEEDS, n_boot=10)


def test_the_paper_plan_pairs_seeds_and_tunes_on_a_seed_of_its_own():
    from resonance.experiments.common import profile_config

    config = profile_config(rtx.SIZES, "paper", 0, {}, version=rtx.VERSION)
    jobs = rtx.all_jobs(config, {name: 1e-2 for name in config["configs"]})
    by_arm = {arm: [j for j in jobs if j["arm"] == arm] for arm in ("tuning", "faithful", "tuned")}
    assert {j["seed"] for j in by_arm["tuning"]} == {config["tuning_seed"]}
    assert config["tuning_seed"] not in rtx.seeds_of(config)
    tuned = {(j["config"], j["seed"]) for j in by_arm["tuned"]}
    assert {s for c, s in tuned if c == "A_random_phase"} == set(range(config["n_seeds"]))
    assert {s for c, s in tuned if c == "A_no_bias"} == set(range(config["n_seeds_ablation"]))
    faithful = by_arm["faithful"][0]["train_config"]
    assert faithful.lr == 3e-4 and faithful.decay_all_params and faithful.warmup == 0
    assert faithful.schedule == "constant" and faithful.batch_size == 32
    assert dict(faithful.build_kwargs)["loss_scale"] == 4.0
    assert len({j["train_config"].key for j in jobs}) == len(jobs)


def test_effects_pair_only_the_seeds_both_configurations_have():
    final, curves = synthetic()
    keep = ~((final["config"] == "A_no_bias") & (final["seed"] >= 3))
    final = final[keep]
    curves = curves[~((curves["config"] == "A_no_bias") & (curves["seed"] >= 3))]
    effects = rtx.effects_table(final, curves, FLOPS, 0.02)
    bias = effects[(effects["key"] == "bias") & (effects["basis"] == "tokens")]
    fair = effects[(effects["key"] == "fair_gap") & (effects["basis"] == "tokens")]
    assert (bias["n_seeds"] == 3).all() and (fair["n_seeds"] == 5).all()


def test_the_headline_says_whether_the_runs_plateaued():
    final, curves = synthetic()
    assert "every run at its plateau" in rtx.summarise(tables(final, curves), CONFIG, 300.0)[
        "headline"]
    final, curves = synthetic(slope=0.02)
    assert "0 of 90 runs past the plateau gates" in rtx.summarise(
        tables(final, curves), CONFIG, 300.0)["headline"]
