"""``zeroshot cases``: list a dataset's cases with their shape and spacing, and counts per sequence and center."""

from __future__ import annotations

import argparse
from pathlib import Path

from zeroshot.cli.options import add_label_option, structure_for
from zeroshot.datasets import LAYOUTS


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``cases`` subcommand."""
    parser = subparsers.add_parser(
        "cases",
        help="list the cases of a dataset (CrossPan, nnU-Net or manifest layout)",
        description=(
            "List the cases found in DATA as a table (id, sequence, center, split, shape and spacing in canonical "
            "(z, y, x) order) followed by counts per sequence and center. DATA is a CrossPan folder "
            "({T1,T2,OOP}/{train,val,test}/images/<case>_0000.nii.gz + labels/), an nnU-Net raw dataset "
            "(imagesTr/, labelsTr/, imagesTs/, dataset.json) or a manifest CSV "
            "(case_id,image,label,sequence,center,split; paths relative to the CSV)."
        ),
    )
    parser.add_argument("data", type=Path, help="dataset folder or manifest CSV")
    parser.add_argument("--layout", choices=LAYOUTS, help="dataset layout (default: detected)")
    parser.add_argument("--sequence", action="extend", nargs="+", help="keep these sequences (T1 T2 OOP)")
    parser.add_argument("--center", action="extend", nargs="+", help="keep these centers")
    parser.add_argument("--split", action="extend", nargs="+", help="keep these splits (train val test)")
    parser.add_argument("--case", action="extend", nargs="+", dest="case_ids", help="keep these case ids")
    parser.add_argument("--allow-unlabelled", action="store_true", help="list images that have no label file")
    parser.add_argument("--montage", type=Path, help="also write a PNG preview (largest-label slice per sequence)")
    add_label_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Discover, select and print."""
    from zeroshot.datasets import case_table, discover, select

    cases = discover(args.data, layout=args.layout, require_labels=not args.allow_unlabelled)
    cases = select(cases, sequences=args.sequence, centers=args.center, splits=args.split, case_ids=args.case_ids)
    print(case_table(cases))
    if args.montage:
        from zeroshot.montage import write_montage

        first = next((c.label for c in cases if c.label is not None), None)
        structure = structure_for(args.label, dataset=(args.data,), first_label_file=first)
        print(f"preview: {write_montage(cases, args.montage, label=structure.value)}")
    return 0
