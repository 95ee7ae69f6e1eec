"""The ``zeroshot`` command line: one module per subcommand, each parsing arguments and calling one function.

Each module in :data:`COMMANDS` defines ``register(subparsers)``, which adds its parser and sets ``func`` to a
callable taking the parsed namespace and returning an exit code. Errors the user can act on
(:class:`~zeroshot.errors.ZeroshotError`) are printed without a traceback and exit with status 2; notices
(:class:`~zeroshot.errors.ZeroshotWarning`) are printed as one ``zeroshot COMMAND: note: ...`` line each.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import warnings
from collections.abc import Iterator, Sequence

from zeroshot import __version__
from zeroshot.errors import ZeroshotError, ZeroshotWarning

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
    "migrate",
    "report",
    "demo",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="zeroshot",
        description=(
            "Zero-shot evaluation of segmentation foundation models (SAM2.x, MedSAM2, SAM 3, nnInteractive) on 3D "
            "pancreas MRI across sequences (T1, T2, opposed-phase). Run `zeroshot demo` for a complete example on "
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
        with notes_as_lines(args.command):
            return int(args.func(args) or 0)
    except ZeroshotError as exc:
        print(f"zeroshot {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"zeroshot {args.command}: interrupted", file=sys.stderr)
        return 130


@contextlib.contextmanager
def notes_as_lines(command: str) -> Iterator[None]:
    """Print each :class:`ZeroshotWarning` raised inside as one ``zeroshot COMMAND: note: ...`` line on stderr."""
    with warnings.catch_warnings():  # restores the filters and showwarning on the way out
        warnings.simplefilter("default", ZeroshotWarning)
        previous = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, ZeroshotWarning):
                print(f"zeroshot {command}: note: {message}", file=sys.stderr)
            else:
                previous(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
