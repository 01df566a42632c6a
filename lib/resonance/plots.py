"""One figure style for the whole repository, and ``save`` into ``figures/``."""

from __future__ import annotations

from pathlib import Path

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


def save(fig: plt.Figure, name: str) -> Path:
    """Save ``fig`` as ``FIGURES/<name>.png`` (name = notebook prefix + what it shows).

    PNG metadata carries no timestamp or version, so re-running a notebook rewrites the same
    bytes when the data are the same.
    """
    if not name or "/" in name or name.endswith(".png"):
        raise ValueError(f"figure name should be a bare stem like '01_resonance_vs_size', got {name!r}")
    paths.FIGURES.mkdir(parents=True, exist_ok=True)
    target = paths.FIGURES / f"{name}.png"
    fig.savefig(target, metadata={"Software": None})
    return target
