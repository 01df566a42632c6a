"""Similarity between training seeds: are two architectures as alike as two seeds of one?

:func:`cross_seed_similarity` measures matched layers of model A against model B for every
pair of seeds (``cross``) and of each model against itself from another seed (``within_A``,
``within_S``); :func:`resonance.stats.cross_within_bootstrap` puts intervals on the result
that resample seeds.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from . import similarity


def cross_seed_similarity(layers: Mapping[tuple[str, int], Sequence[np.ndarray]], a: str, b: str,
                          seeds: Sequence[int], measure: str = "cka_linear_debiased"
                          ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``layers[(model, seed)]``: that run's hidden states per layer, ``[(n, d)]``, on the same
    stimuli. Returns a per-layer table (kind, seed_a, seed_b, layer, value; matched layers only)
    and a per-pair table (kind, seed_a, seed_b, value = mean over matched layers) where the
    symmetric within-model pairs appear in both orders (for the seed bootstrap)."""
    missing = [(m, s) for m in (a, b) for s in seeds if (m, s) not in layers]
    if missing:
        raise ValueError(f"no hidden states for runs {missing}")
    specs = ([("cross", a, sa, b, sb) for sa in seeds for sb in seeds]
             + [("within_A", a, sa, a, sb) for sa in seeds for sb in seeds if sa < sb]
             + [("within_S", b, sa, b, sb) for sa in seeds for sb in seeds if sa < sb])
    layer_rows, pair_rows = [], []
    for kind, na, sa, nb, sb in specs:
        table = similarity.similarity_matrix(layers[(na, sa)], layers[(nb, sb)], measure)
        diag = table[table["layer_a"] == table["layer_b"]]
        for row in diag.itertuples():
            layer_rows.append({"kind": kind, "seed_a": sa, "seed_b": sb,
                               "layer": int(row.layer_a), "value": float(row.value)})
        pair_rows.append({"kind": kind, "seed_a": sa, "seed_b": sb,
                          "value": float(diag["value"].mean())})
        if kind.startswith("within"):  # symmetric: store both orders for the bootstrap
            pair_rows.append({"kind": kind, "seed_a": sb, "seed_b": sa,
                              "value": float(diag["value"].mean())})
    return pd.DataFrame(layer_rows), pd.DataFrame(pair_rows)


__all__ = ["cross_seed_similarity"]
