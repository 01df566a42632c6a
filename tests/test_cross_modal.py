"""03_cross_modal: summarise/verdict on synthetic tables, and the small helpers (no models)."""

import numpy as np
import pandas as pd
import pytest

from resonance import baselines, contrastive, prh, stats
from resonance.experiments import cross_modal as cm


def _tables(knn=0.10, null=0.01, within_share=0.5, name_knn=0.05, p=0.01, bpb=(1.0, 2.0, 3.0),
            lm_knn=(0.09, 0.07, 0.05)):
    vision = ["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"]
    rows, within_rows = [], []
    base = {"n": 1000, "layer_v": 3, "layer_t": 2, "depth_v": 0.5, "depth_t": 0.5,
            "knn_null_mean": null, "knn_null_high": null + 0.005, "chance": 10 / 999,
            "knn_last": knn / 2, "cka": 0.3, "cka_null_high": 0.02, "cka_p": 0.01}
    texts = [("minilm", "pretrained", knn), ("mpnet", "pretrained", knn)] + \
        [(f"lm{i}", "pretrained", k) for i, k in enumerate(lm_knn)] + \
        [("minilm-random", "random", 0.02), ("wordllama", "static", 0.04)]
    for i, v in enumerate(vision):
        for t, kind, value in texts:
            value = value + 0.001 * i  # alignment rises with the ImageNet order
            rows.append({**base, "vision": v, "text": t, "text_input": "caption",
                         "knn": value, "knn_p": p, "vision_kind": "pretrained", "text_kind": kind})
            if kind != "random":
                rows.append({**base, "vision": v, "text": t, "text_input": "category_name",
                             "knn": name_knn, "knn_p": p, "vision_kind": "pretrained",
                             "text_kind": kind})
                within_rows.append({"vision": v, "text": t, "text_kind": kind,
                                    "within_mean": null + within_share * (value - null),
                                    "within_high": value, "within_low": null})
    for kind, name, value in (("random", "lite0-random", 0.015), ("pixels", "pixels", 0.03)):
        for t, tkind, _ in texts:
            rows.append({**base, "vision": name, "text": t, "text_input": "caption",
                         "knn": value, "knn_p": 0.5, "vision_kind": kind, "text_kind": tkind})
    sweep = pd.DataFrame([{"vision": v, "text": "minilm", "n": n, "draw": 0,
                           "knn": 0.3 * 128 / n, "knn_shuffled": 10 / n, "chance": 10 / (n - 1),
                           "cka": 0.3} for v in vision for n in (128, 512, 1000)])
    topology = pd.DataFrame([{"measure": "rtd", "value": 4.0, "null_low": 4.5, "null_mean": 5.0,
                              "p_value": 0.01},
                             {"measure": "persistence_distance", "value": 0.5, "null_low": 0.3,
                              "null_mean": 0.6, "p_value": 0.2}])
    local = pd.DataFrame([{"concept": c, "measure": "cka_linear_debiased", "value": v,
                           "p_value": q} for c, v, q in (("emoji/a", 0.4, 0.01),
                                                         ("tuxpaint/b", 0.1, 0.3))])
    contrastive = pd.DataFrame([{"seed": s, "towers_knn": 0.4 + 0.01 * s, "inputs_knn": 0.08,
                                 "inputs_grid_knn": 0.1, "towers_cka": 0.8, "inputs_cka": 0.3,
                                 "towers_top1": 0.2, "n_test": 500, "chance_top1": 1 / 500,
                                 "towers_p": 0.01} for s in range(5)])
    functional = pd.DataFrame([{"vision": v, "text": "minilm", "top5": 0.05, "top1": 0.01,
                                "chance_top5": 0.01, "shuffled_top5_mean": 0.011,
                                "p_top5": 0.01, "n_test": 500, "median_rank": 100.0}
                               for v in vision])
    competence = pd.DataFrame({"text": ["lm0", "lm1", "lm2"], "kind": "pretrained",
                               "bpb": list(bpb), "params": [3, 2, 1]})
    return {"pairs": pd.DataFrame(rows), "within_category": pd.DataFrame(within_rows),
            "sweep": sweep, "topology": topology, "local": local, "contrastive": contrastive,
            "functional": functional, "competence": competence}


def test_summarise_headline_numbers():
    meta = cm.summarise(_tables())
    assert meta["primary_vision"] == "efficientnet-lite0" and meta["primary_text"] == "minilm"
    assert meta["knn"] == pytest.approx(0.10)
    assert meta["knn_ratio"] == pytest.approx(0.10 / (10 / 999))
    # within-category share = (within - null) / (knn - null), here 50 % for every pair
    assert meta["within_share"] == pytest.approx(0.5)
    assert meta["name_ratio"] < 1
    assert meta["random_vision_knn"] == pytest.approx(0.015)
    assert meta["pixels_knn"] == pytest.approx(0.03)
    assert meta["static_knn"] == pytest.approx(0.04 + 0.001)  # mean over the three Lites
    assert meta["sweep_knn_small"] > meta["sweep_knn_all"] and meta["sweep_knn_falls_all"]
    assert meta["towers_gain"] == pytest.approx(np.mean([(0.4 + 0.01 * s) / 0.1 for s in range(5)]))
    # lower bits per byte goes with higher alignment: rho = +1
    assert meta["competence_rho"] == pytest.approx(1.0)
    assert meta["vision_order_increasing"] == meta["vision_order_n"] == 5  # released text models
    assert meta["local_best"] == "emoji/a" and meta["local_significant"] == 1
    assert meta["real_all_significant"]


def test_competence_correlation_can_come_out_negative():
    meta = cm.summarise(_tables(bpb=(3.0, 2.0, 1.0)))
    assert meta["competence_rho"] == pytest.approx(-1.0)
    assert "+" not in f"{meta['competence_rho']:+.2f}"[:1]


def test_verdict_states_each_control_with_numbers():
    text = cm.verdict(cm.summarise(_tables()))
    assert "keeps 50% of the above-null alignment" in text
    assert "all above their null" in text
    assert "mutual 10-NN falls from" in text
    assert "4.2× the unimodal models' 0.100" in text
    assert "Spearman ρ between competence" in text and "+1.00" in text
    assert "3 of 3 model pairs beat their shuffled maps" in text


def test_verdict_when_alignment_is_not_significant():
    text = cm.verdict(cm.summarise(_tables(p=0.4)))
    assert "not all above their null" in text


def test_pixel_features_and_retrieval():
    images = np.zeros((3, 16, 16, 3), np.uint8)
    images[1] = 255
    feats = baselines.pixel_features(images, side=4)
    assert feats.shape == (3, 48) and feats[1].min() == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    T = rng.standard_normal((20, 5))
    perfect = contrastive.retrieval(T.copy(), T)
    assert perfect["top1"] == 1.0 and perfect["median_rank"] == 1.0
    noise = contrastive.retrieval(rng.standard_normal((20, 5)), T)
    assert noise["top1"] < 0.5


def test_cka_null_matches_library():
    from resonance import similarity
    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((40, 6)), rng.standard_normal((40, 4))
    perm = rng.permutation(40)
    value, null = prh.cka_with_null(X, Y, [perm])
    assert value == pytest.approx(similarity.cka(X, Y, debiased=True))
    assert null[0] == pytest.approx(similarity.cka(X, Y[perm], debiased=True))


def test_unknown_override_is_an_error():
    with pytest.raises(ValueError, match="unknown parameter"):
        cm.run("smoke", n_pair=5)


def test_two_language_models_give_no_correlation_but_a_direction():
    tables = _tables()
    tables["competence"] = tables["competence"].iloc[:2]
    meta = cm.summarise(tables)
    assert np.isnan(meta["competence_rho"]) and meta["lm_best"] == "lm0"
    assert meta["lm_best_aligns_most"]
    assert "too few for a rank correlation" in cm.verdict(meta)


def test_retrieval_rejects_mismatched_rows():
    with pytest.raises(ValueError, match="same number"):
        contrastive.retrieval(np.ones((3, 2)), np.ones((4, 2)))


def test_linear_map_retrieval_beats_its_shuffled_maps():
    rng = np.random.default_rng(2)
    W = rng.standard_normal((8, 6))
    X = rng.standard_normal((120, 8))
    Y = X @ W + 0.1 * rng.standard_normal((120, 6))
    out = contrastive.linear_map_retrieval(X[:80], Y[:80], X[80:], Y[80:], n_draws=99)
    assert out["top5"] > 0.9 and out["p_top5"] == pytest.approx(0.01)
    assert out["null_top5"].mean() < 0.3 and out["null_top5"].shape == (99,)
    unrelated = contrastive.linear_map_retrieval(X[:80], rng.standard_normal((80, 6)), X[80:],
                                                 Y[80:], n_draws=99)
    assert unrelated["p_top5"] > 0.01


def test_positive_control_towers_align_related_features():
    rng = np.random.default_rng(3)
    Z = rng.standard_normal((80, 4))
    X = [np.tanh(Z @ rng.standard_normal((4, 10)))]
    Y = [Z @ rng.standard_normal((4, 12)) + 0.05 * rng.standard_normal((80, 12))]
    c = {"train_fraction": 0.5, "steps": 60, "hidden": 32, "dim": 8, "lr": 3e-3,
         "temperature": 0.1}
    table = contrastive.positive_control(X, Y, c, seeds=[0], n_null=19)
    row = table.iloc[0]
    assert row["n_train"] == 40 and row["n_test"] == 40
    assert row["towers_knn"] > row["chance"] and row["towers_top1"] > 1 / 40


def test_spearman_ci():
    rho, lo, hi = stats.spearman_ci([1, 2, 3, 4, 5], [2, 4, 6, 8, 10], n_boot=50)
    assert rho == pytest.approx(1.0) and lo == pytest.approx(1.0)
    assert np.isnan(stats.spearman_ci([1, 2], [1, 2])[0])
    with pytest.raises(ValueError, match="same length"):
        stats.spearman_ci([1, 2, 3], [1, 2])


def test_validate_config_accepts_every_profile_and_rejects_unsound_settings():
    from resonance.experiments.common import profile_config
    for profile in ("smoke", "paper", "hub"):
        cm.validate_config(profile_config(cm.SIZES, profile, 0, {}, cm.VERSION))
    good = profile_config(cm.SIZES, "smoke", 0, {}, cm.VERSION)
    with pytest.raises(ValueError, match="vision must be"):
        cm.validate_config({**good, "vision": ["minilm"]})
    with pytest.raises(ValueError, match="zoo names or hub ids"):
        cm.validate_config({**good, "text": ["no-such-model"]})
    with pytest.raises(ValueError, match=">= 99 null draws"):
        cm.validate_config({**good, "functional_draws": 19})
    with pytest.raises(ValueError, match="sweep sizes"):
        cm.validate_config({**good, "sweep": [8, 64]})
    with pytest.raises(ValueError, match="train_fraction"):
        cm.validate_config({**good, "contrastive": {**good["contrastive"], "train_fraction": 1}})
    with pytest.raises(ValueError, match="vision must be"):
        cm.run("smoke", vision=["efficientnet-b7"])


def test_control_summary_of_the_towers():
    meta = contrastive.control_summary(_tables()["contrastive"])
    assert meta["towers_knn"] == pytest.approx(0.42) and meta["towers_seeds"] == 5
    assert meta["towers_knn_low"] < 0.42 < meta["towers_knn_high"]
    assert meta["unimodal_share_of_towers"] == pytest.approx(np.mean([0.1 / (0.4 + 0.01 * s)
                                                                      for s in range(5)]))


def test_transfer_retrieval_finds_a_shared_map_and_not_a_broken_one():
    rng = np.random.default_rng(4)
    Z = rng.standard_normal((60, 5))
    feats_v = {"v": [Z @ rng.standard_normal((5, 8)) + 0.05 * rng.standard_normal((60, 8))]}
    feats_t = {"t": [Z @ rng.standard_normal((5, 6))], "noise": [rng.standard_normal((60, 6))]}
    sources = ["emoji"] * 40 + ["tuxpaint"] * 20
    texts = [f"caption {i}" for i in range(60)]
    rows, examples = contrastive.transfer_retrieval(feats_v, feats_t, sources, texts,
                                                    [("v", "t"), ("v", "noise")], 99, 0)
    assert list(rows.text) == ["t", "noise"] and (rows.n_fit == 40).all()
    assert rows.top5.iloc[0] > 0.9 and rows.p_top5.iloc[0] == pytest.approx(0.01)
    assert rows.p_top5.iloc[1] > 0.05
    assert len(examples) == 20 and (examples.caption == examples.retrieved_1).mean() > 0.5
    meta = contrastive.transfer_summary(rows)
    assert meta["func_pairs_significant"] == 1 and meta["func_best_pair"] == "v → t"
    with pytest.raises(ValueError, match=">= 20 emoji"):
        contrastive.transfer_retrieval(feats_v, feats_t, ["emoji"] * 10 + ["tuxpaint"] * 50,
                                       texts, [("v", "t")])


def test_model_features_of_baselines_and_networks(monkeypatch):
    from resonance import stimuli
    images = np.zeros((4, 8, 8, 3), np.uint8)
    images[2] = 255
    stims = stimuli.Stimuli("toy", ["a", "b", "a", "c"], images, ["x", "y", "x", "z"])
    feats = baselines.model_features([{"name": "pixels", "kind": "pixels"}], stims,
                                     load=None, pixels=2)
    assert feats["pixels"][0].shape == (4, 12)
    assert feats["pixels"][0][2].min() == pytest.approx(1.0) and feats["pixels"][0][0].max() == 0
    seen = []
    monkeypatch.setattr(baselines, "static_features", lambda texts: seen.append(list(texts))
                        or np.array([[len(t), ord(t[0])] for t in texts], float))
    static = baselines.model_features([{"name": "w", "kind": "static"}], stims, load=None,
                                      texts=["cat", "dog", "cat", "sun"])["w"][0]
    assert seen == [["cat", "dog", "sun"]]  # repeated texts extracted once
    np.testing.assert_array_equal(static, [[3, 99], [3, 100], [3, 99], [3, 115]])


def test_competence_summary_gates_the_ladder_before_comparing():
    comp = pd.DataFrame({"text": ["lm0", "lm1", "g1", "g2"],
                         "kind": ["pretrained", "pretrained", "inhouse", "inhouse"],
                         "bpb": [1.0, 2.0, 3.0, 4.0], "val_ppl": [np.nan, np.nan, 50.0, 90.0],
                         "unigram_ppl": [np.nan, np.nan, 100.0, 100.0],
                         "ppl_gate": [True, True, True, False]})
    cap = pd.DataFrame({"vision": "v", "vision_kind": "pretrained", "text": comp.text,
                        "knn": [0.1, 0.08, 0.05, 0.2]})
    meta = baselines.competence_summary(comp, cap, real_knn_mean=0.1, ppl_gate=0.8)
    assert meta["ladder_n"] == 2 and meta["ladder_gate_passed"] == 1
    assert meta["ladder_failed"] == ["g2"] and meta["ladder_ppl_ratio_max"] == pytest.approx(0.9)
    assert meta["ladder_share"] == pytest.approx(1.25)
    assert meta["n_lms"] == 3 and meta["lm_best"] == "lm0" and meta["lm_best_aligns_most"]
    assert meta["competence_rho"] == pytest.approx(1.0)
