"""Headline logic of 09_model_use on synthetic tables (no training)."""

import itertools

import numpy as np
import pandas as pd
import pytest

from resonance.experiments import model_use as M


def _tables(selection: str = "resonance", shape: str = "u", distil: str = "up", gate=True,
            n: int = 12, seed: int = 0):
    """``n`` models; a hidden 'position' u in [0, 1] sets every pair's resonance. Agreement
    follows resonance (``selection='resonance'``) or perplexity (``'ppl'``); the ensemble gain
    is an inverted U of resonance (``shape='u'``) or rises with it (``'line'``)."""
    rng = np.random.default_rng(seed)
    u = rng.permutation(np.linspace(0, 1, n))
    ppl = rng.uniform(100, 200, n)
    models = pd.DataFrame({"model": [f"m{i}" for i in range(n)], "family": "gpt2", "seed": range(n),
                           "params": rng.integers(10_000, 100_000, n), "val_ppl": ppl,
                           "ppl_ratio": ppl / 400, "gate": gate, "eval_loss": np.log(ppl),
                           "role": ["reference"] + ["candidate"] * (n - 1)})
    rows = []
    for a, b in itertools.combinations(range(n), 2):
        res = 1 - abs(u[a] - u[b])
        agree = res if selection == "resonance" else -ppl[b if a == 0 else a] / 200
        gain = -(res - 0.6) ** 2 if shape == "u" else res
        rows.append({"model_a": f"m{a}", "model_b": f"m{b}", "resonance": res,
                     "agreement": agree + 0.001 * rng.standard_normal(),
                     "ensemble_loss": 5.0, "gain": gain + 0.002 * rng.standard_normal(),
                     "quality_gap": abs(np.log(ppl[a] / ppl[b]))})
    dist = []
    for t, (r, g) in enumerate([(0.2, 0.01), (0.4, 0.02), (0.6, 0.05)]):
        for s in range(3):
            dist.append({"student": f"t{t}-s{s}", "type": f"t{t}", "family": "gpt2", "seed": s,
                         "teacher": "m0", "resonance": r + 0.01 * s,
                         "gain": (g if distil == "up" else -g) + 0.001 * s, "gate": True})
    config = pd.DataFrame([{"n_boot": 200, "n_perm": 99, "n_splits": 20, "seed": seed}])
    return {"models": models, "pairs": pd.DataFrame(rows), "distillation": pd.DataFrame(dist),
            "config": config}


def test_all_three_claims_supported_when_built_in():
    meta = M.summarise(_tables())
    v = M.verdict(meta)
    assert meta["sel_rho_resonance"] > 0.9 and meta["sel_minus_neg_ppl_ci"][0] > 0
    assert meta["sel_p_resonance"] == pytest.approx(0.01)
    assert meta["int_vertex_inside"] and meta["int_quadratic_wins"] >= 0.95
    assert meta["dist_rho"] > 0.9 and meta["dist_p"] < 0.05
    assert "selection supported" in v and "inverted U supported" in v
    assert "distillation supported" in v
    assert M.headline(meta).startswith("resonance for selection: supported")


def test_baselines_and_monotone_win_when_they_should():
    meta = M.summarise(_tables(selection="ppl", shape="line", distil="down"))
    v = M.verdict(meta)
    assert meta["sel_rho_neg_ppl"] > 0.9 and meta["sel_minus_neg_ppl_ci"][1] < 0
    assert "selection refuted" in v
    assert meta["int_rmse_monotone"] < meta["int_rmse_quadratic"]
    assert "inverted U refuted" in v
    assert meta["dist_rho_ci"][1] < 0 and "distillation refuted" in v


def test_failed_gates_make_every_claim_untestable():
    t = _tables(gate=False)
    t["distillation"]["gate"] = [True] * 3 + [False] * 6
    meta = M.summarise(t)
    assert meta["n_gated"] == 0 and len(meta["failed_gate"]) == 12
    v = M.verdict(meta)
    assert v.count("untestable") == 3 and "1 of 3 student types" in v
    assert set(M.words(meta).values()) == {"untestable"}


def test_run_refuses_a_reference_outside_the_pool_and_too_few_permutations():
    with pytest.raises(ValueError, match="references"):
        M.run("smoke", references=[["gpt2", 999, 2, 0]])
    with pytest.raises(ValueError, match="n_perm"):
        M.run("smoke", n_perm=19)
