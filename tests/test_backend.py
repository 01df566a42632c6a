"""The torch backend gives the NumPy path's values (to <= 1e-6) for every measure it serves."""

import numpy as np
import pytest
import torch

from resonance import backend, similarity as S
from resonance.metrics import null_sample

TOL = 1e-6


def _models(n=240, layers=3, d=(24, 40), seed=0):
    rng = np.random.default_rng(seed)
    a = [(rng.standard_normal((n, d[0])) + 3).astype(np.float32) for _ in range(layers)]
    b = [(x @ rng.standard_normal((d[0], d[1])) + rng.standard_normal((n, d[1])))
         .astype(np.float32) for x in a]
    return a, b


CASES = [("cka_linear", {}), ("cka_linear_debiased", {}), ("cka_rbf", {}),
         ("cka_rbf", {"debiased": True, "threshold": 0.5}), ("cka_rbf", {"median_over": "pairs"}),
         ("mutual_knn", {}), ("mutual_knn", {"k": 5, "clamp_quantile": 0.95}),
         ("cknna", {}), ("cknna", {"k": 4, "clamp_quantile": 0.9})]


@pytest.mark.parametrize("measure, options", CASES)
@pytest.mark.parametrize("same", [False, True])
def test_torch_cpu_grid_matches_numpy(measure, options, same):
    a, b = _models()
    b = a if same else b
    numpy_values = S.similarity_matrix(a, b, measure, **options)
    torch_values = S.similarity_matrix(a, b, measure, device="cpu", **options)
    assert (numpy_values.drop(columns="value") == torch_values.drop(columns="value")).all().all()
    np.testing.assert_allclose(torch_values["value"], numpy_values["value"], rtol=0, atol=TOL)


def test_float64_input_and_single_pair_functions_match():
    a, b = _models(n=120, layers=1)
    X, Y = a[0].astype(np.float64), b[0].astype(np.float64)
    for debiased in (False, True):
        assert abs(S.cka(X, Y, debiased=debiased, device="cpu")
                   - S.cka(X, Y, debiased=debiased)) <= TOL
        assert abs(S.cka(X, Y, "rbf", 0.8, debiased, device="cpu")
                   - S.cka(X, Y, "rbf", 0.8, debiased)) <= TOL
    assert S.mutual_knn(X, Y, k=7, device="cpu") == S.mutual_knn(X, Y, k=7)
    assert abs(S.cknna(X, Y, device="cpu") - S.cknna(X, Y)) <= TOL
    assert abs(S.similarity(X, Y, "cka_linear", device="cpu") - S.cka(X, Y)) <= TOL
    gram = S.rbf_gram(X, 0.7, device="cpu")
    assert isinstance(gram, torch.Tensor)
    np.testing.assert_allclose(gram.numpy(), S.rbf_gram(X, 0.7), rtol=0, atol=1e-12)


def test_large_n_banded_and_blocked_paths_match(monkeypatch):
    """n = 4,100: k-NN scores in three row blocks (torch top-k in NumPy too), linear CKA by
    nine Gram bands and by three summed row blocks of the feature form."""
    a, b = _models(n=4_100, layers=2, d=(32, 24), seed=1)
    for form in ("gram", "features"):
        monkeypatch.setattr(S, "_linear_form", lambda *args, form=form: form)
        for measure in ("cka_linear", "cka_linear_debiased"):
            np.testing.assert_allclose(
                S.similarity_matrix(a, b, measure, device="cpu")["value"],
                S.similarity_matrix(a, b, measure)["value"], rtol=0, atol=TOL)
    pair = [a[0]], [b[0]]
    assert (S.similarity_matrix(*pair, "mutual_knn", device="cpu")["value"].item()
            == S.similarity_matrix(*pair, "mutual_knn")["value"].item())


def test_near_ties_and_duplicates_rank_as_numpy():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((60, 8)).astype(np.float32)
    X[30:] = X[:30]                       # every row has an exact duplicate: ties everywhere
    Y = np.round(rng.standard_normal((60, 5)), 1)  # many equal cosines
    for k in (3, 10):
        assert S.mutual_knn(X, Y, k=k, device="cpu") == S.mutual_knn(X, Y, k=k)
        assert abs(S.cknna(X, Y, k=k, device="cpu") - S.cknna(X, Y, k=k)) <= TOL


@pytest.mark.parametrize("measure", ["cka_linear_debiased", "cka_rbf", "mutual_knn", "cknna"])
def test_shuffle_null_equals_the_numpy_loop_draw_by_draw(measure):
    a, b = _models(n=150, layers=1)
    rng = np.random.default_rng(7)
    expected = [S.similarity(a[0], null_sample([b[0]], "shuffle", rng)[0], measure)
                for _ in range(6)]
    got = backend.shuffle_null(a[0], b[0], measure, n_null=6, seed=7, device="cpu")
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOL)


def test_tensors_on_the_device_are_used_without_a_copy():
    X = torch.randn(50, 6)
    assert backend.as_tensor(X, "X", torch.device("cpu")).data_ptr() == X.data_ptr()
    Y = torch.randn(50, 4, dtype=torch.float64)
    value = S.similarity_matrix([X], [Y], "cka_linear", device="auto")["value"].item()
    assert abs(value - S.cka(X.numpy(), Y.numpy())) <= TOL


def test_clear_errors():
    X = np.random.default_rng(0).standard_normal((20, 3))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no CUDA device.*device='auto'"):
            S.similarity_matrix([X], [X], "cka_linear", device="cuda")
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        S.cka(X, X, device="gpu")
    with pytest.raises(ValueError, match="'svcca' has no torch backend.*backend='numpy'"):
        S.similarity_matrix([X], [X], "svcca", device="cpu")
    with pytest.raises(ValueError, match="unknown backend 'jax'"):
        S.similarity_matrix([X], [X], "cka_linear", backend="jax")
    with pytest.raises(ValueError, match="NaN or inf in 1 of 20 rows"):
        S.cka(np.where(np.arange(20)[:, None] == 3, np.nan, X), X, device="cpu")
    with pytest.raises(ValueError, match="constant across stimuli"):
        S.mutual_knn(np.ones((20, 3)), X, device="cpu")
    with pytest.raises(ValueError, match="row counts"):
        S.similarity_matrix([X], [X[:10]], "cka_linear", device="cpu")
    with pytest.raises(ValueError, match="unknown option"):
        S.similarity_matrix([X], [X], "mutual_knn", device="cpu", kk=3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("measure, options", CASES)
def test_cuda_matches_numpy(measure, options):
    a, b = _models()
    on_gpu = [torch.from_numpy(x).cuda() for x in a]
    np.testing.assert_allclose(S.similarity_matrix(on_gpu, b, measure, device="cuda",
                                                   **options)["value"],
                               S.similarity_matrix(a, b, measure, **options)["value"],
                               rtol=0, atol=TOL)
