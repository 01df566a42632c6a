"""Execute the repository's notebooks headlessly with papermill, one after another.

    python -m resonance.notebooks --profile smoke --output build/smoke --jobs 2   # CI: copies
    python -m resonance.notebooks --profile paper --in-place --force --jobs 2    # reproduce

Every notebook runs with the kernel ``python3`` and the working directory ``notebooks/``.
``--jobs N`` runs N notebooks at once, each in its own process with one BLAS/OpenMP thread
(the notebooks share nothing but the locked caches: a model two notebooks need is trained by
the first to ask and loaded by the other, which waits on its lock); every result's provenance
records the thread count it was computed with, so one thread per job is part of the record.
``--force`` sets ``RESONANCE_FORCE=1`` so every result is recomputed rather than read from
``results/`` (nothing is injected into the committed notebooks' parameters for the paper
profile, so they keep re-running from committed results under nbval).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
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


SINGLE_THREADED = {name: "1" for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                           "OPENBLAS_NUM_THREADS")}


def run_parallel(profile: str, *, output: Path | None, jobs: int, force: bool,
                 pattern: str = "*") -> list[tuple[str, float]]:
    """Run the notebooks ``jobs`` at a time, each through this module in a child process;
    ``output=None`` runs them in place.

    Each child's log is printed whole when it finishes; the first failure is raised after the
    running ones end (finished notebooks are kept). Returns (name, seconds) in reading order.
    """
    if jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {jobs}")
    notebooks = notebook_paths(pattern)
    env = {**os.environ, **SINGLE_THREADED}

    def one(notebook: Path) -> tuple[str, float, int, str]:
        target = ["--in-place"] if output is None else ["--output", str(output)]
        command = [sys.executable, "-m", "resonance.notebooks", "--profile", profile, *target,
                   "--only", notebook.stem]
        if force:
            command.append("--force")
        start = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        return notebook.name, time.perf_counter() - start, done.returncode, \
            done.stdout + done.stderr

    failed, timings = [], []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for name, seconds, code, log in pool.map(one, notebooks):
            print(f"[{name}] {'done' if code == 0 else f'FAILED (exit {code})'} in "
                  f"{seconds:.1f} s\n{log}", flush=True)
            timings.append((name, seconds))
            if code:
                failed.append(name)
    if failed:
        raise RuntimeError(f"{len(failed)} notebook(s) failed: {', '.join(failed)} (their logs "
                           "are above)")
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
    parser.add_argument("--jobs", type=int, default=1,
                        help="notebooks run at once, one thread each")
    args = parser.parse_args(argv)
    if args.in_place == (args.output is not None):
        parser.error("give exactly one of --output DIR or --in-place")
    if args.jobs != 1:
        run_parallel(args.profile, output=None if args.in_place else args.output,
                     jobs=args.jobs, force=args.force, pattern=args.only)
    else:
        run(args.profile, output=args.output, in_place=args.in_place, force=args.force,
            pattern=args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
