"""Execute the repository's notebooks headlessly with papermill, one after another.

    python -m resonance.notebooks --profile smoke --output build/smoke   # CI: copies in build/
    python -m resonance.notebooks --profile paper --in-place --force     # make reproduce

Every notebook runs with the kernel ``python3`` and the working directory ``notebooks/``.
``--force`` sets ``RESONANCE_FORCE=1`` so every result is recomputed rather than read from
``results/`` (nothing is injected into the committed notebooks' parameters for the paper
profile, so they keep re-running from committed results under nbval).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from . import paths
from .profiles import check_profile

KERNEL = "python3"


def notebook_paths(pattern: str = "*") -> list[Path]:
    """The numbered notebooks (``NN_name.ipynb``) in reading order."""
    found = sorted(p for p in paths.NOTEBOOKS.glob(f"{pattern}.ipynb") if p.name[:2].isdigit())
    if not found:
        raise FileNotFoundError(f"no notebook matches {pattern!r} in {paths.NOTEBOOKS}")
    return found


def run(profile: str, *, output: Path | None, in_place: bool, force: bool,
        pattern: str = "*") -> list[tuple[str, float]]:
    """Run each notebook; returns (name, seconds). Raises on the first failing notebook."""
    import papermill

    check_profile(profile)
    if in_place == (output is not None):
        raise ValueError("give exactly one of --output DIR or --in-place")
    if force:
        os.environ["RESONANCE_FORCE"] = "1"
    parameters = {} if profile == "paper" else {"profile": profile}
    notebooks = notebook_paths(pattern)
    timings = []
    start_all = time.perf_counter()
    for i, notebook in enumerate(notebooks, 1):
        target = notebook if in_place else Path(output) / notebook.name
        target.parent.mkdir(parents=True, exist_ok=True)
        print(f"[{i}/{len(notebooks)}] {notebook.name} (profile={profile}) -> "
              f"{_shown(target)}", flush=True)
        start = time.perf_counter()
        papermill.execute_notebook(
            str(notebook), str(target), parameters=parameters, kernel_name=KERNEL,
            cwd=str(paths.NOTEBOOKS), progress_bar=False, log_output=False,
        )
        elapsed = time.perf_counter() - start
        timings.append((notebook.name, elapsed))
        print(f"    done in {elapsed:.1f} s (total {time.perf_counter() - start_all:.1f} s)",
              flush=True)
    return timings


def _shown(path: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(paths.ROOT)) if path.is_relative_to(paths.ROOT) else str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--output", type=Path, help="folder for executed copies")
    parser.add_argument("--in-place", action="store_true", help="overwrite the notebooks")
    parser.add_argument("--force", action="store_true", help="recompute every result")
    parser.add_argument("--only", default="*", help="glob on notebook names, e.g. '01_*'")
    args = parser.parse_args(argv)
    run(args.profile, output=args.output, in_place=args.in_place, force=args.force,
        pattern=args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
