"""The ``zeroshot`` command line: one module per subcommand, each parsing arguments and calling one function.

Each module in :data:`COMMANDS` defines ``register(subparsers)``, which adds its parser and sets ``func`` to a
callable taking the parsed namespace and returning an exit code. Errors the user can act on
(:class:`~zeroshot.errors.ZeroshotError`) are printed without a traceback and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from zeroshot import __version__
from zeroshot.errors import ZeroshotError

#: Subcommand modules under ``zeroshot.cli``, in the order ``--help`` lists them.
COMMANDS = (
    "phantom",
    "cases",
    "prompts",
    "score",
    "checkpoints",
    "compare",
    "figures",
    "eval",
    "merge",
    "demo",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="zeroshot",
        description=(
            "Zero-shot evaluation of segmentation foundation models (SAM2.x, MedSAM2) on 3D pancreas MRI "
            "across sequences (T1, T2, opposed-phase). Run `zeroshot demo` for a complete example on "
            "synthetic data, or `zeroshot COMMAND --help` for one command."
        ),
    )
    parser.add_argument("--version", action="version", version=f"zeroshot {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"zeroshot.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``zeroshot`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ZeroshotError as exc:
        print(f"zeroshot {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"zeroshot {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
