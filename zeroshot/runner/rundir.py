"""Run directories: where each piece of a run lives, written so that a kill at any moment loses nothing finished.

A run directory holds::

    run.json                                   provenance and the identity of everything computed (see config.py)
    run.lock                                   held (flock) while a process writes to the run
    prompts/<seq>/<case>/<strategy>/seed<k>.json          prompts, shared by every model
    predictions/<seq>/<case>/<model>/<strategy>/seed<k>[/round<r>].nii.gz   with --save-pred; overlays the input
    rows/<seq>/<case>/<model>/<strategy>/seed<k>.json     one result row and its per-slice table
    rows/<seq>/<case>/<model>/<strategy>/seed<k>/round<r>.json   the same per round of an interactive run
    logs/errors.log                            tracebacks of failed rows
    results.csv, results.parquet, failures.csv, slices.parquet   consolidated at the end of a run (tables.py)

Every file is written to a temporary name in its folder and renamed (``os.replace`` is atomic on POSIX), so a row
file exists only when its row is complete, and a prediction before its row. The row files *are* the run; the
tables are derived from them and can be rebuilt at any time (``zeroshot merge``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import json
import os
import socket
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from zeroshot.atomic import write_atomic
from zeroshot.errors import ConfigError

__all__ = ["RowKey", "RunDir", "read_json", "write_atomic", "write_json"]

RUN_JSON = "run.json"
LOCK_NAME = "run.lock"
ROWS = "rows"
PROMPTS = "prompts"
PREDICTIONS = "predictions"
LOGS = "logs"
_SEED_PREFIX = "seed"
_ROUND_PREFIX = "round"


@functools.total_ordering
@dataclass(frozen=True)
class RowKey:
    """The identity of one result row: one case under one model, prompt strategy and seed (and click round).

    ``round`` is ``None`` in a run without corrective clicks; in an interactive run (``zeroshot eval --clicks``)
    it is the round of the row (0: the initial prompts alone), and a key with ``round=None`` names the whole
    curve. Sorting keys sorts rows the way result tables list them (a curve before its rounds).
    """

    sequence: str
    case_id: str
    model: str
    strategy: str
    seed: int
    round: int | None = None

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, RowKey):
            return NotImplemented
        return self._order() < other._order()

    def _order(self) -> tuple[str, str, str, str, int, int]:
        return (
            self.sequence,
            self.case_id,
            self.model,
            self.strategy,
            self.seed,
            -1 if self.round is None else self.round,
        )

    @property
    def case_key(self) -> str:
        """``sequence/case_id``, as :attr:`zeroshot.datasets.Case.key`."""
        return f"{self.sequence}/{self.case_id}"

    @property
    def curve(self) -> RowKey:
        """The key of the whole click curve this row belongs to (``round=None``)."""
        return dataclasses.replace(self, round=None)

    def at_round(self, round_index: int) -> RowKey:
        """The key of round ``round_index`` of this key's curve."""
        return dataclasses.replace(self, round=round_index)

    def describe(self) -> str:
        """The key in words, for messages and logs."""
        text = f"{self.case_key} model={self.model} strategy={self.strategy} seed={self.seed}"
        return text if self.round is None else f"{text} round={self.round}"

    def parts(self) -> tuple[str, ...]:
        """Path components of the row below ``rows/`` (without the ``.json`` suffix)."""
        parts = (
            path_component(self.sequence),
            path_component(self.case_id),
            path_component(self.model),
            path_component(self.strategy),
            f"{_SEED_PREFIX}{self.seed}",
        )
        return parts if self.round is None else (*parts, f"{_ROUND_PREFIX}{self.round}")


def path_component(name: str) -> str:
    """Encode a name (model, strategy, ...) as one safe, reversible path component.

    Characters other than letters, digits and ``._+-=`` are percent-encoded (``random:sam2@128`` becomes
    ``random%3Asam2%40128``); a leading dot is encoded too, so no name can be hidden, ``.`` or ``..``.
    """
    encoded = quote(name, safe="._+-=")
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]
    return encoded


def write_json(path: str | Path, document: Any) -> Path:
    """Write a JSON document atomically (NaN and infinity as the ``NaN``/``Infinity`` tokens Python reads back)."""
    return write_atomic(path, json.dumps(document, indent=1, sort_keys=False, default=_json_default) + "\n")


def read_json(path: str | Path) -> Any:
    """Read a JSON document written by :func:`write_json`; a corrupt file is an error that names it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc}); the file was not written by zeroshot") from exc


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays, paths and sets appear in describe() dicts and segmentation infos. Anything else is
    # recorded as its text: a days-long run must not stop because a model reported an odd object in its info.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)


class RunDir:
    """The files of one run directory (see the module docstring for the layout).

    Parameters
    ----------
    root : path
        The run directory; created on the first write.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

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

    def row_path(self, key: RowKey) -> Path:
        """Where the row of ``key`` is stored."""
        *folders, leaf = key.parts()
        return self.root.joinpath(ROWS, *folders, f"{leaf}.json")

    def prompt_path(self, sequence: str, case_id: str, strategy: str, seed: int) -> Path:
        """Where the prompts of one case, strategy and seed are cached (shared by every model)."""
        return self.root.joinpath(
            PROMPTS,
            path_component(sequence),
            path_component(case_id),
            path_component(strategy),
            f"{_SEED_PREFIX}{seed}.json",
        )

    def prediction_path(self, key: RowKey) -> Path:
        """Where the predicted mask of ``key`` is written with ``--save-pred``."""
        *folders, leaf = key.parts()
        return self.root.joinpath(PREDICTIONS, *folders, f"{leaf}.nii.gz")

    def row_files(self) -> list[tuple[RowKey, Path]]:
        """Every complete row file with its key, sorted by key (rows are written atomically: present means done)."""
        rows = self.root / ROWS
        if not rows.is_dir():
            return []
        found = [(key, p) for p in rows.rglob("*.json") if (key := self._key_from_path(p)) is not None]
        return sorted(found)

    def done_keys(self) -> set[RowKey]:
        """The keys of every row present."""
        return {key for key, _ in self.row_files()}

    def row_paths(self) -> list[Path]:
        """Every row file, sorted by row key."""
        return [path for _, path in self.row_files()]

    def remove_temporaries(self) -> int:
        """Delete temporary files a killed writer left behind (hidden ``.*.tmp*`` files); return how many.

        Call only while holding :meth:`lock`: then no other process is writing to the run.
        """
        removed = 0
        for folder in (self.root, self.root / ROWS, self.root / PROMPTS, self.root / PREDICTIONS):
            if not folder.is_dir():
                continue
            candidates = folder.glob(".*.tmp*") if folder == self.root else folder.rglob(".*.tmp*")
            for path in candidates:
                if path.is_file():
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed

    def write_row(self, key: RowKey, record: dict[str, Any]) -> Path:
        """Write one row record (``{"row": {...}, "slices": {...}}``) atomically."""
        return write_json(self.row_path(key), record)

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

    def _key_from_path(self, path: Path) -> RowKey | None:
        """The key of a row file, or ``None`` for anything else (a hidden temporary, a stray file)."""
        try:
            parts = path.relative_to(self.root / ROWS).parts
        except ValueError:
            return None
        if parts[-1].startswith(".") or not parts[-1].endswith(".json"):
            return None
        *names, leaf = (*parts[:-1], parts[-1][: -len(".json")])
        round_index = None
        if len(names) == 5:  # .../seed<k>/round<r>.json
            round_index = _number_after(_ROUND_PREFIX, leaf)
            *names, leaf = names
            if round_index is None:
                return None
        seed = _number_after(_SEED_PREFIX, leaf)
        if len(names) != 4 or seed is None:
            return None
        sequence, case_id, model, strategy = (unquote(name) for name in names)
        return RowKey(sequence, case_id, model, strategy, seed, round_index)


def _number_after(prefix: str, name: str) -> int | None:
    text = name[len(prefix) :] if name.startswith(prefix) else ""
    return int(text) if text.isascii() and text.isdigit() else None
