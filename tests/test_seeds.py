"""Cross-seed similarity tables (resonance.seeds) on synthetic hidden states."""

import numpy as np
import pytest

from resonance import seeds, stats


def _layers(rng, base, noise, n_layers=2):
    return [base[i] + noise * rng.standard_normal(base[i].shape) for i in range(n_layers)]


def test_cross_seed_similarity_pairs_matched_layers_and_both_orders():
    rng = np.random.default_rng(0)
    shared = [rng.standard_normal((40, 6)) for _ in range(2)]
    other = [rng.standard_normal((40, 6)) for _ in range(2)]
    runs = [0, 1, 2]
    layers = {("A", s): _layers(rng, shared, 0.1) for s in runs}
    layers.update({("S", s): _layers(rng, other, 0.1) for s in runs})
    per_layer, pairs = seeds.cross_seed_similarity(layers, "A", "S", runs)
    assert set(per_layer["layer"]) == {0, 1}
    assert (pairs["kind"] == "cross").sum() == 9
    assert (pairs["kind"] == "within_A").sum() == 6  # 3 pairs, both orders
    means = pairs.groupby("kind")["value"].mean()
    assert means["within_A"] > 0.9 and means["within_S"] > 0.9 and means["cross"] < 0.5
    summary = stats.cross_within_bootstrap(pairs, runs, n_boot=99).set_index("quantity")
    assert summary.loc["cross_minus_within_A", "ci_high"] < 0
    with pytest.raises(ValueError, match="no hidden states"):
        seeds.cross_seed_similarity(layers, "A", "B", runs)
