"""Headline logic of 01_scale on synthetic tables (no training)."""

import numpy as np
import pandas as pd
import pytest

from resonance.experiments import scale


def _tables(medium_gap: float, noise: float = 0.01, concept_acc: float = 0.4, seed: int = 0):
    rng = np.random.default_rng(seed)
    ladder = [(0, 10_000), (1, 40_000), (2, 160_000)]
    models, gates, pairs, topo = [], [], [], []
    for rung, params in ladder:
        for s in range(5):
            role = "reference" if rung == 2 and s < 2 else "comparand"
            name = f"m{rung}-s{s}"
            models.append({"model": name, "rung": rung, "d_model": 16 * (rung + 1), "n_layers": 2,
                           "seed": s, "params": params, "role": role, "val_ppl": 100.0,
                           "val_ppl_half": 120.0, "unigram_ppl": 400.0})
            for layer in range(3):
                gates.append({"model": name, "rung": rung, "kind": "trained", "layer": layer,
                              "accuracy": concept_acc, "ci_low": concept_acc - 0.05,
                              "ci_high": concept_acc + 0.05, "chance": 0.1})
        for layer in range(3):
            gates.append({"model": f"m{rung}-init", "rung": rung, "kind": "random_init",
                          "layer": layer, "accuracy": 0.12, "ci_low": 0.08, "ci_high": 0.16,
                          "chance": 0.1})
    base = {0: 0.2, 1: 0.5 - medium_gap, 2: 0.5}
    for rung, params in ladder:
        for s in (2, 3, 4):
            for r in (0, 1):
                for stim in scale.STIMULI:
                    for measure in scale.MEASURES:
                        pairs.append({"model_a": f"m{rung}-s{s}", "model_b": f"m2-s{r}",
                                      "rung": rung, "params": params, "seed_a": s, "seed_b": r,
                                      "stimuli": stim, "measure": measure, "n_null": 99,
                                      "value": base[rung] + noise * rng.standard_normal(),
                                      "null_high": 0.05, "p_value": 0.01})
                for layer in ("last", "embeddings"):
                    topo.append({"model_a": f"m{rung}-s{s}", "model_b": f"m2-s{r}",
                                 "layer": layer, "rung": rung, "value": 1.0, "null_mean": 2.0,
                                 "p_value": 0.01, **{f"null_{k}": 2.0 for k in range(99)}})
    return {"models": pd.DataFrame(models), "gates": pd.DataFrame(gates),
            "pairs": pd.DataFrame(pairs), "topology": pd.DataFrame(topo)}


def test_equal_medium_and_ceiling_is_supported_by_tost():
    meta = scale.summarise(_tables(medium_gap=0.0))
    assert meta["primary_equivalent"] and meta["primary_tost_p_holm"] < 0.05
    assert scale.verdict(meta).startswith("supported")
    assert not meta["nonlinear_decidable"]
    assert "undecidable" in scale.verdict(meta)


def test_a_medium_below_the_ceiling_is_refuted_not_equivalent():
    meta = scale.summarise(_tables(medium_gap=0.2))
    assert meta["primary_ci_high"] < 0 and not meta["primary_equivalent"]
    assert meta["n_cells_below"] == 4
    assert scale.verdict(meta).startswith("refuted")


def test_noisy_cells_that_contain_zero_are_inconclusive_not_supported():
    meta = scale.summarise(_tables(medium_gap=0.0, noise=0.3, seed=3))
    assert meta["primary_ci_low"] < 0 < meta["primary_ci_high"]
    assert scale.verdict(meta).startswith("inconclusive")


def test_failed_concept_gate_makes_the_claim_untestable():
    meta = scale.summarise(_tables(medium_gap=0.0, concept_acc=0.12))
    assert not meta["gate_concept_rung1"]
    assert scale.verdict(meta).startswith("untestable")


def test_run_rejects_all_seeds_as_references():
    with pytest.raises(ValueError, match="n_references"):
        scale.run("smoke", n_references=3)
