"""``zeroshot merge``: combine run directories (shards of a job array, extended runs) into one."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``merge`` subcommand."""
    parser = subparsers.add_parser(
        "merge",
        help="combine run directories (e.g. the shards of a job array) into one with consolidated tables",
        description=(
            "Merge run directories into a new one: refuses runs of conflicting configurations (naming every "
            "difference) and rows present in two runs; copies rows and prompts, hard-links predictions, and writes "
            "results.csv/.parquet, failures.csv and slices.parquet. Giving one run rebuilds its tables elsewhere."
        ),
    )
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="run directories (zeroshot eval --out)")
    parser.add_argument("--out", type=Path, required=True, help="new directory for the merged run")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Merge and print what the merged run holds."""
    from zeroshot.runner import merge_runs

    tables = merge_runs(args.runs, args.out)
    results = tables.results
    failed = int(results["failed"].sum()) if not results.empty else 0
    print(f"merged {len(args.runs)} run(s) into {args.out}: {len(results)} rows ({failed} failed)")
    return 0
