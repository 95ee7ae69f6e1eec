"""``zeroshot compare``: tables with confidence intervals and paired tests against supervised baselines."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``compare`` subcommand.

    Long because it lists every option of the command in the order ``--help`` shows them.
    """
    parser = subparsers.add_parser(
        "compare",
        help="summary, cross-sequence and paired-test tables (CSV, Markdown, LaTeX) for one or more runs",
        description=(
            "Summarise runs per sequence (and center) for every model x strategy: mean ± SD, median [IQR] and a "
            "seeded bootstrap CI over cases, with missed organs and failed cases scored as the worst case; "
            "a train x test sequence table with supervised models beside the zero-shot ones; paired comparisons "
            "on common cases (bootstrap CI of the difference, Wilcoxon signed-rank, Holm correction). "
            "Seeds are averaged within a case first: the case is the unit. Interactive runs (zeroshot eval "
            "--clicks) add Dice after k corrective clicks, the number of clicks to reach a Dice (NoC) and the "
            "CVPR 2025 challenge's DSC_AUC / NSD_AUC / final DSC and NSD (auc); the other tables then use the "
            "initial prompts (round 0)."
        ),
    )
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="run directories (zeroshot eval --out)")
    parser.add_argument(
        "--baseline-preds",
        action="append",
        default=[],
        metavar="MODEL-TRAIN[@TEST]=DIR",
        help=(
            "predictions of a supervised model, one <case_id>.nii.gz per case, scored on the runs' cases: "
            "MODEL names it, TRAIN is the sequence it was trained on (after the last '-'), TEST the sequence of "
            "the cases in DIR (default: DIR/<sequence>/ subfolders, or the run's only sequence). "
            "E.g. nnunet-T1@T2=preds/t1_on_t2. Repeatable"
        ),
    )
    parser.add_argument(
        "--baselines",
        type=Path,
        metavar="CSV",
        help="published numbers to print beside the results (benchmarks/baselines/published.csv); never tested",
    )
    parser.add_argument("--by-center", action="store_true", help="also summarise per sequence x center")
    parser.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples (default 10000)")
    parser.add_argument("--confidence", type=float, default=0.95, help="CI level (default 0.95)")
    parser.add_argument(
        "--ci-method",
        choices=("percentile", "bca"),
        default="percentile",
        help="bootstrap interval: percentile (default) or bias-corrected and accelerated",
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument(
        "--both-empty-as-perfect",
        action="store_true",
        help="score cases with both masks empty as Dice 1 / distance 0 (default: excluded and counted)",
    )
    parser.add_argument(
        "--after-clicks",
        action="extend",
        nargs="+",
        type=int,
        default=None,
        metavar="K",
        help=(
            "interactive runs: report Dice after these numbers of corrective clicks, each clipped to the run's "
            "budget (default 0 1 3 5 8)"
        ),
    )
    parser.add_argument(
        "--noc",
        action="extend",
        nargs="+",
        type=float,
        default=None,
        metavar="DICE",
        help=(
            "interactive runs: report the clicks needed to reach these Dice values, capped at the budget, with the "
            "cases that never reach them (default 0.85 0.90)"
        ),
    )
    parser.add_argument(
        "--time-cap-s",
        type=float,
        default=None,
        metavar="S",
        help=(
            "interactive runs: the CVPR 2025 challenge's per-case time cap (90 s per structure there): a curve whose "
            "prepare + segment seconds exceed S scores 0 in the auc table (default: no cap)"
        ),
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the options, write the tables, list the files."""
    from zeroshot.compare import AFTER_CLICKS, NOC_THRESHOLDS, BootstrapOptions, compare_runs
    from zeroshot.errors import ConfigError

    try:
        options = BootstrapOptions(
            n_resamples=args.resamples, confidence=args.confidence, method=args.ci_method, seed=args.seed
        )
    except ValueError as exc:
        raise ConfigError(f"zeroshot compare: {exc}") from exc
    output = compare_runs(
        args.runs,
        args.out,
        baseline_predictions=args.baseline_preds,
        published=args.baselines,
        by_center=args.by_center,
        options=options,
        both_empty_as_perfect=args.both_empty_as_perfect,
        after_clicks=args.after_clicks if args.after_clicks is not None else AFTER_CLICKS,
        noc_thresholds=args.noc if args.noc is not None else NOC_THRESHOLDS,
        time_cap_s=args.time_cap_s,
    )
    for path in output.files:
        print(path)
    return 0
