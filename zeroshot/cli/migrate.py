"""``zeroshot migrate``: convert a run written before the run store (one file per row) to the store."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``migrate`` subcommand."""
    parser = subparsers.add_parser(
        "migrate",
        help="convert a run written with one file per row (rows/, prompts/) to the run store",
        description=(
            "Move the rows and prompts of a run written before the run store (one JSON file each under rows/ and "
            "prompts/) into its store (a few Parquet files), rebuild its tables (unchanged), and remove the old "
            "files. Safe to run again if interrupted. zeroshot eval and merge refuse such a run until it is migrated."
        ),
    )
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="run directories (zeroshot eval --out)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Migrate each run and print what moved."""
    from zeroshot.runner.migrate import migrate_run

    for root in args.runs:
        done = migrate_run(root)
        if done.rows == done.prompts == 0:
            print(f"{root}: already in the run store layout; nothing to migrate")
            continue
        print(
            f"{root}: moved {done.rows} row(s) and {done.prompts} prompt set(s) into the run store "
            f"({done.files_before} files -> {done.files_after})"
        )
    return 0
