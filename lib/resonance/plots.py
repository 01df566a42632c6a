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
