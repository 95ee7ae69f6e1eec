"""``zeroshot figures``: the paper figures of one or more runs, as PDF (vector) and PNG."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``figures`` subcommand."""
    parser = subparsers.add_parser(
        "figures",
        help=(
            "paper figures (PDF + PNG): distributions, baselines, cross-sequence, ablations, centers, decay, "
            "overlays, Dice vs clicks"
        ),
        description=(
            "Draw every figure the runs' tables support, each as a vector PDF and a PNG, deterministically "
            "(same tables, same bytes): Dice/NSD distributions per sequence and model; zero-shot vs supervised "
            "with CIs; the train x test sequence heatmap; prompt-ablation curves; per-center breakdown; "
            "propagation decay against distance from the prompted slice; qualitative overlays of the best, "
            "median and worst case per sequence (needs predictions saved with --save-pred); Dice against the number "
            "of corrective clicks (interactive runs, zeroshot eval --clicks; the other figures then show the "
            "initial prompts). Figures that a run cannot support are skipped with the reason printed."
        ),
    )
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="run directories (zeroshot eval --out)")
    parser.add_argument(
        "--compare",
        type=Path,
        metavar="DIR",
        help="output of `zeroshot compare` whose scored supervised baselines (baseline_results.parquet) to include",
    )
    parser.add_argument("--baselines", type=Path, metavar="CSV", help="published numbers to mark (context only)")
    parser.add_argument("--resamples", type=int, default=2_000, help="bootstrap resamples for CI bands (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument(
        "--noc",
        action="extend",
        nargs="+",
        type=float,
        default=None,
        metavar="DICE",
        help="Dice values marked in the Dice-vs-clicks figure (default 0.85 0.90)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Draw, save, list the files and the figures skipped."""
    from zeroshot.compare import NOC_THRESHOLDS
    from zeroshot.figures import make_figures

    report = make_figures(
        args.runs,
        args.out,
        compare_dir=args.compare,
        published=args.baselines,
        n_resamples=args.resamples,
        seed=args.seed,
        noc_thresholds=args.noc if args.noc is not None else NOC_THRESHOLDS,
    )
    for path in report.files:
        print(path)
    for name, reason in report.skipped:
        print(f"skipped {name}: {reason}")
    return 0
