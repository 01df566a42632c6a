"""The PRH protocol helpers (resonance.prh): grid of mutual k-NN and nulls for its maximum."""

import numpy as np
import pandas as pd
import pytest

from resonance import prh, similarity


def _layers(seed=0, n=120):
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, 12))
    A = [base @ rng.standard_normal((12, 20)) + 0.3 * rng.standard_normal((n, 20)) for _ in range(3)]
    B = [base[:, :8] @ rng.standard_normal((8, 10)) + s * rng.standard_normal((n, 10))
         for s in (0.2, 1.0, 5.0)]
    return A, B


def test_grid_matches_mutual_knn_with_clamping():
    A, B = _layers()
    grid = prh.knn_grid([prh.neighbours(x) for x in A], [prh.neighbours(y) for y in B])
    ref = [[similarity.mutual_knn(x, y, k=10, clamp_quantile=0.95) for y in B] for x in A]
    np.testing.assert_allclose(grid, ref)


def test_null_draw_equals_recomputing_on_permuted_rows():
    A, B = _layers(1)
    na, nb = [prh.neighbours(x) for x in A], [prh.neighbours(y) for y in B]
    perms = prh.shuffles(len(A[0]), 3, seed=4)
    out = prh.grid_alignment(na, nb, perms)
    for perm, value in zip(perms, out.null):
        assert value == pytest.approx(prh.knn_grid(na, [prh.neighbours(y[perm]) for y in B]).max())
    assert out.best == (int(np.argmax(out.grid) // 3), int(np.argmax(out.grid) % 3))
    assert out.value > out.null.max() and out.p_value == pytest.approx(1 / 4)


def test_unrelated_clouds_sit_at_chance():
    rng = np.random.default_rng(2)
    X, Y = rng.standard_normal((400, 16)), rng.standard_normal((400, 16))
    out = prh.grid_alignment([prh.neighbours(X)], [prh.neighbours(Y)], prh.shuffles(400, 99))
    assert abs(out.value - prh.chance(400)) < 0.02
    assert out.p_value > 0.05


def test_within_group_shuffles_keep_groups():
    groups = np.array(list("aabbbcccc"))
    for perm in prh.within_group_shuffles(groups, 5, seed=1):
        assert sorted(perm) == list(range(9))
        assert (groups[perm] == groups).all()


def test_bad_shapes_are_errors():
    A, B = _layers()
    with pytest.raises(ValueError, match="share one"):
        prh.knn_grid([prh.neighbours(A[0])], [prh.neighbours(B[0], k=5)])
    with pytest.raises(ValueError, match="permutation of 120"):
        prh.grid_alignment([prh.neighbours(A[0])], [prh.neighbours(B[0])], [np.arange(5)])


def _pair_feats(n=80):
    A, B = _layers(5, n)
    feats_v = {"vis": A, "vis-random": [np.random.default_rng(9).standard_normal((n, 20))]}
    feats_t = {"txt": B}
    kinds = {"vis": "pretrained", "vis-random": "random", "txt": "pretrained"}
    return feats_v, feats_t, kinds


def test_alignment_row_is_the_grid_maximum_with_cka_at_its_layers():
    A, B = _layers(2, 80)
    nb_a, nb_b = prh.neighbour_sets({"a": A})["a"], prh.neighbour_sets({"b": B})["b"]
    perms = prh.shuffles(80, 19, seed=1)
    row = prh.alignment_row(nb_a, nb_b, A, B, perms)
    grid = prh.knn_grid(nb_a, nb_b)
    i, j = np.unravel_index(np.argmax(grid), grid.shape)
    assert row["knn"] == pytest.approx(grid.max()) and (row["layer_v"], row["layer_t"]) == (i + 1, j + 1)
    assert row["layer_t"] == 1  # B's least noisy layer
    assert row["cka"] == pytest.approx(similarity.cka(A[i], B[j], debiased=True))
    assert row["knn_p"] == pytest.approx(1 / 20) and row["knn_null_high"] < row["knn"]
    assert row["knn_last"] == pytest.approx(grid[-1, -1]) and row["chance"] == pytest.approx(10 / 79)


def test_alignment_tables_rows_controls_and_summary():
    feats_v, feats_t, kinds = _pair_feats()
    labels = np.repeat(["a", "b", "c", "d"], 20)
    tables = prh.alignment_tables(feats_v, feats_t, {"txt": feats_t["txt"]}, kinds, labels, 19, 0)
    pairs, within = tables["pairs"], tables["within_category"]
    assert list(zip(pairs.vision, pairs.text_input)) == [("vis", "caption"), ("vis-random", "caption"),
                                                         ("vis", "category_name")]
    assert list(within.vision) == ["vis"] and within.within_mean.iloc[0] < pairs.knn.iloc[0]
    meta = prh.alignment_summary(pairs, within, ("vis", "txt"))
    assert meta["primary_vision"] == "vis" and meta["n_real_pairs"] == 1
    assert meta["random_vision_knn"] == pytest.approx(pairs.knn.iloc[1])
    assert meta["random_vision_knn"] < meta["knn"]
    assert np.isnan(meta["pixels_knn"]) and meta["name_ratio"] == pytest.approx(1.0)
    assert meta["within_share"] == pytest.approx(
        (within.within_mean.iloc[0] - pairs.knn_null_mean.iloc[0])
        / (pairs.knn.iloc[0] - pairs.knn_null_mean.iloc[0]))


def test_size_sweep_draws_subsets_and_summary_compares_ends():
    feats_v, feats_t, kinds = _pair_feats()
    pairs = prh.alignment_tables(feats_v, feats_t, {}, kinds, np.zeros(80), 1, 0)["pairs"]
    sweep = prh.size_sweep(feats_v, feats_t, pairs, [("vis", "txt")], [20, 40, None], 3, 0)
    assert sweep.groupby("n").size().to_dict() == {20: 3, 40: 3, 80: 1}
    full = sweep[sweep.n == 80].iloc[0]
    assert full.knn == pytest.approx(pairs.knn.iloc[0]) and full.knn_shuffled < full.knn
    meta = prh.sweep_summary(sweep, "vis", "txt")
    assert (meta["sweep_n_min"], meta["sweep_n_max"]) == (20, 80)
    assert meta["sweep_knn_all"] == pytest.approx(full.knn)
    assert meta["sweep_ratio_all"] == pytest.approx(full.knn / (10 / 79))


def test_order_summary_counts_text_models_that_follow_the_order():
    pairs = pd.DataFrame({"vision": ["v0", "v1", "v2"] * 2, "text": ["a"] * 3 + ["b"] * 3,
                          "knn": [0.1, 0.2, 0.3, 0.3, 0.1, 0.2]})
    meta = prh.order_summary(pairs, {"v0": 1.0, "v1": 2.0, "v2": 3.0})
    assert meta["vision_order_increasing"] == 1 and meta["vision_order_n"] == 2
    assert meta["vision_order_rho_mean"] == pytest.approx((1.0 - 0.5) / 2)
    assert prh.order_summary(pairs, {"v0": 1.0, "v1": 2.0})["vision_order_n"] == 0
