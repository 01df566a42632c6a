"""Sweeps: an experiment's grid as config cells, run in-process or on a Dask cluster.

A :class:`Cell` is one unit of work (a training run, a measure grid over two runs, a whole
experiment's ``compute``) described by JSON literals. Its ``config_hash`` is the Dask task key
(two equal cells collapse into one task) and names its folder, so a sweep run again computes
only the cells whose folder is missing, and an interrupted sweep resumes where it stopped::

    cells = sweep.experiment_cells("scale", "smoke", seeds=range(10))
    summary = sweep.run_sweep(cells, workers=2)          # a LocalCluster of two processes
    summary = sweep.run_sweep(cells, scheduler="tcp://host:8786")   # an existing cluster
    summary = sweep.run_sweep(cells)                      # in-process (no Dask needed)
    print(summary.report())

Where results go. Workers return small results (tables and scalars); the client writes them
atomically with :func:`resonance.store.write`: a training or grid cell to
``CACHE/sweep/<kind>/<hash>/``, an experiment cell to the results store
(``RESULTS/<name>/<profile>/``, exactly what ``run(profile, ...)`` would have stored, so the
notebook then loads it). Checkpoints and activations are written by the workers themselves to
``RESONANCE_CACHE``, which every worker must see at the same path (a shared file system): a
later cell (the experiment's ``compute``) finds the training runs there instead of training
them again. Training runs are locked per run (``train.run_lock``), so two workers never
train one run at once.

Repeatability. Every cell runs with one torch thread; each result records the worker's thread
count, package versions, numerics and code commit in its provenance, and the client refuses
workers whose versions differ from its own (:class:`EnvironmentMismatchError`). A cell that
raises is reported with its traceback and does not stop the others (cells that need it are
skipped). ``distributed`` is an optional dependency (the ``sweep`` extra); the in-process
default needs nothing beyond the package.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import platform
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from . import paths, store
from .io import config_hash, read_json

__all__ = ["Cell", "train_cell", "grid_cell", "experiment_cells", "scale_training_cells",
           "run_sweep", "Summary", "parse_seeds", "worker_environment", "check_environments",
           "EnvironmentMismatchError", "SCHEDULER_VARIABLE", "INSTALL_HINT"]

SCHEDULER_VARIABLE = "RESONANCE_SCHEDULER"
INSTALL_HINT = "pip install -e '.[sweep]' (the `sweep` extra: dask[distributed])"
# What must agree between the client and every worker for results to be bitwise the same.
MATCHED = ("python", "packages", "numpy_blas", "torch_blas", "code")


class EnvironmentMismatchError(RuntimeError):
    """A worker runs other versions (or another thread count) than the client."""


# -- cells ---------------------------------------------------------------------------------------

@dataclass(eq=False)
class Cell:
    """One task: ``kind`` (``train``, ``grid`` or ``experiment``), its ``config`` (JSON
    literals; hashed), the keys of the cells it ``needs`` and, for an experiment cell, the
    ``target`` (store name, profile and the ``compute`` function)."""

    kind: str
    config: dict
    label: str = ""
    needs: tuple[str, ...] = ()
    target: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown cell kind {self.kind!r}; known: {sorted(KINDS)}")
        self.hash = config_hash(self.config)  # also checks the config is JSON literals

    @property
    def key(self) -> str:
        """The task key: kind (and store name/profile) plus the config hash."""
        if self.kind == "experiment":
            return f"experiment-{self.target['name']}-{self.target['profile']}-{self.hash}"
        return f"{self.kind}-{self.hash}"

    @property
    def folder(self) -> Path:
        if self.kind == "experiment":
            return store.result_dir(self.target["name"], self.target["profile"])
        return paths.CACHE / "sweep" / self.kind / self.hash

    def done(self) -> bool:
        """True when the cell's folder holds a result of this very config."""
        prov = self.folder / "provenance.json"
        if not prov.is_file():
            return False
        try:
            return read_json(prov).get("config_hash") == self.hash
        except ValueError:  # a damaged provenance: recompute the cell
            return False


def train_cell(family: str, d_model: int, n_layers: int, seed: int,
               recipe: Mapping[str, Any]) -> Cell:
    """The training run ``TrainConfig(family, d_model, n_layers, seed, **recipe)`` (what
    ``experiments.common.inhouse_model`` trains), cached in ``CACHE/runs``."""
    config = {"family": family, "d_model": int(d_model), "n_layers": int(n_layers),
              "seed": int(seed), "recipe": dict(recipe)}
    _train_config(config)  # bad fields fail here, on the client, not on a worker
    return Cell("train", config, label=f"train {family} d={d_model} L={n_layers} s={seed}")


def grid_cell(a: Cell, b: Cell, measure: str = "cka_linear_debiased", n_windows: int = 8,
              seed: int = 0) -> Cell:
    """The layer x layer ``measure`` grid between two trained runs, read on ``n_windows``
    random token windows (one context each, drawn with ``seed``)."""
    if a.kind != "train" or b.kind != "train":
        raise ValueError("a grid cell compares two train cells")
    config = {"a": a.config, "b": b.config, "measure": measure, "n_windows": int(n_windows),
              "seed": int(seed)}
    return Cell("grid", config, label=f"grid {a.label[6:]} vs {b.label[6:]}",
                needs=(a.key, b.key))


def _train_config(config: Mapping[str, Any]):
    from .train import TrainConfig

    try:
        return TrainConfig(family=config["family"], d_model=config["d_model"],
                           n_layers=config["n_layers"], seed=config["seed"], **config["recipe"])
    except TypeError as err:
        raise ValueError(f"bad training recipe {config['recipe']}: {err}") from None


def _run_train(config: dict) -> tuple[dict, dict]:
    from . import train

    run = train.train(_train_config(config), progress=False, threads=1)
    history = run.history.dropna(subset=["val_loss"])
    return ({"history": run.history},
            {"run": run.config.name, "params": int(run.info["params"]),
             "n_steps": run.config.n_steps, "final_val_loss": float(history.val_loss.iloc[-1])})


def _hidden_layers(config: dict, ids) -> list:
    import torch

    from . import train

    run = train.train(_train_config(config), progress=False, threads=1)
    with torch.no_grad():
        states = run.model(input_ids=ids, output_hidden_states=True).hidden_states
    return [s.reshape(-1, s.shape[-1]).double().numpy() for s in states]


def _run_grid(config: dict) -> tuple[dict, dict]:
    import numpy as np
    import torch

    from . import metrics

    a = _train_config(config["a"])
    if (a.vocab_size, a.context) != (_train_config(config["b"]).vocab_size,
                                     _train_config(config["b"]).context):
        raise ValueError("a grid cell needs two runs with the same vocabulary and context")
    rng = np.random.default_rng([config["seed"], 0x6712])
    ids = torch.from_numpy(rng.integers(0, a.vocab_size, (config["n_windows"], a.context)))
    table = metrics.similarity_matrix(_hidden_layers(config["a"], ids),
                                      _hidden_layers(config["b"], ids), config["measure"])
    best = table.loc[table["value"].idxmax()]
    return {"grid": table}, {"best_value": float(best["value"]),
                             "best_layer_a": int(best["layer_a"]),
                             "best_layer_b": int(best["layer_b"])}


def _run_experiment(config: dict, target: Mapping[str, Any]) -> tuple[dict, dict]:
    return target["compute"](dict(config))


KINDS: dict[str, Callable] = {"train": _run_train, "grid": _run_grid,
                              "experiment": _run_experiment}


# -- experiments as cells ------------------------------------------------------------------------

def _experiment_module(experiment: str):
    """``scale``, ``01_scale`` or ``resonance.experiments.scale`` -> the module."""
    from . import experiments

    name = experiment.rsplit(".", 1)[-1]
    found = [m for m in _experiment_names() if name in (m, getattr(_import(m), "NAME", None))]
    if not found:
        raise ValueError(f"unknown experiment {experiment!r}; known: "
                         f"{', '.join(_experiment_names())} (modules of {experiments.__name__})")
    return _import(found[0])


def _experiment_names() -> list[str]:
    from . import experiments

    folder = Path(experiments.__file__).parent
    return sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_")
                  and p.stem != "common")


def _import(module: str):
    return importlib.import_module(f"resonance.experiments.{module}")


def plan_experiment(experiment: str, profile: str, **overrides: Any) -> store.Planned:
    """What ``run(profile, **overrides)`` of the experiment would store: its name, profile,
    config and compute function (nothing is computed)."""
    module = _experiment_module(experiment)
    try:
        with store.planning():
            module.run(profile, **overrides)
    except store.Planned as plan:
        return plan
    raise RuntimeError(f"{module.__name__}.run did not go through resonance.store.cached, so "
                       "it cannot be swept")


def scale_training_cells(config: Mapping[str, Any]) -> list[Cell]:
    """01_scale's training runs: every ``[d_model, n_layers]`` of the ladder x every seed, with
    the config's recipe (the GPT-2 family)."""
    return [train_cell("gpt2", d, L, seed, config["recipe"])
            for d, L in config["ladder"] for seed in config["seeds"]]


# Experiment store name -> the cells to run before its compute (the rest runs in compute).
CELL_LISTERS: dict[str, Callable[[Mapping[str, Any]], list[Cell]]] = {
    "01_scale": scale_training_cells}


def experiment_cells(experiment: str, profile: str = "smoke", *, replace: bool = False,
                     **overrides: Any) -> list[Cell]:
    """The experiment as cells: its listed sub-cells (01: a training run per rung and seed),
    then one cell for its ``compute`` that needs them all. ``seeds=``, ``ladder=`` ... override
    the profile's sizes as in ``run``. A paper/hub result already stored with another config is
    not replaced unless ``replace=True``."""
    plan = plan_experiment(experiment, profile, **overrides)
    subcells = CELL_LISTERS.get(plan.name, lambda _: [])(plan.config)
    cell = Cell("experiment", plan.config, label=f"{plan.name} {plan.profile}",
                needs=tuple(dict.fromkeys(c.key for c in subcells)),
                target={"name": plan.name, "profile": plan.profile, "compute": plan.compute})
    prov = cell.folder / "provenance.json"
    if prov.is_file() and profile != "smoke" and not replace and not cell.done():
        stored = read_json(prov).get("config_hash")
        raise ValueError(
            f"{cell.folder} holds config hash {stored}, but this sweep's config hashes to "
            f"{cell.hash}; pass --replace to overwrite it, or point RESONANCE_RESULTS at another "
            "folder to keep the stored result")
    return [*subcells, cell]


def parse_seeds(text: str) -> list[int]:
    """``"0-9"`` -> 0..9, ``"0,2,5-7"`` -> [0, 2, 5, 6, 7]."""
    seeds: list[int] = []
    try:
        for part in str(text).split(","):
            lo, _, hi = part.strip().partition("-")
            seeds += range(int(lo), int(hi or lo) + 1)
    except ValueError:
        raise ValueError(f"--seeds takes integers and ranges such as 0-9 or 0,2,5-7, got "
                         f"{text!r}") from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds must name distinct non-negative seeds, got {text!r}")
    return seeds


# -- the task and the environment it runs in ---------------------------------------------------

def worker_environment() -> dict:
    """This process's versions and numerics, as recorded in a cell's provenance; sets torch
    to one thread first (what every cell runs with)."""
    import torch

    from .seeding import numeric_environment

    torch.set_num_threads(1)
    numerics = numeric_environment(torch_too=True)
    return {"python": platform.python_version(), "packages": _versions(),
            "numpy_blas": numerics["numpy_blas"], "torch_blas": numerics["torch_blas"],
            "code": store._git_commit(), "numerics": numerics, "host": platform.node(),
            "pid": os.getpid()}


def _versions() -> dict:
    return store.package_versions((*store.TRACKED_PACKAGES, "dask", "distributed"))


def check_environments(workers: Mapping[str, Mapping], reference: Mapping) -> None:
    """Raise :class:`EnvironmentMismatchError` naming every worker whose versions differ from
    ``reference`` (the client's) or whose torch runs on more than one thread."""
    problems = []
    for worker, env in workers.items():
        for key in MATCHED:
            if env.get(key) != reference.get(key):
                have, want = env.get(key), reference.get(key)
                if isinstance(want, Mapping) and isinstance(have, Mapping):
                    have = {k: v for k, v in have.items() if want.get(k) != v}
                    want = {k: reference[key].get(k) for k in have}
                problems.append(f"{worker}: {key} {have} (client: {want})")
        threads = env.get("numerics", {}).get("torch_threads")
        if threads != 1:
            problems.append(f"{worker}: torch runs {threads} threads (a sweep needs 1)")
    if problems:
        raise EnvironmentMismatchError(
            "workers differ from the client, so their results would not be bitwise the same: "
            + "; ".join(problems) + ". Install the same versions (and the same commit of this "
            "repository) on every machine, e.g. from one environment.yml")


def run_cell(cell: Cell, *needed: Mapping) -> dict:
    """Run one cell here (a worker, or the client in-process) with one torch thread.

    Returns ``{"key", "tables", "meta", "env", "wall_s"}``, or ``{"key", "error"}`` with the
    traceback (also when a needed cell failed: then nothing runs)."""
    import torch

    failed = [n["key"] for n in needed if "error" in n]
    if failed:
        return {"key": cell.key, "error": f"skipped: it needs {', '.join(failed)}, which failed",
                "skipped": True}
    threads = torch.get_num_threads()
    try:
        env = worker_environment()
        start = time.perf_counter()
        fn = KINDS[cell.kind]
        tables, meta = fn(cell.config, cell.target) if cell.kind == "experiment" else fn(cell.config)
        return {"key": cell.key, "tables": dict(tables), "meta": dict(meta), "env": env,
                "wall_s": time.perf_counter() - start}
    except Exception:  # reported by the client; the other cells go on
        return {"key": cell.key, "error": traceback.format_exc()}
    finally:
        torch.set_num_threads(threads)


def _write(cell: Cell, result: Mapping) -> None:
    """The client's half: the cell's tables and meta into its folder, atomically."""
    env = result["env"]
    name, profile = ((cell.target["name"], cell.target["profile"]) if cell.kind == "experiment"
                     else (cell.kind, "sweep"))
    prov = store._provenance(name, profile, cell.config, cell.hash, result["wall_s"])
    prov.update(packages=env["packages"], numerics=env["numerics"],
                sweep={"kind": cell.kind, "key": cell.key, "label": cell.label,
                       "host": env["host"], "pid": env["pid"], "code": env["code"]})
    store.write(cell.folder, result["tables"], result["meta"], prov)


# -- running a sweep -----------------------------------------------------------------------------

@dataclass
class Summary:
    """What a sweep did: keys computed, found cached, failed (key -> traceback or reason), and
    not needed (cells that only already-stored cells need)."""

    computed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    unneeded: list[str] = field(default_factory=list)  # only cached cells need them
    labels: dict[str, str] = field(default_factory=dict)
    workers: dict[str, dict] = field(default_factory=dict)
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def report(self) -> str:
        where = (f"{len(self.workers)} worker(s)" if self.workers else "in-process"
                 if self.computed or self.failed else "nothing to run")
        lines = [f"{len(self.computed)} computed, {len(self.cached)} cached, "
                 f"{len(self.failed)} failed"
                 + (f", {len(self.unneeded)} not needed" if self.unneeded else "")
                 + f" ({where}, {self.wall_s:.1f} s)"]
        for key, why in self.failed.items():
            lines += [f"FAILED {self.labels.get(key, key)} [{key}]:",
                      *("    " + line for line in why.rstrip().splitlines())]
        cpus = {e["numerics"].get("torch_cpu_capability") for e in self.workers.values()}
        if len(cpus) > 1:
            lines.append(f"note: workers have different CPU kernel levels {sorted(cpus)}; "
                         "results may differ in the last bits between them")
        return "\n".join(lines)


def _distributed():
    try:
        import distributed
    except ImportError:
        raise ImportError(f"a sweep on a cluster needs Dask's `distributed`: {INSTALL_HINT}; "
                          "without it, sweeps run in-process (no --workers / --scheduler)") from None
    return distributed


@contextlib.contextmanager
def connect(scheduler: str | None = None, workers: int | None = None) -> Iterator[Any]:
    """A Dask client: to ``scheduler`` (or ``$RESONANCE_SCHEDULER``), or to a fresh loopback
    ``LocalCluster`` of ``workers`` single-threaded processes; ``None`` (in-process) when
    neither is given."""
    scheduler = scheduler or os.environ.get(SCHEDULER_VARIABLE) or None
    if scheduler and workers:
        raise ValueError("give either a scheduler address or a number of local workers, not both")
    if not scheduler and not workers:
        yield None
        return
    distributed = _distributed()
    if scheduler:
        with distributed.Client(scheduler, set_as_default=False) as client:
            yield client
        return
    if int(workers) < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    with distributed.LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=":0",
                                  silence_logs=40) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        yield client


def _order(cells: Iterable[Cell]) -> list[Cell]:
    """Duplicates collapsed (same key), needs before the cells that need them."""
    unique = {c.key: c for c in cells}
    missing = {n for c in unique.values() for n in c.needs} - set(unique)
    if missing:
        raise ValueError(f"cells need {sorted(missing)}, which are not in the sweep")
    ordered, seen = [], set()

    def visit(cell: Cell, trail: tuple = ()) -> None:
        if cell.key in seen:
            return
        if cell.key in trail:
            raise ValueError(f"cells need each other in a cycle: {' -> '.join(trail)}")
        for need in cell.needs:
            visit(unique[need], (*trail, cell.key))
        seen.add(cell.key)
        ordered.append(cell)
    for cell in unique.values():
        visit(cell)
    return ordered


def run_sweep(cells: Sequence[Cell], *, scheduler: str | None = None,
              workers: int | None = None, client: Any = None, progress: bool = True,
              on_result: Callable[[Cell, dict], None] | None = None) -> Summary:
    """Run every cell whose folder is missing; write each result as it arrives.

    In-process by default; ``workers=N`` starts a loopback ``LocalCluster``; ``scheduler`` (or
    ``$RESONANCE_SCHEDULER``) connects to a running one; ``client`` reuses a Dask client.
    ``on_result(cell, result)`` runs after each computed cell is written."""
    from tqdm.auto import tqdm

    start = time.perf_counter()
    ordered = _order(cells)
    summary = Summary(labels={c.key: c.label for c in ordered})
    todo = _required(ordered, summary)
    reference: dict = {}
    bar = tqdm(total=len(ordered), initial=len(ordered) - len(todo), unit="cell", desc="sweep",
               disable=not progress or os.environ.get("TQDM_DISABLE", "") not in ("", "0"),
               dynamic_ncols=True)

    def finish(cell: Cell, result: Mapping) -> None:
        if "error" in result:
            summary.failed[cell.key] = result["error"]
        else:
            try:
                if reference:  # a worker that joined after the first check
                    env = result["env"]
                    check_environments({f"{env['host']} pid {env['pid']}": env}, reference)
                _write(cell, result)
            except Exception:
                summary.failed[cell.key] = traceback.format_exc()
                result = {**result, "error": summary.failed[cell.key]}
            else:
                summary.computed.append(cell.key)
        bar.update(1)
        if on_result is not None and "error" not in result:
            on_result(cell, dict(result))

    try:
        with (contextlib.nullcontext(client) if client is not None or not todo
              else connect(scheduler, workers)) as dask_client:
            if not todo:
                pass  # everything is stored: no cluster to start
            elif dask_client is None:
                _in_process(todo, finish)
            else:
                reference.update(worker_environment_of_client())
                answers = dask_client.run(worker_environment, on_error="return")
                # a worker that cannot answer (dying, leaving) is skipped here; whatever it
                # returns later is checked against the client as it arrives
                summary.workers = {w: e for w, e in answers.items() if isinstance(e, dict)}
                check_environments(summary.workers, reference)
                _on_dask(dask_client, todo, finish)
    finally:
        bar.close()
        summary.wall_s = time.perf_counter() - start
    return summary


def _required(ordered: list[Cell], summary: Summary) -> list[Cell]:
    """The cells to compute: not done, and needed by nothing or by a cell to compute (a
    training run that only a stored experiment result needs is not retrained)."""
    needed_by: dict[str, list[str]] = {}
    for cell in ordered:
        for need in cell.needs:
            needed_by.setdefault(need, []).append(cell.key)
    required: set[str] = set()
    for cell in reversed(ordered):  # dependents first
        if cell.done():
            summary.cached.append(cell.key)
        elif not needed_by.get(cell.key) or required.intersection(needed_by[cell.key]):
            required.add(cell.key)
        else:
            summary.unneeded.append(cell.key)
    summary.cached.reverse()
    summary.unneeded.reverse()
    return [c for c in ordered if c.key in required]


def worker_environment_of_client() -> dict:
    """The client's environment (what workers are held to), without changing its threads."""
    import torch

    threads = torch.get_num_threads()
    try:
        return worker_environment()
    finally:
        torch.set_num_threads(threads)


def _in_process(todo: list[Cell], finish: Callable) -> None:
    results: dict[str, dict] = {}
    for cell in todo:
        needed = [results[n] for n in cell.needs if n in results]
        result = run_cell(cell, *needed)
        results[cell.key] = {"key": cell.key, **({"error": result["error"]}
                                                 if "error" in result else {})}
        finish(cell, result)


def _on_dask(client, todo: list[Cell], finish: Callable) -> None:
    distributed = _distributed()
    futures: dict[str, Any] = {}
    for cell in todo:  # in order: a cell's needs are submitted before it
        deps = [futures[n] for n in cell.needs if n in futures]
        futures[cell.key] = client.submit(run_cell, cell, *deps, key=cell.key, pure=False)
    cells = {c.key: c for c in todo}
    try:
        for future in distributed.as_completed(list(futures.values()), loop=client.loop):
            cell = cells[future.key]
            try:
                result = future.result()
            except Exception as err:  # the worker died (KilledWorker) or the task was lost
                result = {"key": cell.key, "error": "".join(
                    traceback.format_exception(type(err), err, err.__traceback__))}
            finish(cell, result)
    finally:
        unfinished = [f for f in futures.values() if not f.done()]
        if unfinished:
            client.cancel(unfinished)
