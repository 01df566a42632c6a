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
