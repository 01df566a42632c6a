"""04's summary and verdict on synthetic tables (no training); the statistics it uses are
tested in test_runs.py."""

import math

import numpy as np
import pandas as pd
import pytest

from resonance import runs
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
    gates = runs.plateau_gates(final, curves, unigram, 0.5, 0.01, 0.2)
    final = final.merge(gates[["arm", "config", "seed", "unigram_ratio", "improvement_last",
                               "below_unigram", "plateau", "passed"]])
    return {"final": final, "curves": curves, "summary": runs.perplexity_summary(final, rtx.PUBLISHED),
            "effects": rtx.effects_table(final, curves, FLOPS, 0.02)}


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
