"""Small I/O plumbing shared by every module: config hashes, atomic writes, JSON, file hashes.

Model, data and training modules import this (not :mod:`resonance.store`, which keeps result
bundles and provenance). Nothing here imports NumPy, pandas or torch.

>>> config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
True
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping

__all__ = ["config_hash", "atomic_path", "jsonable", "write_json", "read_json", "file_sha256"]


def config_hash(config: Mapping[str, Any]) -> str:
    """12 hex digits of SHA-256 over the canonical JSON of ``config``."""
    try:
        text = json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"config must be JSON-serialisable literals: {err}") from None
    return hashlib.sha256(text.encode()).hexdigest()[:12]


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


def jsonable(value: Any) -> Any:
    """JSON-ready copy: NumPy scalars become Python ones, NaN/inf become null (undefined)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # NumPy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path | str, obj: Mapping, *, atomic: bool = True) -> None:
    """Write ``obj`` as sorted, indented JSON (NaN -> null), atomically unless told not to."""
    text = json.dumps(jsonable(obj), indent=2, sort_keys=True, allow_nan=False) + "\n"
    if not atomic:
        Path(path).write_text(text)
        return
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_json(path: Path | str, *, error: type[Exception] = ValueError,
              fix: str | None = None) -> Any:
    """Parse a JSON file; a damaged one raises ``error`` naming the file and the fix."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        fix = fix or f"delete {path} and re-run"
        raise error(f"{path} is not valid JSON ({err}); {fix}") from None


def file_sha256(path: Path | str, chunk: int = 1 << 20) -> str:
    """Full SHA-256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
