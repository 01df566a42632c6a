"""05_semantic_routing: the headline logic on synthetic tables, and the arms' configs."""

import numpy as np
import pandas as pd
import pytest

from resonance import stats
from resonance.experiments import semantic_routing as sr
from resonance.runs import plateau_gates


def _tables(sra_shift=0.0, n_seeds=5, plateau=True, seed=0):
    rng = np.random.default_rng(seed)
    base = {"sra": 100, "linear": 100, "dense_active": 104, "dense_total": 98,
            "sra_no_dispersion": 100, "sra_v2": 99, "dense_half": 112}
    runs, curves, util, spec, anchors, cka = [], [], [], [], [], []
    for arm, ppl in base.items():
        for s in range(n_seeds if arm in sr.HEADLINE else 3):
            final = ppl + (sra_shift if arm == "sra" else 0) + 0.3 * rng.standard_normal()
            runs.append({"arm": arm, "config": arm, "seed": s, "steps": 100, "params": 1000,
                         "val_ppl": final, "unigram_ppl": 350.0})
            for step in range(0, 101, 10):
                late = final * (1.01 if plateau else 1.3)
                curves.append({"arm": arm, "config": arm, "seed": s, "step": step,
                               "val_ppl": final if step == 100 else late if step >= 50 else 300})
            if sr.ARMS[arm]["router"] == "dense":
                continue
            for layer in (0, 1):
                util.append({"arm": arm, "seed": s, "layer": layer, "dead_frac": 0.0,
                             "low_frac": 0.0, "entropy": 0.95, "max_share": 0.1})
                for labels in sr.LABELS:
                    spec.append({"arm": arm, "seed": s, "layer": layer, "labels": labels,
                                 "n_tokens": 500 if labels == "supersense" else 2000,
                                 "nmi_excess": 0.1 + 0.01 * rng.standard_normal(),
                                 "nmi_p": 0.01, "n_null": 99})
                if arm.startswith("sra"):
                    anchors.append({"arm": arm, "seed": s, "step": 100, "layer": layer,
                                    "max_abs_cos": 0.3, "dispersion": -0.05,
                                    "centroid_norm": 0.01})
        if arm in ("sra", "linear"):
            for a in range(n_seeds):
                for b in range(a + 1, n_seeds):
                    cka.append({"arm": arm, "layer": 0, "seed_a": a, "seed_b": b,
                                "cka": 0.8 + 0.01 * rng.standard_normal()})
    runs, curves = pd.DataFrame(runs), pd.DataFrame(curves)
    gates = plateau_gates(runs, curves, 350.0, sr.MAX_UNIGRAM_RATIO, sr.PLATEAU_TOL,
                          sr.PLATEAU_WINDOW)
    return {"runs": runs, "curves": curves, "gates": gates, "utilisation": pd.DataFrame(util),
            "specialisation": pd.DataFrame(spec), "anchors": pd.DataFrame(anchors),
            "cka": pd.DataFrame(cka)}


def test_equal_routers_are_equivalent_not_a_win():
    meta = sr.summarise(_tables())
    assert meta["gate_sra"] and meta["n_seeds"] == 5
    assert meta["val_ppl_sra_vs_linear_rel_equivalent"]
    text = sr.verdict(meta)
    assert text.startswith("SRA and the linear router are equivalent")
    assert "WordNet supersenses of whole words SRA − linear" in text
    assert meta["n_supersense_tokens"] == 500 and meta["n_val_tokens"] == 2000
    assert "lower" in sr._judge(meta, "sra", "dense_active")  # dense is 4 % worse here


def test_a_real_gap_is_called_a_win_or_a_refutation():
    assert sr.verdict(sr.summarise(_tables(sra_shift=-3.0))).startswith("SRA beats")
    assert sr.verdict(sr.summarise(_tables(sra_shift=+3.0))).startswith("refuted")


def test_a_failed_plateau_makes_it_untestable():
    meta = sr.summarise(_tables(plateau=False))
    assert not meta["gate_sra"]
    assert sr.verdict(meta).startswith("untestable") and meta["headline"].startswith("untestable")


def test_paired_difference_needs_two_seeds_and_arms_share_data():
    with pytest.raises(ValueError, match=">= 2 shared seeds"):
        stats.paired_difference(pd.Series([1.0]), pd.Series([2.0]))
    config = {**sr.SIZES["paper"], "seed": 0}
    a, b = sr.train_config(config, "sra", 3), sr.train_config(config, "linear", 3)
    assert (a.seed, a.tokens, a.batch_size) == (b.seed, b.tokens, b.batch_size)
    assert dict(sr.train_config(config, "dense_total", 0).build_kwargs)["dense_hidden"] == 16 * 64
    assert sr.train_config(config, "dense_half", 0).tokens == config["tokens"] // 2
    with pytest.raises(ValueError, match="unknown parameter"):
        sr.run("smoke", n_experts_typo=3)
