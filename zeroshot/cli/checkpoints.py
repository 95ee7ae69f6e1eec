"""``zeroshot checkpoints``: list, download, verify and locate the named model weights of ``checkpoints.txt``."""

from __future__ import annotations

import argparse
from pathlib import Path

from zeroshot.errors import CheckpointError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``checkpoints`` subcommand and its four actions."""
    parser = subparsers.add_parser(
        "checkpoints",
        help="list, download, verify and locate model weights (SAM2.1, SAM2, MedSAM2, SAM 3, nnInteractive)",
        description=(
            "Model weights by name, from checkpoints.txt (or $ZEROSHOT_CHECKPOINTS), cached in $ZEROSHOT_HOME "
            "(default ~/.cache/zeroshot). Downloads resume after an interruption and are placed in the cache only "
            "when complete and their SHA-256 matches the list or, for entries without a published hash, the hash "
            "recorded by the first download (trust on first use). Loading re-checks the hash."
        ),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="every entry with its licence and cache state")
    listing.set_defaults(func=run_list)

    download = actions.add_parser("download", help="download, verify and cache entries")
    download.add_argument("names", nargs="+", metavar="NAME", help="entries of `zeroshot checkpoints list`")
    download.add_argument("--force", action="store_true", help="fetch again even if cached (still verified)")
    download.add_argument(
        "--retrust",
        action="store_true",
        help="forget the hash recorded on first use and trust the file downloaded now (publisher replaced it)",
    )
    download.add_argument(
        "--from",
        dest="source",
        type=Path,
        metavar="PATH",
        help="take the file from this local path instead of its URL (verified the same way; one NAME)",
    )
    download.add_argument("--quiet", action="store_true", help="no progress bar")
    download.set_defaults(func=run_download)

    verify = actions.add_parser("verify", help="re-hash cached entries (all cached ones by default)")
    verify.add_argument("names", nargs="*", metavar="NAME", help="entries to check (default: every cached one)")
    verify.set_defaults(func=run_verify)

    path = actions.add_parser("path", help="print the verified cached path of an entry")
    path.add_argument("name", metavar="NAME", help="an entry of `zeroshot checkpoints list`")
    path.set_defaults(func=run_path)


def run_list(args: argparse.Namespace) -> int:
    """Print one row per entry: name, backend, licence, where its hash comes from, cache state, URL."""
    from zeroshot.checkpoints import checkpoint_status, read_checkpoint_list

    rows = [("NAME", "BACKEND", "LICENCE", "HASH", "STATUS", "URL")]
    for entry in read_checkpoint_list().values():
        status = checkpoint_status(entry, rehash=False)
        origin = "pinned" if entry.sha256 else ("recorded" if status.expected_sha256 else "first use")
        rows.append((entry.name, entry.backend, entry.licence, origin, status.state, entry.url))
    _print_table(rows)
    print(
        "\nHASH: pinned = SHA-256 in the checkpoint list; recorded = recorded by the first download; first use = "
        "the first download will record it.\nSTATUS 'unchecked': changed or not hashed since the last "
        "verification; run `zeroshot checkpoints verify`."
    )
    return 0


def run_download(args: argparse.Namespace) -> int:
    """Download each named entry and print its SHA-256 and cached path."""
    from zeroshot.checkpoints import download, expected_sha256, find_entry, read_checkpoint_list

    if args.source is not None and len(args.names) != 1:
        raise CheckpointError(f"--from takes exactly one NAME, got {len(args.names)}: {' '.join(args.names)}")
    entries = read_checkpoint_list()
    for name in args.names:
        entry = find_entry(name, entries)
        known_before = expected_sha256(entry)[1] is not None and not args.retrust
        resolved = download(entry, source=args.source, force=args.force, retrust=args.retrust, progress=not args.quiet)
        how = (
            "pinned in the list"
            if entry.sha256
            else ("matches the recorded hash" if known_before else "recorded on first use")
        )
        print(f"{entry.name}: {resolved.sha256} ({how})  {resolved.path}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    """Re-hash entries; exit status 1 if any named or cached entry is missing or does not match."""
    from zeroshot.checkpoints import cached_path, checkpoint_status, find_entry, read_checkpoint_list

    entries = read_checkpoint_list()
    if args.names:
        chosen = [find_entry(name, entries) for name in args.names]
    else:
        chosen = [entry for entry in entries.values() if cached_path(entry).exists()]
        if not chosen:
            print("nothing cached yet: `zeroshot checkpoints download NAME`")
            return 0
    statuses = [checkpoint_status(entry) for entry in chosen]
    rows = [("NAME", "STATUS", "SHA256", "EXPECTED (FROM)")]
    for status in statuses:
        expected = f"{status.expected_sha256} ({status.hash_origin})" if status.expected_sha256 else "-"
        rows.append((status.entry.name, status.state, status.actual_sha256 or "-", expected))
    _print_table(rows)
    failed = sum(not status.verified for status in statuses)
    print(f"\n{len(statuses) - failed} verified, {failed} failed")
    return 1 if failed else 0


def run_path(args: argparse.Namespace) -> int:
    """Print the cached path of an entry after checking its hash."""
    from zeroshot.checkpoints import resolve_checkpoint

    print(resolve_checkpoint(args.name).path)
    return 0


def _print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1])
