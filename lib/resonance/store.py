"""Results store: a computation keyed by a hash of its config, written atomically.

A result lives in ``RESULTS/<name>/<profile>/``::

    provenance.json   config, config hash, git commit, package versions, machine, wall time
    meta.json         scalars (headline numbers, verdicts) -- what the paper cites; an
                      undefined number (NaN, e.g. a CI from one seed) is stored as null
    <table>.csv       tidy tables

``cached(name, profile, config, compute)`` returns the stored bundle when the config hash
matches, and otherwise runs ``compute(config) -> (tables, meta)`` and stores it. At the
``paper`` profile a missing or stale result is an error unless ``force=True``. The environment
variable ``RESONANCE_FORCE=1`` forces every computation (``make reproduce`` sets it): committed
notebooks must re-run from committed results, never by a silent multi-hour recomputation.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import pandas as pd

from . import paths
from .profiles import check_profile

Tables = Mapping[str, pd.DataFrame]
Compute = Callable[[dict], "tuple[Tables, dict]"]

TRACKED_PACKAGES = (
    "numpy", "scipy", "pandas", "scikit-learn", "torch", "transformers", "tokenizers",
    "ripser", "persim", "kmapper", "resonance",
)


class StaleResultError(RuntimeError):
    """A committed result does not match the requested config and recomputing was not asked."""


class CorruptResultError(ValueError):
    """A results folder exists but cannot be read."""


@dataclass
class Bundle:
    """One stored result: tables, scalars and the provenance that made them."""

    name: str
    profile: str
    path: Path
    tables: dict[str, pd.DataFrame]
    meta: dict[str, Any]
    provenance: dict[str, Any] = field(repr=False)

    def __getitem__(self, table: str) -> pd.DataFrame:
        try:
            return self.tables[table]
        except KeyError:
            raise KeyError(f"result {self.name}/{self.profile} has no table {table!r}; "
                           f"it has {sorted(self.tables)}") from None

    @property
    def config(self) -> dict[str, Any]:
        return self.provenance["config"]


def config_hash(config: Mapping[str, Any]) -> str:
    """12 hex digits of SHA-256 over the canonical JSON of ``config``."""
    try:
        text = json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"config must be JSON-serialisable literals: {err}") from None
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def result_dir(name: str, profile: str) -> Path:
    return paths.RESULTS / name / check_profile(profile)


def force_from_env() -> bool:
    """True when ``RESONANCE_FORCE`` asks every computation to run afresh."""
    return os.environ.get("RESONANCE_FORCE", "") not in ("", "0")


def cached(name: str, profile: str, config: Mapping[str, Any], compute: Compute, *,
           force: bool = False) -> Bundle:
    """Return the result of ``compute(config)``, from the store when its hash matches.

    ``compute`` returns ``(tables, meta)``: a mapping of table name to DataFrame and a dict of
    JSON scalars. The returned bundle is always read back from disk, so a fresh run and a
    cached run print identical numbers.
    """
    config = dict(config)
    force = force or force_from_env()
    wanted = config_hash(config)
    folder = result_dir(name, profile)
    stored = _stored_hash(folder)
    if stored == wanted and not force:
        return load(name, profile)
    if profile == "paper" and not force:
        have = f"has config hash {stored}" if stored else "does not exist"
        raise StaleResultError(
            f"{folder.relative_to(paths.ROOT) if folder.is_relative_to(paths.ROOT) else folder} "
            f"{have}, but this config hashes to {wanted}. Recomputing the paper profile can take "
            "long: run `make reproduce` (everything) or re-run the notebook with force=True."
        )
    start = time.perf_counter()
    tables, meta = compute(config)
    wall = time.perf_counter() - start
    write(folder, tables, meta, _provenance(name, profile, config, wanted, wall))
    return load(name, profile)


def _stored_hash(folder: Path) -> str | None:
    prov = folder / "provenance.json"
    if not folder.exists():
        return None
    if not prov.is_file():
        raise CorruptResultError(
            f"{folder} has no provenance.json, so nothing in it can be trusted; delete the folder "
            "or re-run with force=True")
    return _read_json(prov).get("config_hash")


def load(name: str, profile: str) -> Bundle:
    """Read a stored result; a clear error if it is missing or damaged."""
    folder = result_dir(name, profile)
    if not folder.is_dir():
        raise FileNotFoundError(f"no result at {folder}; run its notebook or `make reproduce`")
    if not (folder / "provenance.json").is_file():
        _stored_hash(folder)  # raises the missing-provenance error
    provenance = _read_json(folder / "provenance.json")
    meta = _read_json(folder / "meta.json") if (folder / "meta.json").exists() else {}
    tables = {}
    for csv in sorted(folder.glob("*.csv")):
        try:
            tables[csv.stem] = pd.read_csv(csv, float_precision="round_trip")
        except pd.errors.EmptyDataError:  # a table with no columns (nothing at this profile)
            tables[csv.stem] = pd.DataFrame()
        except (pd.errors.ParserError, UnicodeDecodeError) as err:
            raise CorruptResultError(
                f"{csv} cannot be read ({err}); delete {folder} or re-run with force=True"
            ) from None
    return Bundle(name, profile, folder, tables, meta, provenance)


def write(folder: Path, tables: Tables, meta: Mapping[str, Any], provenance: Mapping) -> None:
    """Write a result folder atomically: a temporary sibling, then a rename."""
    for table in tables:
        if not table.isidentifier():
            raise ValueError(f"table names must be identifiers, got {table!r}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        for table, frame in tables.items():
            frame.to_csv(tmp / f"{table}.csv", index=False)
        _write_json(tmp / "meta.json", dict(meta))
        _write_json(tmp / "provenance.json", dict(provenance))
        old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
        if folder.exists():
            folder.rename(old)
        tmp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    >>> with atomic_path("cache/x.npz") as tmp:   # doctest: +SKIP
    ...     np.savez(tmp, a=a)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    tmp.chmod(0o644)  # mkstemp makes files private; results and caches are for everyone
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _jsonable(value: Any) -> Any:
    """JSON-ready copy: NumPy scalars become Python ones, NaN/inf become null (undefined)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # NumPy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write_json(path: Path, obj: Mapping) -> None:
    text = json.dumps(_jsonable(obj), indent=2, sort_keys=True, allow_nan=False)
    path.write_text(text + "\n")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptResultError(
            f"{path} is not valid JSON ({err}); delete {path.parent} or re-run with force=True"
        ) from None


def _provenance(name: str, profile: str, config: dict, digest: str, wall: float) -> dict:
    return {
        "name": name,
        "profile": profile,
        "config": config,
        "config_hash": digest,
        "git_commit": _git_commit(),
        "packages": package_versions(),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "processor": platform.machine(),
            "cpu_count": os.cpu_count(),
        },
        "wall_time_s": round(wall, 2),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def package_versions() -> dict[str, str]:
    versions = {}
    for package in TRACKED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(paths.ROOT), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(paths.ROOT), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if out.returncode != 0:
        return "unknown"
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
