"""``zeroshot report``: one HTML page to browse one or more runs, with compare tables and figures."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``report`` subcommand."""
    parser = subparsers.add_parser(
        "report",
        help="one HTML page to browse runs: provenance, tables, figures, every case's slices, failures",
        description=(
            "Write DIR/index.html, which opens from disk with no network: the runs' provenance (models with "
            "checkpoint SHA-256 and licence, strategies, seeds, versions, invocations), the tables of `zeroshot "
            "compare` (sortable; filterable by sequence, model, strategy, center, metric), the figures of "
            "`zeroshot figures`, a case browser (one entry per case x model x strategy x seed x round: metrics, "
            "slices with ground truth, prediction and prompt drawn, per-slice Dice along z) and the failed rows "
            "with their reasons. Slice images need the predictions saved with `zeroshot eval --save-pred`. The same "
            "runs give the same files."
        ),
    )
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="run directories (zeroshot eval --out)")
    parser.add_argument("--compare", type=Path, metavar="DIR", help="output of `zeroshot compare` to show")
    parser.add_argument("--figures", type=Path, metavar="DIR", help="output of `zeroshot figures` to show")
    parser.add_argument("--out", type=Path, required=True, help="report folder (new, empty, or an earlier report)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the report and print the path of its page."""
    from zeroshot.report import write_report

    output = write_report(
        args.runs,
        args.out,
        compare_dir=args.compare,
        figures_dir=args.figures,
        progress=False if args.no_progress else None,
    )
    print(
        f"{output.index} ({output.entries} case entries, {output.images} slice images, "
        f"{output.bytes_total / 1e6:.1f} MB; {output.mb_per_100_entries:.2f} MB per 100 entries without figures)"
    )
    return 0
