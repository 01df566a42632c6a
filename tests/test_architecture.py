"""Fast tests of 02_architecture: configs and the headline logic on synthetic tables."""

import numpy as np
import pandas as pd
import pytest

from resonance.experiments import architecture as A
from resonance.experiments.common import profile_config


@pytest.mark.parametrize("profile", ["smoke", "paper"])
def test_profiles_validate(profile):
    A.validate_config(profile_config(A.SIZES, profile, 0, {}, A.VERSION))


@pytest.mark.parametrize("override, message", [
    ({"families": ["gpt2", "gpt2"]}, "two distinct"), ({"n_seeds": 1}, "n_seeds"),
    ({"shape": [30, 2]}, "multiple of 8"), ({"pretrained": ["bert"]}, "unknown pretrained"),
    ({"n_tokens": 50}, "n_tokens"), ({"n_perm": 5}, "n_perm")])
def test_bad_configs_are_rejected(override, message):
    with pytest.raises(ValueError, match=message):
        A.validate_config(profile_config(A.SIZES, "smoke", 0, override, A.VERSION))


def _tables(topology_acc=0.9, topo_p=0.01, beyond_p=0.01, concept_acc=0.4, across=0.45,
            within=0.5):
    rng = np.random.default_rng(0)
    models, gates, res = [], [], []
    for arch in ("gpt2", "llama", "gru"):
        for s in range(3):
            models.append({"model": f"{arch}-s{s}", "arch": arch, "source": "in-house", "seed": s,
                           "d_model": 64, "n_layers": 2, "params": 3e5, "val_ppl": 200.0,
                           "unigram_ppl": 400.0})
        for kind, acc in (("trained", concept_acc), ("random_init", 0.12)):
            for s in (range(3) if kind == "trained" else [0]):
                name = f"{arch}-s{s}" if kind == "trained" else f"{arch}-init"
                for layer in range(3):
                    gates.append({"model": name, "kind": kind, "layer": layer, "arch": arch,
                                  "accuracy": acc, "ci_low": acc - 0.04, "ci_high": acc + 0.04,
                                  "chance": 0.1})
    info = pd.DataFrame(models)
    names = info.model.tolist()
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            kind = "within" if a.split("-")[0] == b.split("-")[0] else "across"
            for depth in (0.0, 0.5, 1.0):
                res.append({"group": "in-house", "model_a": a, "model_b": b, "depth": depth,
                            "kind": kind, "arch_pair": "x",
                            "value": (within if kind == "within" else across) + 0.01 * rng.standard_normal(),
                            "null_mean": 0.0, "null_high": 0.02, "p_value": 0.01})
    clf = []
    for layers in ("inner", "embeddings"):
        for fs, acc, p in (("scale_only", 0.6, 0.01), ("topology", topology_acc, topo_p),
                           ("scale_topology", 0.9, 0.01)):
            clf.append({"layers": layers, "feature_set": fs, "accuracy": acc, "ci_low": acc - 0.1,
                        "ci_high": min(1.0, acc + 0.1), "chance": 1 / 3, "p_value": p,
                        "n_perm": 99, "increment": np.nan, "null_high": 0.4, "null_mean": 0.33})
        clf.append({"layers": layers, "feature_set": "topology_beyond_scale", "accuracy": 0.9,
                    "ci_low": np.nan, "ci_high": np.nan, "chance": np.nan, "p_value": beyond_p,
                    "n_perm": 99, "increment": 0.3, "null_high": 0.1, "null_mean": 0.0})
    return {"models": info, "gates": pd.DataFrame(gates), "classification": pd.DataFrame(clf),
            "resonance": pd.DataFrame(res)}


def test_topology_beyond_scale_and_shared_semantics_is_supported():
    meta = A.summarise(_tables(across=0.5, within=0.5))
    v = A.verdict(meta)
    assert v.startswith("topology: supported") and "semantics (in-house): supported" in v
    assert meta["p_floor"] == pytest.approx(0.01)


def test_topology_that_adds_nothing_to_scale_is_only_partly_supported():
    v = A.verdict(A.summarise(_tables(beyond_p=0.4)))
    assert v.startswith("topology: partly supported")


def test_chance_topology_is_not_supported():
    v = A.verdict(A.summarise(_tables(topology_acc=0.35, topo_p=0.5)))
    assert v.startswith("topology: not supported")


def test_models_without_concepts_make_semantics_untestable_not_refuted():
    meta = A.summarise(_tables(concept_acc=0.12))
    assert not meta["inhouse_gates_pass"]
    assert "untestable" in A.verdict(meta) and "not supported" not in A.verdict(meta).split(";")[1]


def test_across_far_below_within_is_not_supported():
    meta = A.summarise(_tables(across=0.2, within=0.5))
    assert meta["inhouse_ratio_last_ci_high"] < 0.9
    assert "semantics (in-house): not supported" in A.verdict(meta)
