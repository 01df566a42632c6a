"""The ``resonance`` command line: ``resonance compare A B``, ``resonance rank --reference X
C1 C2 ...`` and ``resonance sweep EXPERIMENT --profile P --seeds 0-9 [--workers N | --scheduler
ADDR]`` (also ``python -m resonance ...``). Each subcommand is one function registered in
:data:`COMMANDS`.

Exit status: 0 on success, 2 for bad input (an unknown model, an unreadable stimuli file, too
few stimuli, a bad option), with one ``resonance <command>: error: ...`` line on stderr.
The hub is off unless you set ``HF_HUB_OFFLINE=0``: packaged models need no network.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

EXIT_BAD_INPUT = 2


def _depths(values: Sequence[str]):
    if values == ["all"]:
        return "all"
    try:
        return [float(v) for v in values]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--layers takes 'all' or relative depths in [0, 1] such as 0 0.5 1, got "
            f"{' '.join(values)!r}") from None


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stimuli", default="concepts", metavar="concepts|corpus|FILE",
                        help="'concepts' (WordNet nouns, labelled by concept), 'corpus' (KJV "
                             "verses) or a UTF-8 text file with one stimulus per line, "
                             "optionally 'label<TAB>text' (default: concepts)")
    parser.add_argument("--n", type=int, default=200,
                        help="how many stimuli 'concepts' or 'corpus' draw (default: 200)")
    parser.add_argument("--depth", type=float, default=1.0,
                        help="relative depth of the layer compared, 0 = embeddings, 1 = last "
                             "(default: 1)")
    parser.add_argument("--k", type=int, default=None,
                        help="neighbours for mutual_knn / cknna (default: the measure's, 10)")
    parser.add_argument("--n-null", type=int, default=99,
                        help="null draws per p-value (default: 99, the fewest for p < 0.01)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pool", default="mean", choices=("mean", "last"),
                        help="token pooling of text models (default: mean)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _shown_p(table):
    """p-value columns as text (``< 0.0001`` for tiny ones) for printing."""
    from .report import format_p
    return table.assign(**{c: table[c].map(format_p) for c in table.columns
                           if str(c).startswith("p_")})


def _run_compare(args: argparse.Namespace) -> int:
    from .comparison import compare
    result = compare(args.a, args.b, args.stimuli, layers=_depths(args.layers), depth=args.depth,
                     measures=args.measures, k=args.k, layer_measure=args.layer_measure,
                     n=args.n, n_boot=args.n_boot, n_null=args.n_null, seed=args.seed,
                     pool=args.pool, local=not args.no_local,
                     progress=False if args.quiet else None)
    out = Path(args.out)
    html_path = result.to_html(out)
    csv_path = result.to_csv(Path(args.csv) if args.csv else out.with_suffix(".csv"))
    table = _shown_p(result.global_table[["measure", "value", "ci_low", "ci_high", "null_mean",
                                          "p_value"]])
    print(f"{result.model_a} (layer {result.info['layer_a']}) vs {result.model_b} (layer "
          f"{result.info['layer_b']}) on {result.info['n_stimuli']} stimuli "
          f"({result.info['stimuli']}):")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print(f"report: {html_path}\ntable:  {csv_path}")
    return 0


def _run_rank(args: argparse.Namespace) -> int:
    from .comparison import rank
    result = rank(args.reference, args.candidates, args.stimuli, measure=args.measure,
                  depth=args.depth, k=args.k, n=args.n, n_boot=args.n_boot, n_null=args.n_null,
                  seed=args.seed, pool=args.pool, progress=False if args.quiet else None)
    fmt = lambda x: f"{x:.3f}"  # noqa: E731
    print(f"resonance with {result.reference} ({result.measure}, "
          f"{'higher' if result.info['direction'] == 'similarity' else 'lower'} = more alike):")
    print(_shown_p(result.table[["rank", "candidate", "value", "ci_low", "ci_high", "p_value"]])
          .to_string(index=False, float_format=fmt))
    print("\npaired differences (resampling stimuli):")
    print(_shown_p(result.pairs[["better", "worse", "advantage", "ci_low", "ci_high", "p_value",
                                 "p_holm"]]).to_string(index=False, float_format=fmt))
    if args.out:
        html_path, csv_path = result.save(args.out)
        print(f"report: {html_path}\ntable:  {csv_path}")
    return 0


def _overrides(pairs: Sequence[str]) -> dict:
    import json
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        try:
            if not sep or not key.isidentifier():
                raise ValueError
            out[key] = json.loads(value)
        except ValueError:
            raise ValueError(f"--set takes KEY=JSON such as ladder='[[32, 2], [64, 2]]', got "
                             f"{pair!r}") from None
    return out


def _run_sweep(args: argparse.Namespace) -> int:
    from . import sweep
    overrides = _overrides(args.set)
    if args.seeds is not None:
        overrides["seeds"] = sweep.parse_seeds(args.seeds)
    cells = sweep.experiment_cells(args.experiment, args.profile, replace=args.replace,
                                   **overrides)
    try:
        summary = sweep.run_sweep(cells, scheduler=args.scheduler, workers=args.workers,
                                  progress=not args.quiet)
    except (ImportError, sweep.EnvironmentMismatchError) as err:
        raise ValueError(str(err)) from None
    print(summary.report())
    if summary.ok:
        print(f"result: {cells[-1].folder}")
    return 0 if summary.ok else 1


def build_parser() -> argparse.ArgumentParser:
    from .comparison import DEFAULT_MEASURES, LAYER_MEASURE
    parser = argparse.ArgumentParser(
        prog="resonance", description="How alike do two networks represent the same stimuli?")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("compare", help="compare two models; write an HTML report and a CSV",
                       description="Compare models A and B (zoo names such as minilm or mpnet, "
                                   "Hugging Face ids, or save_pretrained folders).")
    p.add_argument("a", help="model A")
    p.add_argument("b", help="model B")
    _common(p)
    p.add_argument("--layers", nargs="+", default=["all"], metavar="all|DEPTH",
                   help="layers to extract: 'all' (default) or relative depths in [0, 1]")
    p.add_argument("--measures", nargs="+", default=list(DEFAULT_MEASURES),
                   help=f"global measures (default: {' '.join(DEFAULT_MEASURES)})")
    p.add_argument("--layer-measure", default=LAYER_MEASURE,
                   help=f"measure of the layer x layer heatmap (default: {LAYER_MEASURE})")
    p.add_argument("--n-boot", type=int, default=50, help="jackknife subsets (default: 50)")
    p.add_argument("--no-local", action="store_true", help="skip local resonance per label")
    p.add_argument("--out", default="report.html", help="the HTML report (default: report.html)")
    p.add_argument("--csv", default=None, help="the tidy CSV (default: beside the report)")
    p.set_defaults(run=_run_compare)

    p = sub.add_parser("rank", help="rank candidates by resonance with a reference model",
                       description="Which candidate resonates most with the reference? With a "
                                   "paired test of every pair of candidates over resampled "
                                   "stimuli.")
    p.add_argument("--reference", required=True, help="the reference model")
    p.add_argument("candidates", nargs="+", help="two or more candidate models")
    _common(p)
    p.add_argument("--measure", default="cka_linear_debiased",
                   help="the measure (default: cka_linear_debiased)")
    p.add_argument("--n-boot", type=int, default=200,
                   help="paired jackknife subsets (default: 200)")
    p.add_argument("--out", default=None, help="also write an HTML report (and a CSV beside it)")
    p.set_defaults(run=_run_rank)

    p = sub.add_parser("sweep", help="run an experiment's grid as cells, in-process or on Dask",
                       description="Run an experiment (e.g. scale = notebook 01) as one task per "
                                   "config cell (01: a training run per rung and seed, then its "
                                   "measures), skipping cells already stored. In-process unless "
                                   "--workers or --scheduler (or $RESONANCE_SCHEDULER) is given.")
    p.add_argument("experiment", help="an experiment module (scale, architecture, ...) or its "
                                      "results name (01_scale)")
    p.add_argument("--profile", default="smoke", help="smoke, paper or hub (default: smoke)")
    p.add_argument("--seeds", default=None, help="seeds to run, e.g. 0-9 or 0,2,5-7 (default: "
                                                 "the profile's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                   help="override a size of the profile, e.g. ladder='[[32,2],[64,2],[160,2]]'")
    p.add_argument("--scheduler", default=None, metavar="ADDR",
                   help="a running Dask scheduler, e.g. tcp://host:8786 (default: "
                        "$RESONANCE_SCHEDULER)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="start a local cluster of N single-threaded worker processes")
    p.add_argument("--replace", action="store_true",
                   help="overwrite a paper/hub result stored with another config")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_sweep)
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"compare": _run_compare,
                                                            "rank": _run_rank,
                                                            "sweep": _run_sweep}


def _show_progress_messages() -> None:
    """The library's INFO messages (e.g. a training run waiting for another process's lock) on
    stderr, once."""
    import logging

    log = logging.getLogger("resonance")
    if not log.handlers:
        log.addHandler(logging.StreamHandler())
        log.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the subcommand; bad input exits with status 2 and one line."""
    from .comparison import offline_by_default
    offline_by_default()  # before transformers / huggingface_hub read the environment
    import matplotlib
    matplotlib.use("Agg")
    parser = build_parser()
    args = parser.parse_args(argv)
    _show_progress_messages()
    from .zoo import HubUnreachableError, ZooUnavailableError
    try:
        return args.run(args)
    except (ValueError, TypeError, KeyError, FileNotFoundError, argparse.ArgumentTypeError,
            ZooUnavailableError, HubUnreachableError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"resonance {args.command}: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
