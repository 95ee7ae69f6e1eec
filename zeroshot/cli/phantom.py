"""``zeroshot phantom``: write the synthetic multi-sequence dataset (the demo and test data)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``phantom`` subcommand."""
    parser = subparsers.add_parser(
        "phantom",
        help="write a synthetic multi-sequence pancreas MRI dataset (CrossPan layout + manifest)",
        description=(
            "Write synthetic abdomens scanned with T1, T2 and opposed-phase sequences at several 'centers', in the "
            "CrossPan layout ({T1,T2,OOP}/{train,val,test}/images|labels) with a manifest.csv naming each case's "
            "center, and a montage.png preview. The same --seed writes identical files. Synthetic data test the "
            "machinery, not accuracy on real scans."
        ),
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (created)")
    parser.add_argument("--cases", type=int, default=12, help="number of subjects, each in all three sequences")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--size",
        choices=("small", "realistic"),
        default="small",
        help="small: 128-176 px in-plane, 24-40 slices (tests, demo); realistic: 256-448 px, 40-96 slices",
    )
    parser.add_argument(
        "--labels",
        type=_label_values,
        metavar="NAME=VALUE,...",
        help=(
            "write multi-label label files with a dataset.json naming the values, e.g. pancreas=7,spleen=1 (organs: "
            "pancreas, spleen; pancreas required); choose the structure later with --label 7 or --label pancreas. "
            "Default: pancreas=1 only (CrossPan)"
        ),
    )
    parser.add_argument("--no-montage", action="store_true", help="skip the montage.png preview")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the dataset and its montage."""
    from zeroshot.datasets import discover
    from zeroshot.montage import write_montage
    from zeroshot.phantom import PANCREAS_LABEL, write_phantom_dataset

    manifest = write_phantom_dataset(
        args.out, cases=args.cases, seed=args.seed, size=args.size, progress=True, label_values=args.labels
    )
    print(f"wrote {args.cases} subjects x 3 sequences to {args.out} (manifest: {manifest})")
    if not args.no_montage:
        montage = write_montage(
            discover(manifest), args.out / "montage.png", label=(args.labels or {}).get("pancreas", PANCREAS_LABEL)
        )
        print(f"preview: {montage}")
    return 0


def _label_values(text: str) -> dict[str, int]:
    """``pancreas=7,spleen=1`` as ``{"pancreas": 7, "spleen": 1}`` (the organs and values are checked on writing)."""
    values: dict[str, int] = {}
    for item in text.split(","):
        name, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not name or not value.isdigit() or name in values:
            raise argparse.ArgumentTypeError(
                f"{item.strip()!r}: expected NAME=VALUE pairs separated by commas, each organ once, "
                "e.g. pancreas=7,spleen=1"
            )
        values[name] = int(value)
    return values
