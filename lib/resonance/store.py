"""Results store: a computation keyed by a hash of its config, written atomically.

A result lives in ``RESULTS/<name>/<profile>/``::

    provenance.json   config, config hash, git commit, package versions, machine, wall time
    meta.json         scalars (headline numbers, verdicts) -- what the paper cites; an
                      undefined number (NaN, e.g. a CI from one seed) is stored as null
    <table>.csv       tidy tables

``provenance.json`` also records the SHA-256 of every table and of ``meta.json``
(``file_sha256``); :func:`load` checks them, so a truncated or edited table is an error, never
other numbers. Folders written before the hashes existed load unverified
(``Bundle.verified`` is False). A folder is replaced by an atomic exchange of directories
(``renameat2``; elsewhere two renames, with the previous result restored by the next
:func:`load` if a kill lands between them); temporary siblings of dead processes are removed.

``cached(name, profile, config, compute)`` returns the stored bundle when the config hash
matches, and otherwise runs ``compute(config) -> (tables, meta)`` and stores it. At the
``paper`` profile a missing or stale result is an error unless ``force=True``. The environment
variable ``RESONANCE_FORCE=1`` forces every computation (``make reproduce`` sets it): committed
notebooks must re-run from committed results, never by a silent multi-hour recomputation.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pandas as pd

from . import paths
from .io import atomic_path, config_hash, file_sha256  # noqa: F401  (re-exported)
from .io import jsonable as _jsonable  # noqa: F401  (re-exported)
from .io import read_json
from .io import write_json
from .profiles import check_profile
from .seeding import numeric_environment

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


class Planned(Exception):
    """Raised by :func:`cached` inside :func:`planning`: the call it would have made."""

    def __init__(self, name: str, profile: str, config: dict, compute: Compute):
        super().__init__(f"planned {name}/{profile}")
        self.name, self.profile, self.config, self.compute = name, profile, config, compute


_PLANNING = contextvars.ContextVar("resonance_store_planning", default=False)


@contextlib.contextmanager
def planning():
    """Inside this block :func:`cached` computes nothing and raises :class:`Planned` with its
    name, profile, config and compute function: how a sweep learns the exact config an
    experiment's ``run(...)`` would store, without running it."""
    token = _PLANNING.set(True)
    try:
        yield
    finally:
        _PLANNING.reset(token)


@dataclass
class Bundle:
    """One stored result: tables, scalars and the provenance that made them."""

    name: str
    profile: str
    path: Path
    tables: dict[str, pd.DataFrame]
    meta: dict[str, Any]
    provenance: dict[str, Any] = field(repr=False)
    verified: bool = field(default=True, repr=False)  # False: written before file hashes

    def __getitem__(self, table: str) -> pd.DataFrame:
        try:
            return self.tables[table]
        except KeyError:
            raise KeyError(f"result {self.name}/{self.profile} has no table {table!r}; "
                           f"it has {sorted(self.tables)}") from None

    @property
    def config(self) -> dict[str, Any]:
        return self.provenance["config"]


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
    cached run print identical numbers. ``force=True`` recomputes and replaces whatever is
    stored, a damaged folder included. The folder is checked to be writable before computing.
    """
    config = dict(config)
    if _PLANNING.get():
        raise Planned(name, profile, config, compute)
    force = force or force_from_env()
    wanted = config_hash(config)
    folder = result_dir(name, profile)
    _recover(folder)
    stored = None if force else _stored_hash(folder)
    if stored == wanted and not force:
        return load(name, profile)
    if profile == "paper" and not force:
        have = f"has config hash {stored}" if stored else "does not exist"
        raise StaleResultError(
            f"{folder.relative_to(paths.ROOT) if folder.is_relative_to(paths.ROOT) else folder} "
            f"{have}, but this config hashes to {wanted}. Recomputing the paper profile can take "
            "long: run `make reproduce` (everything) or re-run the notebook with force=True."
        )
    check_writable(folder)
    start, cpu = time.perf_counter(), _cpu_seconds()
    tables, meta = compute(config)
    wall = time.perf_counter() - start
    write(folder, tables, meta, _provenance(name, profile, config, wanted, wall,
                                            _cpu_seconds() - cpu))
    return load(name, profile)


def check_writable(folder: Path) -> None:
    """Raise ``PermissionError`` now, not after hours of computing, if ``folder`` cannot be
    written (its parent is created if needed)."""
    parent = Path(folder).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise PermissionError(
            f"cannot write results to {folder} ({err.strerror or err}); fix its permissions "
            "or point RESONANCE_RESULTS at a writable folder before computing") from None


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
    """Read a stored result; a clear error if it is missing or damaged.

    Every file listed in provenance's ``file_sha256`` must be present with that hash, and no
    other table may be; a folder from before the hashes loads with ``verified=False``.
    """
    folder = result_dir(name, profile)
    _recover(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no result at {folder}; run its notebook or `make reproduce`")
    if not (folder / "provenance.json").is_file():
        _stored_hash(folder)  # raises the missing-provenance error
    provenance = _read_json(folder / "provenance.json")
    hashes = provenance.get("file_sha256")
    if hashes is not None:
        _verify(folder, hashes)
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
    return Bundle(name, profile, folder, tables, meta, provenance, verified=hashes is not None)


def _verify(folder: Path, hashes: Mapping[str, str]) -> None:
    fix = f"re-run with force=True (or `make reproduce`) to recompute {folder}"
    for file, digest in hashes.items():
        path = folder / file
        if not path.is_file():
            raise CorruptResultError(f"{path} is missing but provenance.json lists it; {fix}")
        if file_sha256(path) != digest:
            raise CorruptResultError(
                f"{path} does not match the SHA-256 recorded in provenance.json (truncated or "
                f"edited after it was written); {fix}")
    extra = sorted(p.name for p in folder.glob("*.csv") if p.name not in hashes)
    if extra:
        raise CorruptResultError(f"{folder} holds tables that provenance.json does not list: "
                                 f"{extra}; delete them or {fix}")


def write(folder: Path, tables: Tables, meta: Mapping[str, Any], provenance: Mapping) -> None:
    """Write a result folder atomically: a temporary sibling, then an exchange of the two.

    ``provenance`` gains ``file_sha256`` (every table and ``meta.json``). The folder is made
    readable by group and others.
    """
    for table in tables:
        if not table.isidentifier():
            raise ValueError(f"table names must be identifiers, got {table!r}")
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    _recover(folder)
    _clean_orphans(folder)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-{os.getpid()}-", dir=folder.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; results are for the group too
        hashes = {}
        for table, frame in tables.items():
            frame.to_csv(tmp / f"{table}.csv", index=False)
            hashes[f"{table}.csv"] = file_sha256(tmp / f"{table}.csv")
        write_json(tmp / "meta.json", dict(meta), atomic=False)
        hashes["meta.json"] = file_sha256(tmp / "meta.json")
        write_json(tmp / "provenance.json", {**provenance, "file_sha256": hashes}, atomic=False)
        if not folder.exists():
            tmp.rename(folder)
        elif _exchange(tmp, folder):  # atomic: the old result is in tmp now
            pass
        else:
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
            tmp.rename(folder)  # a kill before this line: _recover() restores `old`
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where the
    system or file system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    return fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sibling_pid(path: Path, marker: str) -> int | None:
    rest = path.name.split(marker, 1)[-1]
    head = rest.split("-", 1)[0]
    return int(head) if head.isdigit() else None


def _recover(folder: Path) -> None:
    """A kill between the two renames of :func:`write` leaves ``.name.old-PID`` and no
    folder: put the previous result back."""
    if folder.exists() or not folder.parent.is_dir():
        return
    olds = sorted(folder.parent.glob(f".{folder.name}.old-*"), key=lambda p: p.stat().st_mtime)
    for old in reversed(olds):
        if (old / "provenance.json").is_file():
            try:
                old.rename(folder)
            except OSError:
                continue
            return


def _clean_orphans(folder: Path) -> None:
    """Remove temporary siblings (``.name.tmp-PID-*``, ``.name.old-PID``) of dead processes."""
    for marker in (".tmp-", ".old-"):
        for path in folder.parent.glob(f".{folder.name}{marker}*"):
            pid = _sibling_pid(path, marker)
            if pid is None or not _pid_alive(pid):
                shutil.rmtree(path, ignore_errors=True)


def _write_json(path: Path, obj: Mapping) -> None:
    """Backward-compatible alias of :func:`resonance.io.write_json` (atomic)."""
    write_json(path, obj)


def _read_json(path: Path) -> dict:
    return read_json(path, error=CorruptResultError,
                     fix=f"delete {path.parent} or re-run with force=True")


def _cpu_seconds() -> float:
    """User + system seconds of this process and its finished children."""
    import resource

    return sum(getattr(resource.getrusage(who), field) for who in
               (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN) for field in ("ru_utime", "ru_stime"))


def _provenance(name: str, profile: str, config: dict, digest: str, wall: float,
                cpu: float | None = None) -> dict:
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
        "numerics": numeric_environment(),
        "wall_time_s": round(wall, 2),
        **({} if cpu is None else {"cpu_time_s": round(cpu, 2)}),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def package_versions(packages: Sequence[str] = TRACKED_PACKAGES) -> dict[str, str]:
    """``{package: version}`` of the installed ``packages`` ("not installed" when absent)."""
    versions = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def _git_commit() -> str:
    """HEAD, with ``+dirty`` when tracked files differ from it.

    ``make reproduce`` checks the tree is clean, then pins the commit in
    ``RESONANCE_GIT_COMMIT`` (its notebooks rewrite tracked outputs as they run); with a pin
    only the code (``lib/``, ``pyproject.toml``) is checked for later changes.
    """
    pinned = os.environ.get("RESONANCE_GIT_COMMIT", "").strip()
    code = ["--", "lib", "pyproject.toml"] if pinned else []
    try:
        out = subprocess.run(["git", "-C", str(paths.ROOT), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(paths.ROOT), "status", "--porcelain",
                                "--untracked-files=no", *code], capture_output=True, text=True,
                               timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return pinned or "unknown"
    if out.returncode != 0:
        return pinned or "unknown"
    head = out.stdout.strip()
    if pinned and pinned.split("+")[0] != head:
        return f"{pinned}+moved-to-{head}"
    base = pinned or head
    return base + ("+dirty" if dirty.stdout.strip() and not base.endswith("+dirty") else "")
