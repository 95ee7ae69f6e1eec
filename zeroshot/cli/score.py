"""``zeroshot score``: score a folder of predicted masks against a folder of labels."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from zeroshot.cli.options import add_label_option, structure_for


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``score`` subcommand."""
    parser = subparsers.add_parser(
        "score",
        help="score a folder of predicted masks against a folder of labels (Dice, NSD, HD95, ...)",
        description=(
            "Score every label in GT against the prediction with the same case id in PRED (e.g. an nnU-Net output "
            "folder case.nii.gz against labelsTs/case.nii.gz), on the label's grid, and write results.csv and "
            "results.parquet (one row per case: dice, iou, volumes, hd95_mm, hd_mm, assd_mm, masd_mm, nsd_<t>mm, "
            "d_max_mm, empty_gt, empty_pred, failed, error) and score.json to OUT. Raw values: inf distances for a "
            "missed organ, NaN when both masks are empty. A prediction in another orientation of the label's grid "
            "(RAS vs LPS, permuted axes) is scored as it is; a missing, off-grid (needing resampling) or non-binary "
            "prediction, or a label file that lacks the --label value, makes a failed row with the reason; every "
            "other case is scored. --label NAME is looked up in dataset.json in GT or its parent folder."
        ),
    )
    parser.add_argument("--pred", type=Path, required=True, help="folder of predicted masks (binary 0/1 NIfTI)")
    parser.add_argument("--gt", type=Path, required=True, help="folder of label NIfTI files")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created if needed)")
    parser.add_argument(
        "--tolerance",
        type=float,
        action="extend",
        nargs="+",
        default=None,
        metavar="MM",
        help="NSD tolerance(s) in mm, one nsd_<t>mm column each (default: 2)",
    )
    parser.add_argument(
        "--workers", type=int, default=_available_cpus(), help="worker processes (default: the CPUs available)"
    )
    add_label_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Score the folders and print where the tables went and which cases failed."""
    from zeroshot.scoring import match_cases, score_folder

    cases, _ = match_cases(args.pred, args.gt)
    structure = structure_for(args.label, dataset=(args.gt, args.gt.parent), first_label_file=cases[0].gt)
    scores = score_folder(
        args.pred, args.gt, args.out, tolerances_mm=args.tolerance or [2.0], workers=args.workers, label=structure.value
    )
    table = scores.table
    print(f"scored {len(table) - scores.n_failed} of {len(table)} cases -> {', '.join(map(str, scores.files))}")
    for row in table[table["failed"]].itertuples():
        print(f"failed: {row.case_id}: {row.error}", file=sys.stderr)
    if scores.unmatched_predictions:
        shown = ", ".join(scores.unmatched_predictions[:10])
        print(f"ignored {len(scores.unmatched_predictions)} prediction(s) without a label: {shown}", file=sys.stderr)
    return 0


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
