"""The library on the reference implementations' own demo inputs, beside their published values.

>>> reference_table(rtd_trials=10).loc[:, ["check", "library", "reference", "agrees"]]

Published values (read from the authors' repositories, quoted here with their source):

- Kornblith et al.'s CKA demo (google-research/google-research,
  ``representation_similarity/Demo.ipynb``): ``np.random.seed(1337)``, ``X = randn(100, 10)``,
  ``Y = randn(100, 10) + X``; printed linear CKA 0.55761, RBF CKA (threshold 0.5) 0.65483,
  debiased linear CKA 0.51346 (five decimals, so the tolerance is 5e-6).
- The RTD README example (IlyaTrofimov/RTD, ``README.md`` and ``Example.ipynb``):
  ``np.random.seed(7)``, ``P = rand(1000, 2)``, ``Q = rand(1000, 2)``, ``rtd.rtd(P, Q)`` =
  35.55234398557805. Their ``rtd`` averages the symmetrised RTD over 10 subsets of 500 rows,
  each the first 500 of ``np.random.shuffle(range(1000))`` drawn from the same global generator
  after ``P`` and ``Q``; :func:`rtd_readme_subsets` draws the same subsets, so the library's value
  on them should agree to rounding.
- Chance levels from the definitions: mutual k-NN of independent data is ``k / (n - 1)`` in
  expectation (Huh et al. 2024); debiased (unbiased-HSIC) CKA has expectation 0 under
  independence (Song et al. 2012); biased linear CKA of independent Gaussians at n = 32,
  d = 64 is about 0.67 (its small-n bias, ``shared/research-notes.md``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import measures as registry

__all__ = ["KORNBLITH_DEMO", "RTD_README", "kornblith_demo_inputs", "rtd_readme_inputs",
           "rtd_readme_subsets", "reference_table"]

KORNBLITH_DEMO = {"cka_linear": 0.55761, "cka_rbf": 0.65483, "cka_linear_debiased": 0.51346}
RTD_README = 35.55234398557805


def kornblith_demo_inputs() -> tuple[np.ndarray, np.ndarray]:
    """``X, Y`` of Kornblith's demo (legacy NumPy generator seeded 1337, as there)."""
    state = np.random.RandomState(1337)
    X = state.randn(100, 10)
    return X, state.randn(100, 10) + X


def rtd_readme_inputs() -> tuple[np.ndarray, np.ndarray, np.random.RandomState]:
    """``P, Q`` of the RTD README (legacy generator seeded 7) and the generator after them."""
    state = np.random.RandomState(7)
    return state.rand(1000, 2), state.rand(1000, 2), state


def rtd_readme_subsets(state: np.random.RandomState, trials: int = 10,
                       batch: int = 500) -> list[np.ndarray]:
    """The row subsets the authors' ``rtd`` draws after the README's inputs (a shuffle of
    ``range(1000)`` per trial, first ``batch`` rows)."""
    return [state.permutation(1000)[:batch] for _ in range(int(trials))]


def _chance(measure: str, n: int, d: int, draws: int, rng: np.random.Generator, **kw):
    vals = [registry.get(measure).compute(rng.standard_normal((n, d)),
                                          rng.standard_normal((n, d)), **kw)
            for _ in range(int(draws))]
    return float(np.mean(vals)), float(np.std(vals, ddof=1) / np.sqrt(draws))


def reference_table(rtd_trials: int = 10, n_draws: int = 50, seed: int = 0) -> pd.DataFrame:
    """One row per check: ``library`` value (``library_se`` for means over random draws),
    ``reference``, ``tolerance``, ``agrees`` and where the reference comes from.

    ``rtd_trials < 10`` runs only the first subsets of the README's ten (a cheaper check,
    compared with the published mean at a tolerance of 3 x the trial spread / sqrt(trials),
    the spread taken as 0.45 from a full run); ``rtd_trials=0`` skips RTD.
    """
    rng = np.random.default_rng(seed)
    rows = []

    def add(key, check, measure, library, se, reference, tolerance, source):
        rows.append({"key": key, "check": check, "measure": measure, "library": float(library),
                     "library_se": float(se), "reference": float(reference),
                     "tolerance": float(tolerance),
                     "agrees": bool(abs(library - reference) <= tolerance), "source": source})

    X, Y = kornblith_demo_inputs()
    demo = "Kornblith et al.'s Demo.ipynb (google-research), printed to 5 decimals"
    for measure, kw, label in [("cka_linear", {}, "linear CKA"),
                               ("cka_rbf", {"threshold": 0.5}, "RBF CKA, threshold 0.5"),
                               ("cka_linear_debiased", {}, "debiased linear CKA")]:
        add(f"kornblith_demo_{measure}", f"{label} on Kornblith's demo input (seed 1337)",
            measure, registry.get(measure).compute(X, Y, **kw), 0.0, KORNBLITH_DEMO[measure],
            5e-6, demo)
    if rtd_trials:
        P, Q, state = rtd_readme_inputs()
        subsets = rtd_readme_subsets(state, rtd_trials)
        vals = [registry.get("rtd").compute(P[s], Q[s], n_subsamples=1, subsample_size=len(s))
                for s in subsets]
        se = float(np.std(vals, ddof=1) / np.sqrt(len(vals))) if len(vals) > 1 else 0.0
        add("rtd_readme", f"RTD on the RTD README example ({len(vals)} of its 10 subsets of "
            "500)", "rtd", np.mean(vals), se, RTD_README,
            1e-6 * RTD_README if rtd_trials >= 10 else 3 * 0.45 / np.sqrt(rtd_trials),
            "IlyaTrofimov/RTD README / Example.ipynb (rtd.rtd(P, Q))")
    mean, se = _chance("cka_linear", 32, 64, n_draws, rng)
    add("cka_bias_n32", "biased linear CKA, independent Gaussians n=32, d=64", "cka_linear",
        mean, se, 0.67, 0.05, "small-n bias of biased CKA (research notes; ~0.67)")
    mean, se = _chance("cka_linear_debiased", 32, 64, n_draws, rng)
    add("debiased_cka_n32", "debiased linear CKA, same inputs", "cka_linear_debiased", mean, se,
        0.0, max(0.02, 3 * se), "unbiased HSIC has expectation 0 under independence "
        "(Song et al. 2012)")
    n, k = 500, 10
    mean, se = _chance("mutual_knn", n, 32, n_draws, rng, k=k)
    add("mutual_knn_chance", f"mutual {k}-NN, independent Gaussians n={n}", "mutual_knn", mean,
        se, k / (n - 1), max(0.005, 3 * se), "chance level k/(n-1) (Huh et al. 2024)")
    return pd.DataFrame(rows)
