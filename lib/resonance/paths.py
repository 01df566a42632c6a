"""Where the repository's files live, whatever the working directory.

Every location can be overridden by an environment variable, so papermill, nbval, CI and
scripts resolve the same files:

=========  ======================  ==============================================
name       variable                default
=========  ======================  ==============================================
ROOT       ``RESONANCE_ROOT``      the checkout holding ``pyproject.toml``
RESULTS    ``RESONANCE_RESULTS``   ``ROOT/results`` (small committed tables)
FIGURES    ``RESONANCE_FIGURES``   ``ROOT/figures``
CACHE      ``RESONANCE_CACHE``     ``ROOT/cache`` (git-ignored heavy artefacts)
BUILD      ``RESONANCE_BUILD``     ``ROOT/build`` (executed copies of notebooks)
=========  ======================  ==============================================
"""

from __future__ import annotations

import os
from pathlib import Path


def _find_root() -> Path:
    if "RESONANCE_ROOT" in os.environ:
        return Path(os.environ["RESONANCE_ROOT"]).resolve()
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "lib" / "resonance").is_dir():
            return parent
    # Installed without a checkout (a wheel): fall back to the working directory.
    return Path.cwd().resolve()


def _dir(variable: str, default: Path) -> Path:
    value = os.environ.get(variable)
    return Path(value).resolve() if value else default


ROOT = _find_root()
RESULTS = _dir("RESONANCE_RESULTS", ROOT / "results")
FIGURES = _dir("RESONANCE_FIGURES", ROOT / "figures")
CACHE = _dir("RESONANCE_CACHE", ROOT / "cache")
BUILD = _dir("RESONANCE_BUILD", ROOT / "build")
NOTEBOOKS = ROOT / "notebooks"
PAPERS = ROOT / "papers"
