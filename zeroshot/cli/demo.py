"""``zeroshot demo``: phantom data, baselines and cached checkpoints, tables, figures and a summary in minutes."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        "demo",
        help="run the whole pipeline on a synthetic phantom (what `make demo` runs)",
        description=(
            "Write a phantom dataset, evaluate the weight-free baselines (grabcut, box-fill) and any SAM2/MedSAM2 "
            "checkpoint already cached under a few prompt strategies on the T1, T2 and OOP test cases, train a "
            "small supervised network on the T1 training cases and score it on the same test cases "
            "(--baseline-preds phantom-cnn-T1=DIR), write the tables, the comparison and the figures, and print "
            "mean Dice per sequence x model x strategy and the train x test sequence table. Running it again "
            "resumes. Synthetic data test the machinery, not accuracy on patients."
        ),
    )
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (default runs/demo)")
    parser.add_argument(
        "--cases",
        type=int,
        default=3,
        help="test cases per sequence (default 3); the phantom gets five times as many subjects, 3/5 of them training",
    )
    parser.add_argument("--seed", type=int, default=0, help="phantom seed (default 0)")
    parser.add_argument("--model", action="append", help="models (repeatable; default baselines + cached)")
    parser.add_argument("--strategy", action="append", help="strategies (repeatable; default a few shipped ones)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--image-size", type=int, help="model input size in pixels (default: each model's own)")
    parser.add_argument("--workers", type=int, default=1, help="scoring processes (default 1)")
    parser.add_argument("--no-figures", action="store_true", help="skip the comparison tables and figures")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo."""
    from zeroshot.demo import DEMO_STRATEGIES, run_demo

    run_demo(
        args.out,
        cases=args.cases,
        seed=args.seed,
        models=args.model,
        strategies=tuple(args.strategy or DEMO_STRATEGIES),
        device=args.device,
        image_size=args.image_size,
        workers=args.workers,
        figures=not args.no_figures,
    )
    return 0
