"""``zeroshot prompts``: write the prompts of a dataset's cases under named strategies and seeds."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from zeroshot.cli.options import add_label_option, seed, structure_for
from zeroshot.datasets import LAYOUTS


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``prompts`` subcommand."""
    parser = subparsers.add_parser(
        "prompts",
        help="write box / point / mask prompts for a dataset's cases (seeded, with oracle flags)",
        description=(
            "Make the prompts of every selected case under each strategy and seed and write them to OUT as JSON "
            "Lines: one object per case, strategy and seed ({case_id, strategy, seed, source, oracle, slices: "
            "[{z, box, points, labels, mask}], details}), boxes [x0, y0, x1, y1] and points [x, y] as inclusive "
            "pixel indices of the canonical (z, y, x) slice (x = column). Mask prompts go to PNG files in "
            "OUT.masks/ beside it (e.g. prompts.jsonl -> prompts.masks/). The same seed gives the same file "
            "byte for byte. A strategy is a YAML file or a name from the prompts/ folder (box-mid, box-largest, "
            "box-mid-jitter10, point-center, points-3pos-3neg, box-3slices, mask-mid, box-every-slice, ...); a "
            "sweep file (prompts/sweep-ablation.yaml) stands for all its members. Cases that cannot be prompted "
            "(e.g. an empty coarse mask) are listed with the reason and skipped."
        ),
    )
    parser.add_argument("--data", type=Path, required=True, help="dataset folder or manifest CSV")
    parser.add_argument("--layout", choices=LAYOUTS, help="dataset layout (default: detected)")
    parser.add_argument("--sequence", action="extend", nargs="+", help="keep these sequences (T1 T2 OOP)")
    parser.add_argument("--center", action="extend", nargs="+", help="keep these centers")
    parser.add_argument("--split", action="extend", nargs="+", help="keep these splits (train val test)")
    parser.add_argument("--case", action="extend", nargs="+", dest="case_ids", help="keep these case ids")
    parser.add_argument(
        "--strategy",
        action="extend",
        nargs="+",
        required=True,
        metavar="YAML_OR_NAME",
        help="strategy file(s), name(s) or sweep",
    )
    parser.add_argument(
        "--seed", type=seed, action="extend", nargs="+", help="seed(s) of the random draws, 0 to 2**63 - 1 (default 0)"
    )
    parser.add_argument("--coarse", type=Path, help="folder of coarse masks (<case>.nii.gz) for coarse strategies")
    add_label_option(parser)
    parser.add_argument("--out", type=Path, required=True, help="output JSON Lines file (e.g. prompts.jsonl)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load strategies, select cases, write the prompts and list the cases that failed."""
    from zeroshot.datasets import discover, select
    from zeroshot.errors import ConfigError, PromptError, ZeroshotWarning
    from zeroshot.prompts import load_strategies, write_dataset_prompts
    from zeroshot.prompts.generate import LOW_BOX_COVERAGE

    strategies = [s for name in args.strategy for s in load_strategies(name)]
    names = [s.name for s in strategies]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ConfigError(f"--strategy: {', '.join(duplicated)} given more than once")
    seeds = args.seed or [0]
    cases = discover(args.data, layout=args.layout)
    cases = select(cases, sequences=args.sequence, centers=args.center, splits=args.split, case_ids=args.case_ids)
    first = next((c.label for c in cases if c.label is not None), None)
    structure = structure_for(args.label, dataset=(args.data,), first_label_file=first)
    result = write_dataset_prompts(
        cases,
        strategies,
        seeds,
        args.out,
        label=structure.value,
        coarse_dir=args.coarse,
        progress=not args.no_progress,
    )
    for failure in result.failures:
        print(f"failed: {failure.case_key} {failure.strategy} seed {failure.seed}: {failure.reason}", file=sys.stderr)
    if result.low_coverage:
        warnings.warn(
            f"{result.low_coverage} of {result.written} prompt set(s) have a box covering less than "
            f"{LOW_BOX_COVERAGE:.0%} of the structure on its slice (box_coverage in details.slices): the box jitter "
            "or shift is too large for the structure",
            ZeroshotWarning,
            stacklevel=2,
        )
    if result.written == 0:
        raise PromptError(f"no prompts written to {result.path}: every case failed (reasons above)")
    print(
        f"wrote {result.written} prompt set(s) for {len(cases)} case(s) x {len(strategies)} strategy(ies) x "
        f"{len(seeds)} seed(s) to {result.path}" + (f"; {len(result.failures)} failed" if result.failures else "")
    )
    return 0
