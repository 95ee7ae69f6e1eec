"""Run directories: where each piece of a run lives, written so that a kill at any moment loses nothing finished.

A run directory holds::

    run.json                 provenance and the identity of everything computed (see config.py)
    run.lock                 held (flock) while a process writes to the run
    store/                   every row (with its per-slice table) and prompt set: an append-only log per writer,
                             compacted into Parquet parts (zeroshot.store; docs/run-store.md)
    predictions/<seq>/<case>/<model>/<strategy>/seed<k>[/round<r>].nii.gz   with --save-pred; overlays the input
    logs/errors.log          tracebacks of failed rows
    results.csv, results.parquet, failures.csv, slices.parquet   consolidated at the end of a run (tables.py)

The store *is* the run; the tables are derived from it and can be rebuilt at any time (``zeroshot merge``). A run
written before the store (``rows/`` and ``prompts/`` with one JSON file each) is refused until ``zeroshot migrate``
converts it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zeroshot.atomic import write_atomic
from zeroshot.errors import ConfigError
from zeroshot.store.paths import LEGACY_PROMPTS, LEGACY_ROWS, key_parts, path_component
from zeroshot.store.records import PromptKey, RowKey, RowRecord, json_default
from zeroshot.store.store import KeySet, RunStore

if TYPE_CHECKING:
    from zeroshot.prompts.types import VolumePrompts

__all__ = ["RowKey", "RunDir", "path_component", "read_json", "write_atomic", "write_json"]

RUN_JSON = "run.json"
LOCK_NAME = "run.lock"
PREDICTIONS = "predictions"
LOGS = "logs"


def write_json(path: str | Path, document: Any) -> Path:
    """Write a JSON document atomically (NaN and infinity as the ``NaN``/``Infinity`` tokens Python reads back)."""
    return write_atomic(path, json.dumps(document, indent=1, sort_keys=False, default=json_default) + "\n")


def read_json(path: str | Path) -> Any:
    """Read a JSON document written by :func:`write_json`; a corrupt file is an error that names it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc}); the file was not written by zeroshot") from exc


class RunDir:
    """The files of one run directory (see the module docstring for the layout).

    Parameters
    ----------
    root : path
        The run directory; created on the first write.
    session : int
        The invocation writing to it (orders its log segments after those of earlier invocations).
    """

    def __init__(self, root: str | Path, *, session: int = 0) -> None:
        self.root = Path(root)
        self.store = RunStore(self.root, session=session)

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    @property
    def manifest_path(self) -> Path:
        """``run.json``."""
        return self.root / RUN_JSON

    def read_manifest(self) -> dict[str, Any] | None:
        """The parsed ``run.json``, or ``None`` for a directory that holds no run yet."""
        return read_json(self.manifest_path) if self.manifest_path.is_file() else None

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Replace ``run.json`` atomically."""
        write_json(self.manifest_path, manifest)

    def check_layout(self) -> None:
        """Refuse a run written before the store (``rows/``, ``prompts/``), naming the command that converts it.

        Raises
        ------
        ConfigError
            If the directory holds the layout before the store.
        """
        if (self.root / LEGACY_ROWS).is_dir() or (self.root / LEGACY_PROMPTS).is_dir():
            raise ConfigError(
                f"{self.root}: a run in the layout before the run store (one file per row under rows/ and per "
                f"prompt set under prompts/); convert it once with `zeroshot migrate {self.root}`, then resume, "
                "merge or rebuild it"
            )

    def prediction_path(self, key: RowKey) -> Path:
        """Where the predicted mask of ``key`` is written with ``--save-pred``."""
        *folders, leaf = key_parts(key)
        return self.root.joinpath(PREDICTIONS, *folders, f"{leaf}.nii.gz")

    def done_keys(self) -> KeySet:
        """The keys of every row present."""
        return self.store.done_keys()

    def write_row(self, record: RowRecord) -> None:
        """Append one finished row to the store."""
        self.store.append_row(record)

    def stored_prompts(self, key: PromptKey) -> str | None:
        """The JSON of the prompt set ``key`` made earlier, or ``None``."""
        return self.store.prompts(key)

    def prompt_set(self, key: PromptKey) -> VolumePrompts | None:
        """The prompt set ``key`` made earlier, or ``None``.

        Its mask prompts are inline; a run written before they were (its JSON names PNG files) still reads them
        from :meth:`prompt_mask_dir`, so such a run resumes with the prompts it made.

        Raises
        ------
        PromptError
            If the stored prompts are damaged (a mask that does not match its digest, a mask file gone).
        """
        from zeroshot.prompts.serialise import prompts_from_json

        text = self.store.prompts(key)
        return None if text is None else prompts_from_json(text, mask_dir=self.prompt_mask_dir(key))

    def write_prompts(self, key: PromptKey, text: str) -> None:
        """Store the JSON of a prompt set (:func:`~zeroshot.prompts.serialise.prompts_to_json`: masks inline)."""
        self.store.append_prompts(key, text)

    def prompt_mask_dir(self, key: PromptKey) -> Path:
        """Where a run written before mask prompts were stored inline keeps those of ``key`` (PNG files)."""
        return self.store.prompt_mask_dir(key)

    def remove_temporaries(self) -> int:
        """Delete temporary files a killed writer left behind (hidden ``.*.tmp*`` files); return how many.

        Call only while holding :meth:`lock`: then no other process is writing to the run.
        """
        removed = 0
        for folder in (self.root, self.store.folder, self.root / PREDICTIONS):
            if not folder.is_dir():
                continue
            candidates = folder.glob(".*.tmp*") if folder == self.root else folder.rglob(".*.tmp*")
            for path in candidates:
                if path.is_file():
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed

    def log_failure(self, key: RowKey, error: BaseException) -> None:
        """Append the traceback of a failed row to ``logs/errors.log`` (one write per failure)."""
        path = self.root / LOGS / "errors.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(traceback.format_exception(error))
        header = f"--- {key.describe()}\n"
        with open(path, "a") as handle:
            handle.write(header + text)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold ``run.lock`` while writing to the run; a second writer is refused with a clear message.

        The lock is an ``flock`` that the kernel releases when the holder exits, even by ``kill -9``, so a
        killed run never leaves a stale lock behind.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / LOCK_NAME
        handle = open(path, "a+")  # held until the context ends
        try:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise ConfigError(
                    f"{self.root}: another zeroshot process is writing to this run ({holder}); wait for it, or "
                    "give each concurrent job (e.g. each --shard) its own --out and combine them with "
                    "`zeroshot merge`"
                ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
            handle.flush()
            yield
        finally:
            handle.close()
