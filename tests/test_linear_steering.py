"""06_linear_steering: summarise/verdict on synthetic tables, and the steering statistics."""

import numpy as np
import pandas as pd
import pytest

from resonance import steering
from resonance.experiments import linear_steering as ls

IDS_T, IDS_S = [0, 3, 6], [0, 5, 10]


def _tables(mapped_share=0.5, native=2.0, rng=np.random.default_rng(0)):
    maps, errs, cka = [], [], []
    for i in IDS_T:
        for j in IDS_S:
            r2 = 0.6 if (i, j) in {(3, 10), (6, 10)} else 0.3  # best target: deeper than same depth
            maps.append({"pair": "zoo", "kind": "trained", "layer_t": i, "layer_s": j,
                         "depth_t": i / 6, "depth_s": j / 10, "r2": r2, "cos_raw": 0.95,
                         "cos_centred": r2 ** 0.5, "alpha": 1.0, "r2_mean": 0.0,
                         "cos_raw_mean": 0.93, "cos_centred_mean": 0.0,
                         "r2_shuffled": 0.0 if j == 5 else np.nan,
                         "cos_raw_shuffled": 0.9, "cos_centred_shuffled": 0.01})
            for s in range(20):
                sst = 10.0 + rng.random()
                errs.append({"pair": "zoo", "kind": "trained", "layer_t": i, "layer_s": j,
                             "sentence": s, "sse": sst * (1 - r2) * (1 + 0.05 * rng.normal()),
                             "sst": sst})
            cka.append({"pair": "zoo", "layer_a": IDS_T.index(i), "layer_b": IDS_S.index(j),
                        "value": r2, "layer_t": i, "layer_s": j})
        if i:
            maps.append({**maps[-1], "kind": "random_init", "layer_s": 5, "r2": 0.05,
                         "cos_centred": 0.2})
    eff = []
    conds = [("native", -1, 0, native), ("random_cov", -1, 0, 0.0)]
    conds += [("random", -1, k, 0.0) for k in range(99)]
    for i in (3, 6):
        conds += [("mapped", i, 0, mapped_share * native), ("mapped_raw", i, 0, native),
                  ("mapped_reversed", i, 0, -mapped_share * native), ("shuffled_map", i, 0, 0.0)]
    for cond, i, k, mu in conds:
        for p in range(16):
            eff.append({"pair": "zoo", "layer_s": 5, "layer_t": i, "condition": cond, "draw": k,
                        "prompt": p, "effect": mu + 0.3 * rng.normal(), "norm": 1.0})
    return {"maps": pd.DataFrame(maps), "errors": pd.DataFrame(errs), "cka": pd.DataFrame(cka),
            "effects": pd.DataFrame(eff), "gates": pd.DataFrame(),
            "pairs": pd.DataFrame([{"pair": "zoo", "n_pairs": 3000}])}


def test_summary_reads_maps_alignment_and_transfer():
    meta = ls.summarise(_tables(), {"n_boot": 200, "seed": 0})
    assert meta["primary"] == "zoo" and meta["primary"] and meta["n_pairs"] == 3000
    assert meta["best_r2_min"] == pytest.approx(0.6) and meta["maps_beat_nulls"]
    assert meta["raw_cosine_uninformative"] and not meta["centred_in_seed_range"]
    assert meta["r2_gain"] == pytest.approx(0.15, abs=0.02) and meta["aligned_not_same_depth"]  # (0.3 + 0) / 2
    assert meta["share_same_depth"] == 0.5  # teacher layer 6 -> student 10 is both
    assert meta["ratio"] == pytest.approx(0.5, abs=0.1) and meta["ratio_low"] < 0.5 < meta["ratio_high"]
    assert meta["native_steers"] and meta["transfer_beats_random"]
    assert meta["p_vs_random"] == pytest.approx(0.01) and not meta["success_in_seed_range"]
    assert meta["reversed_ratio"] == pytest.approx(-0.5, abs=0.1)
    text = ls.verdict(meta)
    assert "does not survive" in text and "below the seed's 0.78–0.94" in text


def test_verdict_says_untestable_when_the_native_vector_does_not_steer():
    meta = ls.summarise(_tables(native=0.0), {"n_boot": 50, "seed": 0})
    assert not meta["native_steers"]
    assert "untestable" in ls.verdict(meta)


def test_transfer_stats_and_word_sets():
    rng = np.random.default_rng(1)
    native = 1.0 + 0.1 * rng.normal(size=30)
    out = steering.transfer_stats(native, 0.8 * native, rng.normal(0, 0.1, 99), n_boot=200)
    assert out["ratio"] == pytest.approx(0.8) and out["p_vs_random"] == pytest.approx(0.01)
    with pytest.raises(ValueError, match="same prompts"):
        steering.transfer_stats(native, native[:-1], np.zeros(99))
    assert steering.neutral_prompts(["a road ran east", "a happy day", "the field"], 2) == \
        ["a road ran east", "the field"]
    with pytest.raises(ValueError, match="free of sentiment"):
        steering.neutral_prompts(["a happy day"], 1)


def test_run_rejects_too_few_random_vectors():
    with pytest.raises(ValueError, match="n_random >= 19"):
        ls.run("smoke", n_random=5)
    with pytest.raises(ValueError, match="unknown parameter"):
        ls.run("smoke", n_randoms=99)
