"""Figures and self-contained HTML reports for :func:`resonance.compare` and
:func:`resonance.rank`.

The HTML holds everything inline: CSS in a ``<style>`` element, every figure as a base64 PNG
data URI, every table as an HTML ``<table>``; it opens offline in any browser and can be mailed
as one file. Figures use the repository's style (:func:`resonance.plots.set_style`).
"""

from __future__ import annotations

import base64
import html
import io
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from . import __version__
from . import measures as _registry

if TYPE_CHECKING:
    from .comparison import Comparison, Ranking

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto;
       max-width: 1100px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.25em; margin-top: 1.8em;
     border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
p.lead { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { padding: 0.25em 0.7em; border-bottom: 1px solid #e4e4e4; text-align: right; }
th { background: #f4f4f4; } td.t, th:first-child { text-align: left; }
img { max-width: 100%; height: auto; display: block; margin: 0.8em 0; }
.note { color: #555; font-size: 0.92em; } code { background: #f4f4f4; padding: 0 0.25em; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: 0.15em 1em; }
dl.meta dt { font-weight: 600; } dl.meta dd { margin: 0; }
"""


# --------------------------------------------------------------------------------------------
# helpers


def png_data_uri(fig, dpi: int = 110) -> str:
    """A matplotlib figure as a ``data:image/png;base64,...`` URI (no timestamp metadata)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _img(fig, alt: str) -> str:
    return f'<img src="{png_data_uri(fig)}" alt="{html.escape(alt)}">'


P_FLOOR = 1e-4  # smaller p-values print as "< 0.0001": a normal tail that far means nothing


def format_p(p: float) -> str:
    """A p-value for display: three decimals, or ``< 0.0001`` below :data:`P_FLOOR`."""
    if p is None or (isinstance(p, float) and np.isnan(p)):
        return "n/a"
    return f"< {P_FLOOR:g}" if p < P_FLOOR else (f"{p:.4f}" if p < 0.001 else f"{p:.3f}")


def _count(n) -> str:
    """A parameter count with thousands separators (``?`` when unknown)."""
    return f"{int(n):,}" if isinstance(n, (int, np.integer)) and n else "?"


def _table(frame: pd.DataFrame, digits: int = 3) -> str:
    def cell(column, x):
        if x is None or x is pd.NA:
            return "<td>n/a</td>"
        if isinstance(x, (float, np.floating, int, np.integer)) and not isinstance(x, bool):
            if str(column).startswith("p_"):
                text = format_p(float(x))
            elif isinstance(x, (int, np.integer)):
                text = str(x)
            elif np.isnan(x):
                text = "n/a"
            else:
                # one fixed format per column (a tiny value reads 0.000, never -0.000)
                text = f"{x:.{digits}f}".replace(f"-0.{'0' * digits}", f"0.{'0' * digits}")
            return f"<td>{text}</td>"
        return f'<td class="t">{html.escape(str(x))}</td>'
    columns = list(frame.columns)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(cell(c, v) for c, v in zip(columns, row)) + "</tr>"
                   for row in frame.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _direction(measure: str) -> str:
    spec = _registry.MEASURES.get(measure)
    if spec is None:
        return ""
    return "higher = more alike" if spec.direction == "similarity" else "lower = more alike"


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            f"{body}\n<p class=\"note\">Made by resonance {__version__}.</p>\n</body>\n</html>\n")


def _meta(items: dict) -> str:
    return '<dl class="meta">' + "".join(
        f"<dt>{html.escape(str(k))}</dt><dd>{html.escape(str(v))}</dd>"
        for k, v in items.items()) + "</dl>"


def _null_phrase(kind: str) -> str:
    return ("rows of B shuffled against A" if kind == "shuffle"
            else "isotropic Gaussian clouds of B's shape and total variance")


# --------------------------------------------------------------------------------------------
# figures


def _interval_figure(table: pd.DataFrame, y: str, xlabel: str, title: str):
    """One row per ``y`` label: value with its interval, and the null band."""
    import matplotlib.pyplot as plt

    from . import plots
    fig, ax = plt.subplots(figsize=(7, 1.3 + 0.42 * len(table)))
    plots.interval_plot(table, ax, y=y)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    ax.set(xlabel=xlabel, title=title, ylim=(-0.6, len(table) - 0.4))
    fig.tight_layout()
    return fig


def comparison_figures(result: "Comparison") -> dict:
    """``{"global", "layers", "local" (when labelled), "persistence"}`` matplotlib figures."""
    import matplotlib.pyplot as plt

    from . import plots
    plots.set_style()
    info, figures = result.info, {}
    a, b = result.model_a, result.model_b

    table = result.global_table.reset_index(drop=True)
    fig, axes = plt.subplots(len(table), 1, figsize=(7, 1.25 + 1.05 * len(table)),
                             squeeze=False)
    for i, ax in enumerate(axes[:, 0]):
        plots.interval_plot(table.iloc[[i]], ax, y="measure")
        ax.set_xlabel(_direction(table["measure"].iloc[i]))
        if i:
            ax.get_legend().remove()
        else:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    axes[0, 0].set_title(f"global resonance, {a} layer {info['layer_a']} vs {b} layer "
                         f"{info['layer_b']}")
    fig.tight_layout()
    figures["global"] = fig

    fig, (ax_heat, ax_map) = plt.subplots(1, 2, figsize=(12, 5),
                                          gridspec_kw={"width_ratios": [1.35, 1]})
    plots.layer_heatmap(result.layer_table, ax_heat, label_a=a, label_b=b)
    col = {layer: j for j, layer in enumerate(sorted(result.layer_table["layer_b"].unique()))}
    row = {layer: i for i, layer in enumerate(sorted(result.layer_table["layer_a"].unique()))}
    ax_heat.plot([col[x] + 0.5 for x in result.layer_map["layer_b"]],
                 [row[y] + 0.5 for y in result.layer_map["layer_a"]], "o-", color="C2", ms=5)
    ax_heat.set_title(f"{info['layer_measure']} per layer pair ({_direction(info['layer_measure'])}"
                      "); green: best monotone map")
    ax_map.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1, label="equal relative depth")
    ax_map.plot(result.layer_map["depth_a"], result.layer_map["depth_b"], "o-", color="C2",
                label="best monotone map")
    ax_map.set(xlabel=f"{a} relative depth", ylabel=f"{b} relative depth", xlim=(-0.03, 1.03),
               ylim=(-0.03, 1.03), title="best layer map")
    ax_map.set_aspect("equal")
    ax_map.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    figures["layers"] = fig

    if result.local_table is not None:
        local = result.local_table.sort_values("value").reset_index(drop=True)
        measure = local["measure"].iloc[0]
        figures["local"] = _interval_figure(local, "concept", f"{measure} ({_direction(measure)})",
                                            "local resonance per label")

    dg = result.diagrams
    finite = dg[np.isfinite(dg["death"])]
    top = float(finite[["birth", "death"]].to_numpy().max()) * 1.05 if len(finite) else 1.0
    fig, axes = plt.subplots(1, 2, figsize=(11, 5), sharex=True, sharey=True)
    for ax, side, name, layer in ((axes[0], "a", a, info["layer_a"]),
                                  (axes[1], "b", b, info["layer_b"])):
        plots.persistence_diagram(dg[dg["model"] == side], ax, title=f"{name}, layer {layer}")
        ax.set(xlim=(-0.02 * top, top), ylim=(-0.02 * top, top))
        ax.set_aspect("equal")
        ax.set_xlabel(f"birth (distance / its {info['ph_quantile']:g} quantile)")
    axes[0].set_ylabel("death")
    fig.tight_layout()
    figures["persistence"] = fig
    return figures


def ranking_figures(result: "Ranking") -> dict:
    """``{"candidates", "pairs"}``: each candidate's value with interval and null band; each
    pair's paired advantage with its interval."""
    import matplotlib.pyplot as plt

    from . import plots
    plots.set_style()
    table = result.table.iloc[::-1].reset_index(drop=True)  # best on top
    figures = {"candidates": _interval_figure(
        table, "candidate", f"{result.measure} with {result.reference} "
        f"({_direction(result.measure)})", "resonance with the reference")}
    pairs = result.pairs.iloc[::-1].reset_index(drop=True)
    if len(pairs):
        labels = [f"{p.better} − {p.worse}" for p in pairs.itertuples()]
        fig, ax = plt.subplots(figsize=(7, 1.3 + 0.5 * len(pairs)))
        ax.errorbar(pairs["advantage"], range(len(pairs)),
                    xerr=[pairs["advantage"] - pairs["ci_low"],
                          pairs["ci_high"] - pairs["advantage"]],
                    fmt="o", color="C0", capsize=3)
        ax.axvline(0, color="0.5", lw=1, ls="--")
        ax.set_yticks(list(range(len(pairs))), labels)
        ax.set(ylim=(-0.6, len(pairs) - 0.4),
               xlabel=f"paired advantage in {result.measure} (> 0: the first is more alike)",
               title="paired differences between candidates")
        fig.tight_layout()
        figures["pairs"] = fig
    return figures


# --------------------------------------------------------------------------------------------
# pages


def comparison_html(result: "Comparison") -> str:
    """The report of :func:`resonance.compare` as one self-contained HTML page."""
    info = result.info
    figures = result.figures or comparison_figures(result)
    a, b = result.model_a, result.model_b
    da, db = info["describe_a"], info["describe_b"]
    parts = [f"<h1>Resonance: {html.escape(a)} vs {html.escape(b)}</h1>",
             f'<p class="lead">{info["n_stimuli"]} stimuli ({html.escape(info["stimuli"])}), '
             f"pooled by {html.escape(info['pool'])}; global and local resonance at layer "
             f"{info['layer_a']} of A and {info['layer_b']} of B (relative depth "
             f"{info['depth']:g}).</p>"]
    parts.append(_meta({
        "model A": f"{da['name']} — {da['architecture']} ({da['source']}; "
                   f"{_count(da['params'])} parameters, {da['layers']} layers, "
                   f"width {da['width']})",
        "model B": f"{db['name']} — {db['architecture']} ({db['source']}; "
                   f"{_count(db['params'])} parameters, {db['layers']} layers, "
                   f"width {db['width']})",
        "stimuli": f"{info['stimuli']} (key {info['stimuli_key']})",
        "resampling": f"{info['n_boot']} delete-d jackknife subsets, {info['n_null']} null draws, "
                      f"{info['ci']:.0%} intervals, seed {info['seed']}",
        "measure options": info["measure_options"] or "library defaults",
        "time": f"{info.get('seconds', float('nan')):.1f} s wall, "
                f"{info.get('cpu_seconds', float('nan')):.1f} s CPU",
    }))

    g = result.global_table
    shown = g[["measure", "layer_a", "layer_b", "value", "ci_low", "ci_high", "null_mean",
               "null_low", "null_high", "p_value", "null", "n"]]
    parts += ["<h2>Global resonance</h2>", _table(shown), _img(figures["global"],
                                                                "global resonance")]
    notes = []
    for row in g.itertuples():
        notes.append(f"<code>{html.escape(row.measure)}</code>: {_direction(row.measure)}; "
                     f"null = {_null_phrase(row.null)}")
    floor = 1 / (1 + info["n_null"]) if info["n_null"] else float("nan")
    parts.append('<p class="note">' + "<br>".join(notes) +
                 f"<br>Intervals: delete-d jackknife over stimuli. p-values are one-sided "
                 f"(the tail that means more alike); with {info['n_null']} null draws the "
                 f"smallest possible is {floor:.3f}.</p>")

    parts += ["<h2>Layer × layer</h2>", _img(figures["layers"], "layer by layer heatmap"),
              f'<p class="note">{html.escape(info["layer_measure"])} between every extracted '
              f"layer of A (rows) and B (columns), layer 0 = embeddings. The green path is the "
              f"best non-decreasing layer map.</p>", "<h3>Best layer map</h3>",
              _table(result.layer_map)]

    parts.append("<h2>Local resonance per label</h2>")
    if result.local_table is not None:
        loc = result.local_table[["concept", "measure", "value", "ci_low", "ci_high",
                                  "null_mean", "null_high", "p_value", "n"]]
        parts += [_table(loc.sort_values("value", ascending=False)),
                  _img(figures["local"], "local resonance")]
        if info["local_note"]:
            parts.append(f'<p class="note">{html.escape(info["local_note"])}</p>')
    else:
        parts.append(f'<p class="note">{html.escape(info["local_note"])}.</p>')

    parts += ["<h2>Persistence diagrams</h2>",
              _img(figures["persistence"], "persistence diagrams"),
              _table(result.diagram_table.replace({"model": {"a": a, "b": b}})),
              f'<p class="note">Vietoris–Rips H0 and H1 of up to {info["ph_points"]} landmark '
              f"stimuli of each model's layer, distances divided by their "
              f"{info['ph_quantile']:g} quantile so both diagrams share one scale (the "
              "infinite H0 bar is left out).</p>"]
    return _page(f"resonance: {a} vs {b}", "\n".join(parts))


def ranking_html(result: "Ranking") -> str:
    """The report of :func:`resonance.rank` as one self-contained HTML page."""
    info = result.info
    figures = result.figures or ranking_figures(result)
    parts = [f"<h1>Which model resonates most with {html.escape(result.reference)}?</h1>",
             f'<p class="lead">{html.escape(result.measure)} ({_direction(result.measure)}) at '
             f"relative depth {info['depth']:g} on {info['n_stimuli']} stimuli "
             f"({html.escape(info['stimuli'])}).</p>",
             "<h2>Candidates</h2>",
             _table(result.table.drop(columns=["n"])),
             _img(figures["candidates"], "candidates"),
             f'<p class="note">Null: {_null_phrase(info["null"])}, {info["n_null"]} draws; '
             f"intervals from {info['n_boot']} delete-{info['drop']} jackknife subsets.</p>",
             "<h2>Paired differences</h2>", _table(result.pairs)]
    if "pairs" in figures:
        parts.append(_img(figures["pairs"], "paired differences"))
    parts.append('<p class="note">Every candidate is measured on the same jackknife subsets of '
                 "the stimuli, so the spread of each pair's difference over those subsets gives "
                 "its standard error; p-values are two-sided (normal approximation), "
                 "<code>p_holm</code> adjusts them for the number of pairs.</p>")
    return _page(f"resonance: ranking against {result.reference}", "\n".join(parts))


__all__ = ["comparison_figures", "ranking_figures", "comparison_html", "ranking_html",
           "png_data_uri", "format_p"]
