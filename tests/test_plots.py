"""The notebooks' figure routines in resonance.plots draw what their tables hold."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from resonance import plots  # noqa: E402


def test_effect_intervals_place_each_comparison_on_its_row_in_percent():
    effects = pd.DataFrame([
        {"arm": arm, "basis": basis, "comparison": comp, "ppl_change": change,
         "ppl_change_low": change - 0.05, "ppl_change_high": change + 0.05,
         "published_change": -0.5}
        for arm in ("faithful", "tuned") for basis in ("tokens", "flops")
        for comp, change in (("gap", -0.1), ("bias", 0.0))])
    fig, axes = plt.subplots(1, 2)
    plots.effect_intervals(effects, axes, labels=["gap", "bias"], arms=["faithful", "tuned"])
    ticks = [t.get_text() for t in axes[0].get_yticklabels()]
    assert ticks == ["gap", "bias"]
    xs = np.concatenate([line.get_xdata() for line in axes[0].lines if len(line.get_xdata()) == 2])
    assert xs.min() == pytest.approx(-15.0) and xs.max() == pytest.approx(5.0)  # -10 ± 5 %
    plt.close(fig)


def test_phase_mechanism_strip_jitter_is_seeded_and_leaves_the_global_rng_alone():
    heads = pd.DataFrame({"config": "A_random_phase", "arm": ["tuned"] * 4, "layer": [0, 0, 1, 1],
                          "head": [0, 1, 0, 1], "w": [0.1, 0.2, -0.1, 0.3]})
    mech = pd.DataFrame({"config": ["A_random_phase", "B_rhyme_phase"] * 2,
                         "stage": ["init", "init", "end", "end"], "r_std": [0.1, 0.1, 0.2, 0.3],
                         "rhyme_cohesion": [0.0, 0.1, 0.0, 0.2]})
    offsets = []
    for _ in range(2):
        np.random.seed(123)
        fig, axes = plt.subplots(1, 3)
        plots.phase_mechanism(heads, mech, axes)
        offsets.append(np.concatenate([c.get_offsets() for c in axes[0].collections]))
        after = np.random.random()
        plt.close(fig)
    np.testing.assert_array_equal(offsets[0], offsets[1])
    np.random.seed(123)
    assert after == np.random.random()  # the caller's global state is restored


def test_concentration_panels_label_every_cell():
    conc = pd.DataFrame([{"measure": "topology", "objective": o, "layer": layer,
                          "schedule": s, "C": 0.4, "null_low": 0.2, "null_high": 0.5,
                          "cell": f"{o} L{layer}"}
                         for o in ("a", "b") for layer in (0, 2) for s in ("cosine", "constant")])
    fig, axes = plt.subplots(1, 1, squeeze=False)
    plots.concentration_panels(conc, axes.ravel(), measures=["topology"], uniform=1 / 3)
    assert [t.get_text() for t in axes[0, 0].get_yticklabels()] == ["a L0", "a L2", "b L0",
                                                                     "b L2"]
    plt.close(fig)


def test_size_cells_shade_the_ceiling_plus_minus_the_margin():
    by_size = pd.DataFrame([{"stimuli": "words", "measure": "cka", "params": p, "value": v,
                             "ci_low": v - 0.02, "ci_high": v + 0.02, "null_high": 0.05}
                            for p, v in ((1e4, 0.3), (1e5, 0.5), (1e6, 0.6))])
    fig, ax = plt.subplots()
    plots.size_cells(by_size, [ax], cells=[("words", "cka")], margin=0.05,
                     primary=("words", "cka"))
    band = ax.patches[0]
    assert band.get_y() == pytest.approx(0.55)
    assert band.get_y() + band.get_height() == pytest.approx(0.65)
    assert ax.get_title() == "cka, words (primary)"
    plt.close(fig)
