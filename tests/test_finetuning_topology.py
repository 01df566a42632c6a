import itertools

import numpy as np
import pandas as pd
import pytest

from resonance import topology, trajectories
from resonance.experiments import finetuning_topology as ft7

STEPS = list(range(0, 13))
LAYERS = [0, 2]
CONFIG = {"objectives": ["kjv", "fortunes", "wordnet"], "schedules": ["cosine", "constant"],
          "n_seeds": 2, "seed": 0, "n_checkpoints": 12, "n_per_corpus": 10, "n_perm": 199,
          "n_perm_class": 19}


def _path(kind: str, rng) -> np.ndarray:
    """Positions along a 1-d path: 'front' jumps early then settles; 'steady' walks evenly."""
    if kind == "front":
        steps = 5 * np.exp(-np.arange(12) / 1.5) + 0.05 * rng.random(12)
    else:
        steps = 1 + 0.05 * rng.random(12)
    return np.r_[0.0, np.cumsum(steps)]


def _synthetic_tables(topology_kind: dict, geometry_kind: str = "steady") -> dict:
    rng = np.random.default_rng(0)
    dist, feats, geo, beh, floor = [], [], [], [], []
    for obj, seed, sched in itertools.product(CONFIG["objectives"], [0, 1], CONFIG["schedules"]):
        cols = {"objective": obj, "seed": seed, "schedule": sched}
        shift = {"kjv": 0.0, "fortunes": 3.0, "wordnet": -3.0}[obj]
        for measure in ft7.MEASURES:
            layers = [-1] if measure in ft7.LAYERLESS else LAYERS
            for layer in layers:
                kind = topology_kind[(obj, sched)] if measure == ft7.TOPOLOGY else geometry_kind
                pos = _path(kind, rng)
                for i, j in itertools.combinations(range(len(STEPS)), 2):
                    dist.append({**cols, "measure": measure, "layer": layer, "step_a": STEPS[i],
                                 "step_b": STEPS[j], "value": abs(pos[j] - pos[i])})
        for step, layer, sub in itertools.product(STEPS, LAYERS, range(2)):
            f = {name: rng.normal() + shift * step / 12 for name in topology.SUMMARY_FEATURES}
            feats.append({**cols, "step": step, "layer": layer, "subsample": sub, **f})
            geo.append({**cols, "step": step, "layer": layer, "subsample": sub,
                        "centroid_drift": rng.normal(), "total_variance": rng.normal(),
                        "mean_distance": rng.normal()})
            floor.append({**cols, "step": step, "layer": layer, "w2": 0.5})
        for step, corpus in itertools.product(STEPS, ft7.EVAL_CORPORA):
            own = corpus in ft7.OBJECTIVES[obj]
            beh.append({**cols, "step": step, "corpus": corpus,
                        "val_loss": 6.0 - (2.0 * step / 12 if own else 0.0)})
    base = pd.DataFrame({"corpus": list(ft7.EVAL_CORPORA), "unigram_loss": [6.5, 7.0, 7.0],
                         "base_val_loss": [4.7, 6.0, 6.0], "base_train_val_loss": 4.7})
    return {"distances": pd.DataFrame(dist), "features": pd.DataFrame(feats),
            "geometry": pd.DataFrame(geo), "behaviour": pd.DataFrame(beh),
            "noise_floor": pd.DataFrame(floor), "base": base}


def test_summarise_detects_front_loading_and_decodable_objectives():
    kinds = {(o, s): ("front" if s == "cosine" else "steady")
             for o in CONFIG["objectives"] for s in CONFIG["schedules"]}
    meta = ft7.summarise(_synthetic_tables(kinds), CONFIG)
    assert meta["primary_cells"] == 4  # 2 objectives (kjv is the control) x 2 layers
    assert meta["primary_sig_holm"] == 4
    assert meta["C_mean_topology_cosine"] > 0.8
    assert meta["C_mean_topology_constant"] == pytest.approx(1 / 3, abs=0.03)
    assert meta["C_topology_cosine_fortunes_L2"] > meta["null_high_topology_cosine_fortunes_L2"]
    assert meta["C_mean_cka_cosine"] == pytest.approx(1 / 3, abs=0.03)
    assert meta["topo_minus_cka_mean"] > 0.2
    assert meta["hedges_g_median"] > 1 and meta["cliffs_delta_median"] > 0.5
    assert meta["class_topology_accuracy"] == 1.0
    assert meta["class_topology_p_value"] < 0.1
    assert meta["class_geometry_accuracy"] < 0.8
    assert meta["capability_gate"] and meta["finetune_moves"]
    text = meta["verdict"]
    assert "Early concentration holds" in text
    assert "the early peak is largely the learning-rate schedule's" in text
    assert "Topology is more front-loaded" in text
    assert "distinguishable from topological" in text
    assert meta["headline"].startswith("topological concentration C = ")


def test_verdict_when_nothing_is_front_loaded():
    kinds = {(o, s): "steady" for o in CONFIG["objectives"] for s in CONFIG["schedules"]}
    meta = ft7.summarise(_synthetic_tables(kinds, geometry_kind="front"), CONFIG)
    assert meta["primary_sig_holm"] == 0
    text = ft7.verdict(meta)
    assert "Early concentration does not hold" in text
    assert "neither schedule gives a consistent early peak" in text
    assert "Topology is not more front-loaded" in text
    meta["capability_gate"] = False
    assert ft7.verdict(meta).startswith("The base model fails the capability gate")


def test_helpers():
    assert trajectories.evenly_spaced_layers(4, 5) == [0, 1, 2, 3, 4]
    assert trajectories.evenly_spaced_layers(8, 5) == [0, 2, 4, 6, 8]
    with pytest.raises(ValueError, match="cannot place"):
        trajectories.evenly_spaced_layers(2, 5)
    subs = trajectories.disjoint_subsamples(100, 30, 3, seed=0)
    assert all(len(s) == 30 for s in subs)
    assert len(set(np.concatenate(subs))) == 90
    with pytest.raises(ValueError, match="disjoint subsets"):
        trajectories.disjoint_subsamples(50, 30, 2, seed=0)
    logp = np.log(np.array([[0.5, 0.5], [0.9, 0.1]]))
    assert trajectories.js_divergence(logp, logp) == pytest.approx(0.0, abs=1e-12)
    onehot = np.log(np.array([[1.0, 1e-300], [1e-300, 1.0]]))
    assert trajectories.js_divergence(onehot, onehot[::-1]) == pytest.approx(np.log(2), rel=1e-6)
    D = trajectories.w2_matrix([np.array([[0.0, 1.0]]), np.array([[0.0, 2.0]]), np.zeros((0, 2))])
    assert np.allclose(D, D.T) and D[0, 1] == pytest.approx(1.0)
    assert D[0, 2] == pytest.approx(1 / np.sqrt(2))


def test_validate_config_rejects_unsound_settings():
    good = dict(ft7.SIZES["smoke"], seed=0, version=ft7.VERSION)
    ft7.validate_config(good)
    with pytest.raises(ValueError, match="unknown objectives"):
        ft7.validate_config({**good, "objectives": ["kjv", "shakespeare"]})
    with pytest.raises(ValueError, match="multiple of n_checkpoints"):
        ft7.validate_config({**good, "steps": 13})
    with pytest.raises(ValueError, match="disjoint subsamples"):
        ft7.validate_config({**good, "m": 100})
    with pytest.raises(ValueError, match="n_seeds"):
        ft7.validate_config({**good, "n_seeds": 1})
