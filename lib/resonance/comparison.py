"""Compare two models, or rank candidates against a reference: the practitioner's entry points.

>>> import resonance
>>> report = resonance.compare("minilm", "mpnet", "concepts")     # doctest: +SKIP
>>> report.global_table                      # one row per measure: value, CI, null, p-value
>>> report.save("minilm-vs-mpnet.html")      # self-contained HTML + a tidy CSV beside it
>>> ranking = resonance.rank("mpnet", ["minilm", "inhouse-gpt2"], "corpus")   # doctest: +SKIP
>>> ranking.pairs                            # paired differences between candidates

:func:`compare` extracts each model's activations once (cached under ``paths.CACHE``) and
computes, on the same stimuli:

- **global resonance** at one layer per model (``depth``: 1.0 = the last layer) for each measure,
  with a delete-d jackknife interval over stimuli and a null from
  :func:`resonance.metrics.global_resonance` (shuffled pairs, or Gaussian clouds for a
  pairing-free measure, as the registry says; ``n_null >= 99`` draws for a shown p-value);
- the **layer x layer** matrix of one measure (:func:`resonance.similarity.similarity_matrix`)
  and the **best monotone layer map** (:func:`resonance.metrics.best_layer_map`);
- **local resonance** per stimulus label (:func:`resonance.metrics.local_resonance`), when the
  stimuli carry labels;
- H0/H1 **persistence diagrams** of both models' layers, on distances divided by their 0.9
  quantile (scale-free), drawn on the same axes.

:func:`rank` measures each candidate's resonance with a reference and tests the difference of
every pair of candidates by resampling stimuli *paired*: the same delete-d jackknife subsets
for every candidate, so what varies with the stimuli cancels in the difference.

Which direction means "more alike" comes from :mod:`resonance.measures` (a distance such as
``rtd`` ranks lowest first); nothing here assumes it.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from . import measures as _registry

DEFAULT_MEASURES = ("cka_linear_debiased", "mutual_knn", "rtd")
# RTD at its library default (10 subsets of 200 stimuli) takes seconds per value; a report draws
# ~150 values per measure (nulls and jackknife subsets), so it uses smaller subsets by default.
DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {"rtd": {"subsample_size": 64, "n_subsamples": 4}}
LAYER_MEASURE = "cka_linear_debiased"
STIMULI_KINDS = ("concepts", "corpus")
N_STIMULI = 200
MIN_STIMULI = 10
PH_POINTS = 200
PH_QUANTILE = 0.9
_KNN_MEASURES = ("mutual_knn", "cknna")


# --------------------------------------------------------------------------------------------
# Inputs


def offline_by_default() -> None:
    """Set ``HF_HUB_OFFLINE=1`` (and ``TRANSFORMERS_OFFLINE``) unless the user has set them: the
    packaged models need no network, and a hub lookup would otherwise stall on retries."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", os.environ["HF_HUB_OFFLINE"])


def read_stimuli_file(path: str | os.PathLike):
    """Stimuli from a UTF-8 text file, one stimulus per line (blank lines skipped). When every
    line holds a tab, the part before the first tab is the stimulus' label (``label<TAB>text``),
    which enables local resonance per label."""
    from .stimuli import Stimuli
    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"stimuli file {str(path)!r} does not exist; pass 'concepts', 'corpus' "
                         "or a text file with one stimulus per line")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"stimuli file {str(path)!r} is not UTF-8 text ({err.reason} at byte "
                         f"{err.start}); save it as UTF-8, one stimulus per line") from None
    except OSError as err:
        raise ValueError(f"stimuli file {str(path)!r} cannot be read: {err.strerror}") from None
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise ValueError(f"stimuli file {str(path)!r} is empty; write one stimulus per line")
    labels = None
    if all("\t" in line for line in lines):
        labels, lines = zip(*(line.split("\t", 1) for line in lines))
        labels, lines = [x.strip() for x in labels], [x.strip() for x in lines]
        if not all(lines):
            raise ValueError(f"stimuli file {str(path)!r}: a line holds a label but no text "
                             "after its tab")
    return Stimuli.from_texts(list(lines), labels, name=f"file-{path.stem}")


def load_stimuli(stimuli: Any = "concepts", n: int = N_STIMULI, seed: int = 0):
    """``stimuli`` as a :class:`~resonance.stimuli.Stimuli`: ``"concepts"`` (``n`` WordNet nouns,
    an equal number per concept, labelled), ``"corpus"`` (``n`` KJV validation verses), a path
    to a text file (:func:`read_stimuli_file`), a list of texts, or Stimuli as they are."""
    from . import stimuli as _stimuli
    from .activations import as_stimuli
    if isinstance(stimuli, str) and stimuli in STIMULI_KINDS:
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n (the number of stimuli) must be a positive integer, got {n!r}")
        if stimuli == "concepts":
            per = max(1, int(n) // len(_stimuli.CONCEPTS))
            return _stimuli.concept_stimuli(n_per_concept=per, form="word", seed=seed)
        return _stimuli.corpus_stimuli("kjv", n=int(n), seed=seed)
    if isinstance(stimuli, (str, os.PathLike)):
        return read_stimuli_file(stimuli)
    return as_stimuli(stimuli)


def _options(measures: Sequence[str], measure_kwargs: Mapping | None, k: int | None) -> dict:
    """Per-measure options: the report's defaults, then ``k`` for k-NN measures, then the
    caller's own (which win)."""
    if measure_kwargs is not None and not isinstance(measure_kwargs, Mapping):
        raise ValueError("measure_kwargs must map a measure name to its options, e.g. "
                         f"{{'rtd': {{'subsample_size': 100}}}}, got {measure_kwargs!r}")
    options = {name: dict(DEFAULT_OPTIONS.get(name, {})) for name in measures}
    if k is not None:
        for name in measures:
            if name in _KNN_MEASURES:
                options[name]["k"] = int(k)
    for name, extra in (measure_kwargs or {}).items():
        if name not in options:
            raise ValueError(f"measure_kwargs has options for {name!r}, which is not among the "
                             f"measures {list(measures)}")
        options[name].update(extra)
    for name in measures:
        _registry.check_options(name, options[name])
    return {name: opts for name, opts in options.items() if opts}


def min_stimuli(measures: Sequence[str], options: Mapping[str, Mapping]) -> tuple[int, str]:
    """The fewest stimuli the measures need (with the jackknife leaving out a tenth), and why."""
    need, why = MIN_STIMULI, f"a report needs at least {MIN_STIMULI} stimuli"
    for name in measures:
        if name in _KNN_MEASURES:
            k = int(options.get(name, {}).get("k", 10))
            # n - n // 10 stimuli remain in a jackknife subset; each needs k neighbours besides
            # itself.
            n = k + 2
            while n - max(1, n // 10) <= k:
                n += 1
            if n > need:
                need, why = n, (f"{name} with k={k} needs more than k stimuli in every jackknife "
                                "subset (a tenth left out): pass a smaller k (--k) or more stimuli")
    return need, why


def _check_count(n: int, measures: Sequence[str], options: Mapping[str, Mapping],
                 what: str) -> None:
    need, why = min_stimuli(measures, options)
    if n < need:
        raise ValueError(f"{what} hold {n} stimuli, too few: {why} (at least {need})")


def _model(model: Any):
    """A ZooModel (loaded by name / hub id / folder) or Activations as they are."""
    from . import zoo
    from .activations import Activations
    if isinstance(model, Activations) or hasattr(model, "hidden_states"):
        return model
    if isinstance(model, (str, os.PathLike)):
        return zoo.load(model)
    raise TypeError(f"a model is a zoo name, a Hugging Face id, a folder, a ZooModel or "
                    f"Activations, got {type(model).__name__}")


def _name(model: Any) -> str:
    return str(getattr(model, "name", None) or getattr(model, "model", "model"))


def _n_hidden(model: Any) -> int:
    """Hidden states of a model (embeddings included), or the layers held by Activations."""
    return model.n_layers + 1 if hasattr(model, "hidden_states") else len(model.layers)


def _ids_at(depths: Sequence[float], count: int) -> list[int]:
    ids = []
    for depth in depths:
        if not isinstance(depth, (int, float, np.floating, np.integer)) or not 0 <= depth <= 1:
            raise ValueError(f"layer depths must lie in [0, 1] (0 = embeddings, 1 = the last "
                             f"layer), got {depth!r}")
        ids.append(int(round(float(depth) * (count - 1))))
    return list(dict.fromkeys(ids))


def _layer_ids(model: Any, layers: Any, side: int) -> list[int]:
    """Which hidden states to extract: ``"all"``, relative depths (a list of floats in [0, 1],
    applied to both models) or a pair ``(ids_a, ids_b)`` of explicit hidden-state ids."""
    count = _n_hidden(model)
    if isinstance(layers, str):
        if layers != "all":
            raise ValueError(f"layers must be 'all', a list of depths in [0, 1] or a pair "
                             f"(ids_a, ids_b), got {layers!r}")
        return list(range(count))
    if isinstance(layers, tuple) and len(layers) == 2 and all(
            isinstance(x, (list, tuple, range)) for x in layers):
        ids = [int(i) for i in layers[side]]
        if not ids:
            raise ValueError("an explicit layer list is empty")
        bad = [i for i in ids if not -count <= i < count]
        if bad:
            raise ValueError(f"layer ids {bad} out of range: {_name(model)} has hidden states "
                             f"0..{count - 1}")
        return list(dict.fromkeys(i % count for i in ids))
    depths = list(layers)
    if not depths:
        raise ValueError("layers is empty; pass 'all' or depths such as [0, 0.5, 1]")
    return _ids_at(depths, count)


def _extract(model: Any, stimuli, ids: list[int], pool: str, progress: bool):
    from .activations import Activations, extract
    if isinstance(model, Activations):
        if model.n_items and model.n_items != len(stimuli):
            raise ValueError(f"activations of {model.model!r} hold {model.n_items} stimuli but "
                             f"the stimuli are {len(stimuli)}")
        keep = [model.layer_ids[i] for i in ids]
        return Activations([model[i] for i in keep], keep, model.model, model.pool,
                           model.stimuli_key, model.model_key, len(stimuli), model.labels)
    return extract(model, stimuli, layers=ids, pool=pool, progress=progress)


def _at_depth(acts, depth: float, count: int) -> tuple[int, np.ndarray]:
    """The extracted layer nearest to relative ``depth`` of a model with ``count`` hidden
    states (by hidden-state id)."""
    if not 0 <= depth <= 1:
        raise ValueError(f"depth must lie in [0, 1] (1 = the last layer), got {depth!r}")
    ids = np.asarray(acts.layer_ids)
    top = max(count - 1, 1)
    slot = int(np.argmin(np.abs(ids / top - depth)))
    return int(ids[slot]), acts.layers[slot]


def _hidden_count(model: Any, acts) -> int:
    """Hidden states of the model behind ``acts``: a model's own count; for given Activations,
    one past their largest layer id."""
    return model.n_layers + 1 if hasattr(model, "hidden_states") else max(model.layer_ids) + 1


def _progress_enabled(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else bool(progress)


class _Steps:
    """A tqdm bar over a report's steps, on stderr, off unless stderr is a terminal; it also
    times each step (``timings``: step -> wall and CPU seconds)."""

    def __init__(self, names: Sequence[str], enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=len(names), desc="resonance", unit="step", file=sys.stderr,
                            leave=False)
        self.current: str | None = None
        self.clock = (time.perf_counter(), time.process_time())
        self.timings: dict[str, dict[str, float]] = {}

    def __call__(self, what: str) -> None:
        started = self.current is not None
        self._lap()
        self.current = what
        if self.bar is not None:
            if started:
                self.bar.update(1)
            self.bar.set_description(what)

    def _lap(self) -> None:
        now = (time.perf_counter(), time.process_time())
        if self.current is not None:
            self.timings[self.current] = {"wall": round(now[0] - self.clock[0], 3),
                                          "cpu": round(now[1] - self.clock[1], 3)}
        self.clock = now

    def close(self) -> None:
        self._lap()
        self.current = None
        if self.bar is not None:
            self.bar.update(self.bar.total - self.bar.n)
            self.bar.close()
            self.bar = None


# --------------------------------------------------------------------------------------------
# compare


class _Report:
    """What both results share: ``to_csv`` (the tidy table), ``to_html`` and ``save``."""

    def tidy(self) -> pd.DataFrame:  # pragma: no cover - each result defines its own
        raise NotImplementedError

    def _html(self) -> str:  # pragma: no cover
        raise NotImplementedError

    def to_csv(self, path: str | os.PathLike) -> Path:
        from .io import atomic_path
        path = Path(path)
        with atomic_path(path) as tmp:
            self.tidy().to_csv(tmp, index=False)
        return path

    def to_html(self, path: str | os.PathLike) -> Path:
        return _write_text(path, self._html())

    def save(self, path: str | os.PathLike = "report.html") -> tuple[Path, Path]:
        """Write the HTML report at ``path`` and the tidy CSV beside it (same stem, ``.csv``)."""
        path = Path(path)
        if path.suffix.lower() != ".html":
            raise ValueError(f"the report is HTML: give a path ending in .html, got {str(path)!r}")
        return self.to_html(path), self.to_csv(path.with_suffix(".csv"))


@dataclass
class Comparison(_Report):
    """Everything :func:`compare` found: tables (pandas) and figures (matplotlib).

    ``global_table``: one row per measure; ``layer_table``: the layer x layer matrix (tidy);
    ``layer_map``: A's layers -> best B layer; ``local_table``: per label and measure (None
    without labels); ``diagrams``: model, dim, birth, death; ``diagram_table``: bars and total
    persistence per model and dimension. ``info``: models, stimuli, settings, timings.
    """

    model_a: str
    model_b: str
    info: dict
    global_table: pd.DataFrame
    layer_table: pd.DataFrame
    layer_map: pd.DataFrame
    local_table: pd.DataFrame | None
    diagrams: pd.DataFrame
    diagram_table: pd.DataFrame
    figures: dict = field(default_factory=dict, repr=False)

    def tidy(self) -> pd.DataFrame:
        """One long table of every number in the report (the CSV): a ``section`` column
        (global | layers | layer_map | local | persistence) and the columns of :data:`COLUMNS`."""
        frames = [self.global_table.assign(section="global")]
        frames.append(self.layer_table.assign(section="layers"))
        frames.append(self.layer_map.assign(section="layer_map",
                                            measure=self.info["layer_measure"]))
        if self.local_table is not None:
            frames.append(self.local_table.assign(section="local"))
        persistence = self.diagram_table.melt(
            id_vars=["model", "dim"], value_vars=["bars", "total_persistence"],
            var_name="measure", value_name="value")
        persistence["layer_a"] = np.where(persistence["model"] == "a",
                                          self.info["layer_a"], np.nan)
        persistence["layer_b"] = np.where(persistence["model"] == "b",
                                          self.info["layer_b"], np.nan)
        persistence["measure"] = [f"h{d}_{m}" for d, m in zip(persistence["dim"],
                                                              persistence["measure"])]
        frames.append(persistence.drop(columns=["dim"]).assign(section="persistence"))
        out = pd.concat(frames, ignore_index=True)
        out["model_a"], out["model_b"] = self.model_a, self.model_b
        out["stimuli"] = self.info["stimuli"]
        for col in COLUMNS:
            if col not in out:
                out[col] = np.nan
        for col in ("layer_a", "layer_b", "n"):  # integers with gaps, not floats
            out[col] = pd.array(out[col].round(), dtype="Int64")
        return out[list(COLUMNS)]

    def _html(self) -> str:
        from .report import comparison_html
        return comparison_html(self)


COLUMNS = ("section", "model_a", "model_b", "stimuli", "measure", "layer_a", "layer_b",
           "depth_a", "depth_b", "concept", "model", "value", "ci_low", "ci_high", "null_mean",
           "null_low", "null_high", "p_value", "null", "divergence", "n")


def _write_text(path: str | os.PathLike, text: str) -> Path:
    from .io import atomic_path
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def _diagrams(X: np.ndarray, max_points: int, seed: int) -> list[np.ndarray]:
    from .topology.persistence import ripser_distance_matrix, scaled_distances, subsample
    idx = subsample(X, min(max_points, X.shape[0]), method="landmark", seed=seed)
    return ripser_distance_matrix(scaled_distances(X[idx], quantile=PH_QUANTILE), 1)


def compare(a: Any, b: Any, stimuli: Any = "concepts", *, layers: Any = "all",
            depth: float = 1.0, measures: Sequence[str] = DEFAULT_MEASURES,
            measure_kwargs: Mapping[str, Mapping] | None = None, k: int | None = None,
            layer_measure: str = LAYER_MEASURE, n: int = N_STIMULI, n_boot: int = 50,
            n_null: int = 99, ci: float = 0.95, seed: int = 0, local: bool = True,
            min_items: int = 8, pool: str = "mean", ph_points: int = PH_POINTS,
            progress: bool | None = None, figures: bool = True) -> Comparison:
    """Compare models ``a`` and ``b`` on ``stimuli`` (see :func:`load_stimuli`).

    ``a``/``b``: zoo names, Hugging Face ids, ``save_pretrained`` folders, ZooModels, or
    :class:`~resonance.activations.Activations` already extracted on these stimuli.
    ``layers``: which hidden states to extract ("all", depths in [0, 1], or ``(ids_a, ids_b)``);
    ``depth``: the layer of each model that global/local resonance and the diagrams use.
    ``measures`` / ``measure_kwargs`` / ``k`` (neighbours of k-NN measures): as in
    :func:`resonance.metrics.global_resonance`; ``layer_measure`` fills the layer x layer matrix.
    ``progress``: a bar on stderr (default: only when stderr is a terminal).
    """
    from . import metrics
    offline_by_default()
    started, cpu = time.perf_counter(), time.process_time()
    measures = _registry.names(measures)
    _registry.get(layer_measure)
    options = _options(measures, measure_kwargs, k)
    if not isinstance(depth, (int, float)) or not 0 <= depth <= 1:
        raise ValueError(f"depth must lie in [0, 1] (1 = the last layer), got {depth!r}")
    if not isinstance(n_null, (int, np.integer)) or n_null < 0:
        raise ValueError(f"n_null must be a non-negative integer, got {n_null!r}")
    enabled = _progress_enabled(progress)
    steps = _Steps(["load", "extract A", "extract B", "global", "layers", "local", "topology",
                    "figures"], enabled)
    try:
        steps("loading stimuli and models")
        stim = load_stimuli(stimuli, n=n, seed=seed)
        _check_count(len(stim), measures, options, f"stimuli {stim.name!r}")
        model_a, model_b = _model(a), _model(b)
        ids_a, ids_b = _layer_ids(model_a, layers, 0), _layer_ids(model_b, layers, 1)
        steps(f"extracting {_name(model_a)}")
        acts_a = _extract(model_a, stim, ids_a, pool, enabled)
        steps(f"extracting {_name(model_b)}")
        acts_b = _extract(model_b, stim, ids_b, pool, enabled)
        layer_a, X = _at_depth(acts_a, depth, _hidden_count(model_a, acts_a))
        layer_b, Y = _at_depth(acts_b, depth, _hidden_count(model_b, acts_b))
        steps("global resonance")
        global_table = metrics.global_resonance(X, Y, measures, n_boot=n_boot, n_null=n_null,
                                                ci=ci, seed=seed, measure_kwargs=options)
        global_table.insert(1, "layer_a", layer_a)
        global_table.insert(2, "layer_b", layer_b)
        steps("layer x layer matrix")
        layer_table = metrics.similarity_matrix(acts_a, acts_b, layer_measure,
                                                **options.get(layer_measure, {}))
        layer_map = metrics.best_layer_map(layer_table)
        layer_map["layer_a"] = [acts_a.layer_ids[i] for i in layer_map["layer_a"]]
        layer_map["layer_b"] = [acts_b.layer_ids[i] for i in layer_map["layer_b"]]
        steps("local resonance")
        local_table, local_note = None, ""
        labels = [str(x) for x in (stim.labels or [])]
        if not local:
            local_note = "local resonance was switched off"
        elif not any(labels):
            local_note = ("the stimuli carry no labels, so there is no local resonance; label "
                          "them (a file of 'label<TAB>text' lines, or --stimuli concepts)")
        else:
            counts = pd.Series(labels).value_counts()
            small = counts[counts < min_items]
            if len(small):
                local_note = (f"{len(small)} label(s) with fewer than {min_items} stimuli "
                              f"({', '.join(map(str, small.index[:5]))}) left out")
            keep = np.isin(labels, counts[counts >= min_items].index)
            if keep.sum() and (counts >= min_items).sum():
                local_measures = [layer_measure]
                local_table = metrics.local_resonance(
                    X[keep], Y[keep], np.asarray(labels)[keep], local_measures,
                    min_items=min_items, n_boot=n_boot, n_null=n_null, ci=ci, seed=seed,
                    measure_kwargs={m: options[m] for m in local_measures if m in options})
        steps("persistence diagrams")
        rows, dgm_rows = [], []
        for side, cloud, layer in (("a", X, layer_a), ("b", Y, layer_b)):
            for dim, dgm in enumerate(_diagrams(cloud, ph_points, seed)):
                rows.append(pd.DataFrame({"model": side, "dim": dim, "birth": dgm[:, 0],
                                          "death": dgm[:, 1]}))
                dgm_rows.append({"model": side, "layer": layer, "dim": dim, "bars": len(dgm),
                                 "total_persistence": float((dgm[:, 1] - dgm[:, 0]).sum())})
        diagrams = pd.concat(rows, ignore_index=True)
        diagram_table = pd.DataFrame(dgm_rows)
        info = {
            "model_a": _name(model_a), "model_b": _name(model_b),
            "describe_a": _describe(model_a), "describe_b": _describe(model_b),
            "stimuli": stim.name, "n_stimuli": len(stim), "stimuli_key": stim.key,
            "labelled": bool(any(labels)), "layer_a": layer_a, "layer_b": layer_b,
            "layers_a": list(acts_a.layer_ids), "layers_b": list(acts_b.layer_ids),
            "depth": float(depth), "measures": list(measures), "measure_options": options,
            "layer_measure": layer_measure, "n_boot": int(n_boot), "n_null": int(n_null),
            "ci": float(ci), "seed": int(seed), "pool": pool, "ph_points": int(ph_points),
            "ph_quantile": PH_QUANTILE, "local_note": local_note,
        }
        result = Comparison(_name(model_a), _name(model_b), info, global_table, layer_table,
                            layer_map, local_table, diagrams, diagram_table)
        if figures:
            steps("figures")
            from .report import comparison_figures
            result.figures = comparison_figures(result)
        steps.close()
        info["steps"] = steps.timings
        info["seconds"] = round(time.perf_counter() - started, 2)
        info["cpu_seconds"] = round(time.process_time() - cpu, 2)
        return result
    finally:
        steps.close()


def _describe(model: Any) -> dict:
    if hasattr(model, "hidden_sizes"):  # a zoo.ZooModel
        return {"name": model.name, "architecture": model.architecture, "source": model.source,
                "params": model.n_params, "layers": model.n_layers,
                "width": max(model.hidden_sizes, default=0)}
    return {"name": _name(model), "architecture": "activations", "source": "given",
            "params": None, "layers": len(model.layers) - 1,
            "width": max(a.shape[1] for a in model.layers)}


# --------------------------------------------------------------------------------------------
# rank


@dataclass
class Ranking(_Report):
    """:func:`rank`'s answer. ``table``: one row per candidate, best first (value, interval,
    null, p-value against the null, rank); ``pairs``: every pair of candidates, the better-ranked
    one first (``advantage`` >= 0 in the measure's "more alike" direction, its interval, a
    two-sided paired p-value and its Holm adjustment); ``figures``; ``info``."""

    reference: str
    measure: str
    table: pd.DataFrame
    pairs: pd.DataFrame
    info: dict
    figures: dict = field(default_factory=dict, repr=False)

    @property
    def best(self) -> str:
        return str(self.table["candidate"].iloc[0])

    def tidy(self) -> pd.DataFrame:
        """Candidates and pairs in one long table (the CSV), with a ``section`` column."""
        return pd.concat([self.table.assign(section="candidates"),
                          self.pairs.assign(section="pairs")], ignore_index=True)

    def _html(self) -> str:
        from .report import ranking_html
        return ranking_html(self)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (monotone, capped at 1)."""
    p = np.asarray(p_values, float)
    order = np.argsort(p, kind="stable")
    m = len(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank_, i in enumerate(order):
        running = max(running, min(1.0, (m - rank_) * p[i]))
        adjusted[i] = running
    return adjusted


def paired_differences(values: Mapping[str, float], replicates: Mapping[str, Sequence[float]],
                       n: int, drop: int, direction: str = "similarity",
                       ci: float = 0.95) -> pd.DataFrame:
    """Paired test of every pair of candidates from delete-``drop`` jackknife replicates that
    share their subsets (replicate ``b`` of every candidate left out the same stimuli).

    For candidates i, j: ``advantage = s (v_i - v_j)`` with ``s = +1`` for a similarity and
    ``-1`` for a distance (so > 0 means i resonates more), its standard error from the
    replicates of the difference, ``se² = (n - d) / (d B) Σ (δ_b - δ̄)²``, a normal interval
    and a two-sided p-value (1 when the difference is exactly 0 in every replicate, as for two
    identical candidates). Rows put the better candidate first.
    """
    from scipy import stats as _stats
    sign = 1.0 if direction == "similarity" else -1.0
    names = list(values)
    z = float(_stats.norm.ppf((1 + ci) / 2))
    rows = []
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            diff = sign * (values[first] - values[second])
            reps = sign * (np.asarray(replicates[first]) - np.asarray(replicates[second]))
            if diff < 0:
                first_, second_, diff, reps = second, first, -diff, -reps
            else:
                first_, second_ = first, second
            B = reps.size
            se = math.sqrt((n - drop) / (drop * B) * float(((reps - reps.mean()) ** 2).sum())) \
                if B >= 2 else float("nan")
            if se > 0:
                p = float(2 * _stats.norm.sf(abs(diff) / se))
            elif se == 0:
                p = 1.0 if diff == 0 else 0.0
            else:
                p = float("nan")
            rows.append({"better": first_, "worse": second_, "advantage": float(diff),
                         "ci_low": float(diff - z * se), "ci_high": float(diff + z * se),
                         "se": se, "p_value": p})
    out = pd.DataFrame(rows, columns=["better", "worse", "advantage", "ci_low", "ci_high", "se",
                                      "p_value"])
    out["p_holm"] = holm(out["p_value"].to_numpy()) if len(out) else []
    return out


def rank(reference: Any, candidates: Sequence[Any], stimuli: Any = "concepts", *,
         measure: str = "cka_linear_debiased", depth: float = 1.0,
         measure_kwargs: Mapping | None = None, k: int | None = None, n: int = N_STIMULI,
         n_boot: int = 200, n_null: int = 99, ci: float = 0.95, seed: int = 0,
         pool: str = "mean", progress: bool | None = None, figures: bool = True) -> Ranking:
    """Which of ``candidates`` resonates most with ``reference`` on ``stimuli``?

    Each candidate's ``measure`` with the reference at relative ``depth`` (1.0 = last layers),
    with an interval and a null (:func:`resonance.metrics.global_resonance`), and a paired test
    of every pair's difference (:func:`paired_differences`) over ``n_boot`` delete-d jackknife
    subsets of the stimuli shared by all candidates. Models as in :func:`compare`; candidate
    names must be distinct.
    """
    from . import metrics
    from .stats import delete_d_jackknife_interval
    offline_by_default()
    started, cpu = time.perf_counter(), time.process_time()
    spec = _registry.get(measure)
    options = _options([measure], measure_kwargs, k).get(measure, {})
    candidates = list(candidates) if not isinstance(candidates, (str, os.PathLike)) \
        else [candidates]
    if len(candidates) < 2:
        raise ValueError(f"rank needs at least two candidates to compare, got {len(candidates)}")
    if not isinstance(n_boot, (int, np.integer)) or n_boot < 2:
        raise ValueError(f"n_boot must be an integer >= 2 for the paired test, got {n_boot!r}")
    if not 0 <= depth <= 1:
        raise ValueError(f"depth must lie in [0, 1] (1 = the last layer), got {depth!r}")
    enabled = _progress_enabled(progress)
    steps = _Steps(["load", "reference", *map(str, candidates), "pairs"], enabled)
    try:
        steps("loading stimuli")
        stim = load_stimuli(stimuli, n=n, seed=seed)
        _check_count(len(stim), [measure], {measure: options}, f"stimuli {stim.name!r}")
        ref = _model(reference)
        steps(f"extracting {_name(ref)}")
        ref_acts = _extract(ref, stim, _ids_at([depth], _n_hidden(ref)), pool, enabled)
        ref_layer, X = _at_depth(ref_acts, depth, _hidden_count(ref, ref_acts))
        n_items = X.shape[0]
        drop = max(1, n_items // 10)
        subsets = [np.sort(np.random.default_rng([seed, 7, b]).permutation(n_items)[drop:])
                   for b in range(int(n_boot))]
        rows, values, replicates, names = [], {}, {}, []
        for offset, candidate in enumerate(candidates):
            model = _model(candidate)
            name = _name(model)
            if name in values:
                raise ValueError(f"candidate {name!r} is given twice; candidates must differ")
            names.append(name)
            steps(f"extracting {name}")
            acts = _extract(model, stim, _ids_at([depth], _n_hidden(model)), pool, enabled)
            layer, Y = _at_depth(acts, depth, _hidden_count(model, acts))
            row = metrics.global_resonance(X, Y, [measure], n_boot=0, n_null=n_null, ci=ci,
                                           seed=seed, measure_kwargs={measure: options}
                                           if options else None).iloc[0].to_dict()
            value = row["value"]
            reps = [spec.compute(X[s], Y[s], **options) for s in subsets]
            low, high = delete_d_jackknife_interval(value, reps, n_items, drop, ci,
                                                    spec.bounds(options))
            values[name], replicates[name] = value, reps
            rows.append({"candidate": name, "layer": layer, "value": value, "ci_low": low,
                         "ci_high": high, "null_mean": row["null_mean"],
                         "null_low": row["null_low"], "null_high": row["null_high"],
                         "p_value": row["p_value"], "params": _describe(model)["params"],
                         "n": n_items})
        steps("paired differences")
        table = pd.DataFrame(rows)
        higher = spec.direction == "similarity"
        table = table.sort_values("value", ascending=not higher, kind="stable")
        table.insert(0, "rank", np.arange(1, len(table) + 1))
        table = table.reset_index(drop=True)
        pairs = paired_differences(values, replicates, n_items, drop, spec.direction, ci)
        info = {"reference": _name(ref), "reference_layer": ref_layer, "measure": measure,
                "direction": spec.direction, "null": spec.null, "options": options,
                "stimuli": stim.name, "n_stimuli": len(stim), "depth": float(depth),
                "n_boot": int(n_boot), "drop": drop, "n_null": int(n_null), "ci": float(ci),
                "seed": int(seed), "pool": pool}
        result = Ranking(_name(ref), measure, table, pairs, info)
        if figures:
            from .report import ranking_figures
            result.figures = ranking_figures(result)
        info["seconds"] = round(time.perf_counter() - started, 2)
        info["cpu_seconds"] = round(time.process_time() - cpu, 2)
        return result
    finally:
        steps.close()


__all__ = ["compare", "rank", "Comparison", "Ranking", "load_stimuli", "read_stimuli_file",
           "paired_differences", "holm", "min_stimuli", "DEFAULT_MEASURES", "COLUMNS"]
