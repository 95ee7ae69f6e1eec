"""Named model weights: the list behind ``checkpoints.txt``; download, verify, cache and load them safely.

Every entry of the checkpoint list names a backend, a config, the weights' licence, a URL and, where a source
for it was found, the file's SHA-256. ``download`` fetches an entry into the cache (``$ZEROSHOT_HOME``, default
``~/.cache/zeroshot``) with a progress bar, resuming interrupted HTTP transfers, and places it only once it is
complete and verified. ``resolve_checkpoint`` and ``load_checkpoint`` re-hash before every load and load with
``torch.load(..., weights_only=True)``.

Trust on first use: for an entry without a published SHA-256 (``-`` in the list), the first complete download
is trusted and its hash recorded in ``$ZEROSHOT_HOME/checkpoints.lock``; every later download and load of that
entry must match the recorded hash, so a file replaced on the server or altered on disk is refused.
``zeroshot checkpoints download --retrust NAME`` forgets the recorded hash when a publisher replaced a file on
purpose. See docs/checkpoints.md.
"""

from zeroshot.checkpoints.cache import (
    ENV_HOME,
    CheckpointStatus,
    ResolvedCheckpoint,
    cache_home,
    cached_path,
    checkpoint_status,
    expected_sha256,
    forget_recorded_sha256,
    load_checkpoint,
    lock_path,
    recorded_sha256,
    resolve_checkpoint,
    sha256_of,
)
from zeroshot.checkpoints.listing import (
    ENV_CHECKPOINT_LIST,
    CheckpointEntry,
    HubLocation,
    default_list_path,
    find_entry,
    parse_checkpoint_list,
    read_checkpoint_list,
)
from zeroshot.checkpoints.transfer import download

__all__ = [
    "ENV_CHECKPOINT_LIST",
    "ENV_HOME",
    "CheckpointEntry",
    "CheckpointStatus",
    "HubLocation",
    "ResolvedCheckpoint",
    "cache_home",
    "cached_path",
    "checkpoint_status",
    "default_list_path",
    "download",
    "expected_sha256",
    "find_entry",
    "forget_recorded_sha256",
    "load_checkpoint",
    "lock_path",
    "parse_checkpoint_list",
    "read_checkpoint_list",
    "recorded_sha256",
    "resolve_checkpoint",
    "sha256_of",
]
