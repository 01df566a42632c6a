"""One figure style for the whole repository, and ``save`` into ``figures/``."""

from __future__ import annotations

import matplotlib.pyplot as plt
import seaborn as sns

from . import paths

PALETTE = "colorblind"
DPI = 150


def set_style() -> None:
    """The repository's seaborn style (call once per notebook; idempotent)."""
    sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE)
    plt.rcParams.update({
        "figure.dpi": 100,
        "savefig.dpi": DPI,
        "savefig.bbox": "tight",
        "axes.titlesize": "medium",
        "svg.hashsalt": "resonance",
    })


def save(fig: plt.Figure, name: str) -> None:
    """Save ``fig`` as ``FIGURES/<name>.png`` (name = notebook prefix + what it shows).

    PNG metadata carries no timestamp or version, so re-running a notebook rewrites the same
    bytes when the data are the same. Returns nothing, so that no path is displayed as a cell
    output (nbval does not honour a trailing ``;``).
    """
    if not name or "/" in name or name.endswith(".png"):
        raise ValueError(f"figure name should be a bare stem like '01_resonance_vs_size', got {name!r}")
    paths.FIGURES.mkdir(parents=True, exist_ok=True)
    target = paths.FIGURES / f"{name}.png"
    fig.savefig(target, metadata={"Software": None})


def layer_heatmap(table, ax: plt.Axes, *, label_a: str = "model A", label_b: str = "model B",
                  vmin: float | None = None, vmax: float | None = None, cmap: str = "magma"):
    """Layer × layer similarity (a ``similarity_matrix`` table) as a heatmap; A on rows."""
    grid = table.pivot(index="layer_a", columns="layer_b", values="value")
    sns.heatmap(grid, ax=ax, cmap=cmap, vmin=vmin, vmax=vmax, square=grid.shape[0] == grid.shape[1],
                cbar_kws={"label": table["measure"].iloc[0]})
    ax.invert_yaxis()
    ax.set(xlabel=f"{label_b} layer", ylabel=f"{label_a} layer")
    return ax


def persistence_diagram(diagrams, ax: plt.Axes, *, title: str = ""):
    """Scatter of (birth, death) per homology dimension; ``diagrams`` has dim, birth, death."""
    finite = diagrams[diagrams["death"] < float("inf")]
    top = float(finite[["birth", "death"]].to_numpy().max()) if len(finite) else 1.0
    ax.plot([0, top], [0, top], color="0.6", lw=1, ls="--")
    for dim, group in finite.groupby("dim"):
        ax.scatter(group["birth"], group["death"], s=12, label=f"H{dim}", alpha=0.8)
    ax.set(xlabel="birth", ylabel="death", title=title)
    ax.legend(loc="lower right")
    return ax


def interval_plot(table, ax: plt.Axes, *, y: str, value: str = "value", low: str = "ci_low",
                  high: str = "ci_high", null_low: str | None = "null_low",
                  null_high: str | None = "null_high"):
    """Point estimates with interval bars per row (``y`` labels), and the null band if given."""
    table = table.reset_index(drop=True)
    positions = range(len(table))
    ax.errorbar(table[value], positions, xerr=[table[value] - table[low], table[high] - table[value]],
                fmt="o", color="C0", capsize=3, label="value, 95 % CI")
    if null_low and null_high:
        for i, row in table.iterrows():
            ax.plot([row[null_low], row[null_high]], [i, i], color="0.5", lw=6, alpha=0.35,
                    solid_capstyle="butt", label="null 95 % range" if i == 0 else None)
    ax.set_yticks(list(positions), table[y])
    ax.legend(loc="best")
    return ax


def concept_palette(concepts) -> dict[str, tuple]:
    """One colour per concept, in the given order, from the repository palette: pass the same
    dict to every figure of a notebook so that a concept keeps its colour throughout."""
    concepts = list(dict.fromkeys(concepts))
    colours = sns.color_palette(PALETTE, len(concepts))
    return dict(zip(concepts, colours))


def projection(table, ax: plt.Axes, *, palette: dict, title: str = "", legend: bool = False):
    """2-D scatter of ``table`` (pc1, pc2, concept), coloured by ``palette`` (concept -> colour)."""
    for concept, colour in palette.items():
        part = table[table["concept"] == concept]
        ax.scatter(part["pc1"], part["pc2"], s=16, color=colour, label=concept, alpha=0.85,
                   linewidths=0)
    ax.set(xlabel="PC 1", ylabel="PC 2", title=title)
    if legend:
        ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize="small", frameon=False)
    return ax


def mapper(graph: dict, ax: plt.Axes, *, labels, palette: dict, seed: int = 0, title: str = ""):
    """A Mapper graph (kmapper dict form): node area ~ its size, colour = its majority label in
    ``palette``; the legend lists only the labels that colour some node."""
    import networkx as nx
    import numpy as np

    labels = np.asarray(labels)
    g = nx.Graph()
    g.add_nodes_from(graph["nodes"])
    g.add_edges_from((s, t) for s, targets in graph["links"].items() for t in targets)
    ids = list(g.nodes)
    pos = nx.spring_layout(g, seed=seed)
    sizes = np.array([len(graph["nodes"][k]) for k in ids], dtype=float)
    majority = []
    for k in ids:
        values, counts = np.unique(labels[graph["nodes"][k]], return_counts=True)
        majority.append(values[np.argmax(counts)])  # ties: the alphabetically first label
    nx.draw_networkx_edges(g, pos, ax=ax, alpha=0.5)
    nx.draw_networkx_nodes(g, pos, nodelist=ids, node_size=20 + 280 * np.sqrt(sizes / sizes.max()),
                           node_color=[palette[m] for m in majority], ax=ax, edgecolors="k",
                           linewidths=0.5)
    for concept in (c for c in palette if c in set(majority)):
        ax.scatter([], [], color=palette[concept], label=concept)
    ax.legend(loc="best", fontsize="small", frameon=False, title="majority concept",
              title_fontsize="small")
    ax.set_title(title)
    ax.set_axis_off()
    return ax


def persistence_panels(diagrams, axes, *, titles: dict | None = None, column: str = "model"):
    """One :func:`persistence_diagram` per value of ``column``, all on one axis range."""
    finite = diagrams[diagrams["death"] < float("inf")]
    top = float(finite[["birth", "death"]].to_numpy().max()) * 1.05 if len(finite) else 1.0
    for ax, (key, group) in zip(axes, diagrams.groupby(column, sort=False)):
        persistence_diagram(group, ax, title=(titles or {}).get(key, str(key)))
        ax.set(xlim=(-0.02 * top, top), ylim=(-0.02 * top, top))
        ax.set_aspect("equal")
    return axes


def layer_map_path(layer_map, ax: plt.Axes, *, label: str = "best monotone map"):
    """Overlay a ``metrics.best_layer_map`` table on a :func:`layer_heatmap` (cell centres)."""
    ax.plot(layer_map["layer_b"] + 0.5, layer_map["layer_a"] + 0.5, color="C2", marker="o",
            lw=1.5, ms=4, label=label)
    ax.legend(loc="upper left", fontsize="small")
    return ax


def trajectory(table, ax: plt.Axes, *, x: str, hue: str, value: str = "value",
               null_low: str = "null_low", null_high: str = "null_high"):
    """Resonance along ``x`` (e.g. token position), one line per ``hue`` with its null band."""
    for i, (key, group) in enumerate(table.groupby(hue, sort=False)):
        group = group.sort_values(x)
        ax.plot(group[x], group[value], marker="o", ms=4, color=f"C{i}", label=str(key))
        ax.fill_between(group[x], group[null_low], group[null_high], color=f"C{i}", alpha=0.2,
                        lw=0, label=f"{key}: null 95 % range")
    ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize="small", frameon=False)
    return ax


# -- learning curves and paired effects of trained language models (04) ------------------------

def learning_curves(curves, axes, *, arms, order, unigram_ppl: float, gate_ratio: float,
                    titles: dict):
    """Median validation perplexity over seeds against training tokens, one panel per arm of
    ``arms`` (a ``curves`` table: arm, config, tokens, val_ppl), a line per config in
    ``order``, with the unigram perplexity (dotted) and the capability gate (light dotted)."""
    for ax, arm in zip(axes, arms):
        part = curves[curves["arm"] == arm]
        sns.lineplot(data=part, x="tokens", y="val_ppl", hue="config", style="config",
                     hue_order=order, style_order=order, palette="tab10", errorbar=None,
                     estimator="median", markers=False, ax=ax, legend=arm == arms[-1])
        ax.axhline(unigram_ppl, color="0.4", ls=":", lw=1.5, label="unigram")
        ax.axhline(gate_ratio * unigram_ppl, color="0.7", ls=":", lw=1)
        ax.set(yscale="log", xlabel="training tokens", ylabel="validation perplexity",
               title=titles[arm])
    axes[-1].legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize="small")
    return axes


def effect_intervals(effects, axes, *, labels, arms, published_label: str = "published"):
    """Paired effects (a ``resonance.runs.paired_effects`` table) in percent with their 95 %
    intervals, one panel per arm and a row per comparison label of ``labels``: equal tokens
    (C0) and equal FLOPs (C1) side by side, the published change as a red cross."""
    effects = effects.assign(
        pct=lambda t: 100 * t.ppl_change, pct_low=lambda t: 100 * t.ppl_change_low,
        pct_high=lambda t: 100 * t.ppl_change_high, published=lambda t: 100 * t.published_change)
    ypos = {label: i for i, label in enumerate(labels)}
    for ax, arm in zip(axes, arms):
        ax.axvline(0, color="0.5", lw=1)
        for offset, (basis, colour) in zip((-0.15, 0.15), (("tokens", "C0"), ("flops", "C1"))):
            part = effects[(effects["arm"] == arm) & (effects["basis"] == basis)]
            y = [ypos[c] + offset for c in part["comparison"]]
            ax.errorbar(part["pct"], y, xerr=[part["pct"] - part["pct_low"],
                                              part["pct_high"] - part["pct"]],
                        fmt="o", color=colour, capsize=3, ms=4, label=f"equal {basis}, 95 % CI")
        part = effects[(effects["arm"] == arm) & (effects["basis"] == "tokens")]
        ax.scatter(part["published"], [ypos[c] for c in part["comparison"]], marker="x",
                   color="C3", s=50, zorder=3, label=published_label)
        ax.set(xlabel="change in validation perplexity (%)", title=f"{arm} arm")
    axes[0].set_yticks(range(len(labels)), labels)
    axes[0].invert_yaxis()
    axes[-1].legend(loc="lower right", fontsize="small")
    return axes


def phase_mechanism(heads, mechanism, axes, seed: int = 0):
    """Three panels of a trained Resonance Transformer (``resonance.phase_mechanism`` tables):
    A's learned ``w_h`` per layer and head (strip-plot jitter drawn with ``seed``, so the figure
    is the same on every run), the spread of R off the diagonal at init and at the end, and the
    rhyme groups' phase cohesion."""
    import numpy as np

    a = heads[heads["config"] == "A_random_phase"].assign(
        unit=lambda t: "L" + t["layer"].astype(str) + "·h" + t["head"].astype(str))
    state = np.random.get_state()  # seaborn's jitter draws from the global generator
    np.random.seed(seed)
    try:
        sns.stripplot(data=a, x="unit", y="w", hue="arm", dodge=True, ax=axes[0], size=5)
    finally:
        np.random.set_state(state)
    axes[0].axhline(0.1, color="0.5", ls="--", lw=1)
    axes[0].set(xlabel="layer · head (A, every seed)", ylabel="learned $w_h$ (init 0.1, dashed)",
                title="attention-bias weights")
    spread = mechanism[mechanism["config"] != "A_no_bias"]
    sns.pointplot(data=spread, x="stage", y="r_std", hue="config", ax=axes[1], errorbar=None,
                  dodge=0.3, markersize=4, linewidth=1)
    axes[1].set(ylabel="std of R off the diagonal", title="spread of R, init → end")
    axes[1].legend(fontsize="x-small")
    coh = mechanism[mechanism["config"].isin(["B_rhyme_phase", "B_shuffled", "C_small_rhyme",
                                              "A_random_phase"])]
    sns.pointplot(data=coh, x="stage", y="rhyme_cohesion", hue="config", ax=axes[2],
                  errorbar=None, dodge=0.3, markersize=4, linewidth=1)
    axes[2].set(ylabel="within − between resonance (rhyme groups)",
                title="do rhyme groups stay together?")
    axes[2].legend(fontsize="x-small")
    return axes


# -- checkpoint trajectories (07) ---------------------------------------------------------------

def velocity_panels(velocity, null_band, noise_floor, axes, *, schedule: str, boundary: float,
                    ylabel: str = "velocity"):
    """One measure's velocity along the checkpoints under ``schedule``, a panel per layer (the
    ``resonance.trajectories`` tables ``velocity``, ``velocity_null`` and a (schedule, layer)
    series of the noise floor): a line per objective over the null's range (grey band) and
    the noise floor (dashed); a vertical line at ``boundary`` (e.g. the end of the first
    third)."""
    layers = sorted(velocity["layer"].unique())
    part = velocity[velocity["schedule"] == schedule]
    for ax, layer in zip(axes, layers):
        b = null_band[(null_band["schedule"] == schedule) & (null_band["layer"] == layer)]
        ax.axhspan(b["null_low"].min(), b["null_high"].max(), color="0.85", zorder=0,
                   label="null range")
        ax.axhline(noise_floor.loc[(schedule, layer)], color="0.4", ls="--", lw=1,
                   label="noise floor")
        sns.lineplot(data=part[part["layer"] == layer], x="step", y="velocity", hue="objective",
                     errorbar=None, marker="o", ax=ax, legend=layer == layers[-1])
        ax.axvline(boundary, color="0.6", lw=0.8)
        ax.set(title=f"layer {layer}", xlabel="step", ylabel=ylabel if layer == layers[0] else "")
    axes[-1].legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize="small")
    return axes


def concentration_panels(conc, axes, *, measures, uniform: float):
    """Concentration C per cell (objective and layer; a ``concentration_table`` with a ``cell``
    column) against its null's 95 % range, a panel per measure, the two schedules side by side,
    the uniform share dotted."""
    for ax, measure in zip(axes, measures):
        t = conc[conc["measure"] == measure].sort_values(["objective", "layer"])
        cells = list(dict.fromkeys(t["cell"]))
        y = {c: i for i, c in enumerate(cells)}
        for sched, dy, colour in (("cosine", -0.15, "C0"), ("constant", 0.15, "C1")):
            s = t[t["schedule"] == sched]
            pos = s["cell"].map(y) + dy
            ax.hlines(pos, s["null_low"], s["null_high"], color="0.7", lw=4)
            ax.scatter(s["C"], pos, color=colour, s=18, zorder=3, label=sched)
        ax.axvline(uniform, color="0.5", ls=":", lw=1)
        ax.set_yticks(range(len(cells)), cells, fontsize="x-small")
        ax.invert_yaxis()
        ax.set(title=measure, xlabel="C (share of the path in the first third)")
    return axes


# -- capability gates and resonance against size (01) -------------------------------------------

def capability_panels(gates, decodability, axes, *, unigram_ppl: float, ppl_gate: float,
                      chance: float):
    """Left: each model's validation perplexity against its parameters, with the unigram model
    and the gate (``ppl_gate`` × unigram). Right: held-out-word concept decodability per width
    rung and layer, trained (solid) and random-init twins (dashed), with chance."""
    axes[0].scatter(gates.params, gates.val_ppl, label="one model (seed)")
    axes[0].axhline(unigram_ppl, color="C3", ls="--", label="unigram model")
    axes[0].axhline(ppl_gate * unigram_ppl, color="C3", ls=":",
                    label=f"gate ({ppl_gate:g} × unigram)")
    axes[0].set(xscale="log", xlabel="parameters", ylabel="validation perplexity",
                title="perplexity")
    axes[0].legend(fontsize="small")
    for kind, style in (("trained", "-o"), ("random_init", "--s")):
        d = decodability[decodability.kind == kind].groupby(["rung", "layer"]).accuracy.mean() \
            .unstack("layer")
        for layer in d.columns:
            axes[1].plot(d.index, d[layer], style, label=f"{kind}, layer {layer}", alpha=0.8)
    axes[1].axhline(chance, color="0.5", ls=":", label="chance")
    axes[1].set(xlabel="width rung", ylabel="held-out-word balanced accuracy",
                title="concept decodability")
    axes[1].legend(fontsize="x-small", ncol=2)
    return axes


def size_cells(by_size, axes, *, cells, margin: float, primary=None):
    """Resonance with the references against parameters, one panel per (stimuli, measure) of
    ``cells`` (a ``by_size`` table with its multiway interval and null level), with the
    ceiling (largest size) ± the equivalence ``margin`` shaded."""
    for (stim, measure), ax in zip(cells, axes):
        rows = by_size[(by_size.stimuli == stim) & (by_size.measure == measure)] \
            .sort_values("params")
        ax.errorbar(rows["params"], rows["value"],
                    yerr=[rows["value"] - rows["ci_low"], rows["ci_high"] - rows["value"]],
                    fmt="o-", capsize=3, label="vs references (95 % multiway CI)")
        ceiling = rows.iloc[-1]
        ax.axhspan(ceiling.value - margin, ceiling.value + margin, color="C2", alpha=0.15,
                   label="ceiling ± equivalence margin")
        ax.plot(rows["params"], rows["null_high"], color="0.5", ls=":",
                label="shuffled null, 95 % level")
        tag = " (primary)" if (stim, measure) == primary else ""
        ax.set(xscale="log", title=f"{measure}, {stim}{tag}", ylabel="best-layer-pair resonance")
    return axes
