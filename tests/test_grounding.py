"""resonance.grounding: the ReSi-style statistics on hand-made grids, the classifier family,
layer identification on synthetic layers; resonance.references against published values."""

import numpy as np
import pytest

from resonance import grounding, references


def _two_groups(within=0.9, between=0.1, n=4):
    names = [("a", i) for i in range(n)] + [("b", i) for i in range(n)]
    g = np.array([k for k, _ in names])
    S = np.where(g[:, None] == g[None, :], within, between).astype(float)
    np.fill_diagonal(S, 1.0)
    return names, S


def test_separation_auc_reads_within_against_between_pairs():
    names, S = _two_groups()
    assert grounding.separation_auc(S, names, "a", "b") == 1.0
    names, S = _two_groups(within=0.1, between=0.9)
    assert grounding.separation_auc(S, names, "a", "b") == 0.0
    names, S = _two_groups(within=0.5, between=0.5)
    assert grounding.separation_auc(S, names, "a", "b") == 0.5          # ties count half
    with pytest.raises(ValueError, match="no models of group 'c'"):
        grounding.separation_auc(S, names, "c", "b")
    # a resample that draws one model twice never pairs it with itself
    assert np.isnan(grounding.separation_auc(S, names, "a", "b", draw=np.array([0, 0, 4])))


def test_permutation_pvalue_is_small_only_for_real_groups():
    names, S = _two_groups(n=5)
    # 2 of the C(10, 5) = 252 labelings split the groups perfectly: p is near 2 / 252
    assert grounding.permutation_pvalue(S, names, "a", "b", n_perm=199) < 0.05
    rng = np.random.default_rng(0)
    noise = rng.random(S.shape)
    noise = (noise + noise.T) / 2
    assert grounding.permutation_pvalue(noise, names, "a", "b", n_perm=199) > 0.05
    with pytest.raises(ValueError, match="n_perm must be >= 99"):
        grounding.permutation_pvalue(S, names, "a", "b", n_perm=10)


def test_output_correlation_and_model_bootstrap():
    rng = np.random.default_rng(1)
    pos = rng.standard_normal((8, 2))
    D = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    names = [("m", i) for i in range(8)]
    assert grounding.output_correlation(-D, D) == pytest.approx(1.0)
    assert grounding.output_correlation(D, D) == pytest.approx(-1.0)
    value, low, high = grounding.model_bootstrap(lambda d: grounding.output_correlation(-D, D, d),
                                                 names, n_boot=50)
    assert value == pytest.approx(1.0) and low == pytest.approx(1.0) and high == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same square shape"):
        grounding.output_correlation(D, D[:3])


def test_layer_monotonicity():
    L = 5
    idx = np.arange(L)
    falling = -np.abs(idx[:, None] - idx[None, :]).astype(float)
    assert grounding.layer_monotonicity(falling) == 1.0
    assert grounding.layer_monotonicity(-falling) == 0.0
    assert grounding.layer_monotonicity(np.ones((L, L))) == 0.5
    with pytest.raises(ValueError, match=">= 3 layers"):
        grounding.layer_monotonicity(np.ones((2, 2)))


def test_identification_on_synthetic_layers():
    rng = np.random.default_rng(0)
    base = [rng.standard_normal((60, 6)) for _ in range(4)]
    # each seed: the same four distinct layers, rotated and slightly perturbed
    states = {}
    for seed in range(3):
        q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((6, 6)))
        states[seed] = [b @ q + 0.05 * np.random.default_rng(seed).standard_normal(b.shape)
                        for b in base]
    ident, mono = grounding.identification_rows(states, "trained",
                                                {"linear CKA": ("cka_linear", {})})
    assert len(ident) == 3 * 2 * 4 and (ident["best"] == ident["layer"]).all()
    assert set(mono["seed"]) == {0, 1, 2}
    acc = grounding.accuracy_table(ident, n_boot=50)
    assert acc.loc[0, "accuracy"] == 1.0 and acc.loc[0, "chance"] == 0.25
    assert acc.loc[0, "chance_pm1"] == pytest.approx(10 / 16)


def test_classifier_family_learns_and_memorises():
    fam = grounding.classifier_family({"real": (0.0, False), "random": (1.0, False),
                                       "shortcut": (0.0, True)}, seeds=[0], hidden=32,
                                      steps=150, n_test=100)
    info = fam.info.set_index("variant")
    assert info.at["real", "test_accuracy"] > 0.8
    assert info.at["random", "test_accuracy"] < 0.25
    assert info.at["shortcut", "follows_code"] > info.at["real", "follows_code"]
    assert fam.penultimate()["real", 0].shape == (100, 32)
    names = list(fam.probs)
    D = fam.output_distance(names)
    assert D.shape == (3, 3) and np.all(np.diag(D) == 0) and D[0, 1] > 0
    again = grounding.classifier_family({"real": (0.0, False)}, seeds=[0], hidden=32, steps=150,
                                        n_test=100)
    np.testing.assert_array_equal(again.states["real", 0][-1], fam.states["real", 0][-1])
    with pytest.raises(ValueError, match="label_noise of 'x' must lie in"):
        grounding.classifier_family({"x": (1.5, False)}, seeds=[0])
    with pytest.raises(ValueError, match="n_test must be in"):
        grounding.classifier_family({"x": (0.0, False)}, seeds=[0], n_test=5)


def test_jensen_shannon_bounds():
    P = np.array([[1.0, 0.0], [0.5, 0.5]])
    assert grounding.jensen_shannon(P, P) == 0.0
    assert grounding.jensen_shannon(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])) == 1.0


def test_validation_positions():
    val = np.arange(5000)
    windows, rows = grounding.validation_positions(val, 32, 100, 8, seed=0)
    assert rows.shape == (100, 2) and windows.shape[1] == 32
    assert rows[:, 1].min() >= 8
    with pytest.raises(ValueError, match="too few"):
        grounding.validation_positions(np.arange(35), 32, 100, 8)


def test_kornblith_demo_reproduces_published_values():
    table = references.reference_table(rtd_trials=0, n_draws=5)
    demo = table[table["key"].str.startswith("kornblith")]
    assert len(demo) == 3 and demo["agrees"].all(), demo
    assert demo.set_index("measure").at["cka_linear", "library"] == pytest.approx(0.55761, abs=5e-6)
    assert table["agrees"].all()
    assert "rtd_readme" not in set(table["key"])


def test_rtd_readme_subsets_follow_the_global_generator():
    P, Q, state = references.rtd_readme_inputs()
    np.random.seed(7)
    np.testing.assert_array_equal(P, np.random.rand(1000, 2))
    np.random.rand(1000, 2)
    order = list(range(1000))
    np.random.shuffle(order)
    np.testing.assert_array_equal(references.rtd_readme_subsets(state, 1)[0], order[:500])
