"""The values a run stores: row and prompt-set identities, and finished rows.

:class:`RowKey` identifies a result row, :class:`PromptKey` a prompt set, and :class:`RowRecord` is one finished
row with its per-slice table and its segmentation info.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from zeroshot.errors import ConfigError
from zeroshot.store.schema import SLICE_COLUMNS

__all__ = ["KeyTuple", "PromptKey", "RowKey", "RowRecord", "json_default"]

#: A row identity as a plain tuple ``(sequence, case_id, model, strategy, seed, round)`` (``round`` may be None):
#: what the store's indexes hold, so that a million of them are cheap to build and to look up.
KeyTuple = tuple[str, str, str, str, int, "int | None"]


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

    def astuple(self) -> KeyTuple:
        """The key as a :data:`KeyTuple`."""
        return (self.sequence, self.case_id, self.model, self.strategy, self.seed, self.round)

    @classmethod
    def from_tuple(cls, values: Sequence[Any]) -> RowKey:
        """The key of a :data:`KeyTuple` (or the ``key`` list of a log record)."""
        sequence, case_id, model, strategy, seed, round_index = values
        return cls(str(sequence), str(case_id), str(model), str(strategy), int(seed), _optional_int(round_index))

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> RowKey:
        """The key of a result row (its identity columns; ``round`` where the row has one)."""
        return cls(
            str(row["sequence"]),
            str(row["case_id"]),
            str(row["model"]),
            str(row["strategy"]),
            int(row["seed"]),
            _optional_int(row.get("round")),
        )


@dataclass(frozen=True)
class PromptKey:
    """The identity of one prompt set: prompts are shared by every model of a run."""

    sequence: str
    case_id: str
    strategy: str
    seed: int

    def astuple(self) -> tuple[str, str, str, int]:
        """The key as a plain tuple."""
        return (self.sequence, self.case_id, self.strategy, self.seed)


@dataclass(frozen=True, eq=False)
class RowRecord:
    """One finished row: its result-table row, its per-slice table and the segmenter's info, as stored.

    Attributes
    ----------
    key : RowKey
    row : mapping
        The row of ``results.csv`` (column -> value; JSON types: str, int, float incl. NaN/inf, bool, None).
    slices : mapping of str to sequence
        The per-slice table column by column (:data:`~zeroshot.store.schema.SLICE_COLUMNS`, equal lengths), or
        empty for a row without one (a failed row).
    info : mapping
        What the segmenter reported about the segmentation (JSON types), kept for provenance; no table reads it.

    Raises
    ------
    ConfigError
        If ``slices`` is neither empty nor exactly the slice columns of equal length.
    """

    key: RowKey
    row: Mapping[str, Any]
    slices: Mapping[str, Sequence[float]] = field(default_factory=dict)
    info: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "row", MappingProxyType(dict(self.row)))
        object.__setattr__(self, "info", MappingProxyType(dict(self.info)))
        slices = dict(self.slices)
        if slices:
            if tuple(slices) != SLICE_COLUMNS:
                raise ConfigError(
                    f"row {self.key.describe()}: per-slice table has columns {list(slices)}; expected "
                    f"{list(SLICE_COLUMNS)}"
                )
            lengths = {len(values) for values in slices.values()}
            if len(lengths) != 1:
                raise ConfigError(f"row {self.key.describe()}: per-slice columns differ in length ({sorted(lengths)})")
        object.__setattr__(self, "slices", MappingProxyType(slices))

    @property
    def n_slices(self) -> int:
        """Rows of the per-slice table."""
        return len(self.slices["z"]) if self.slices else 0

    @property
    def failed(self) -> bool:
        """Whether the row failed."""
        return bool(self.row.get("failed"))


def json_default(value: Any) -> Any:
    """JSON for what ``json.dumps`` cannot write: numpy values as lists/numbers, sets sorted, anything else as text.

    numpy scalars and arrays, paths and sets appear in describe() dicts and segmentation infos. Anything else is
    recorded as its text: a days-long run must not stop because a model reported an odd object in its info.
    """
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)


def plain_json(value: Any) -> Any:
    """``value`` as plain JSON types (a JSON round trip), as a record reads back from the store."""
    return json.loads(json.dumps(value, default=json_default))


def _optional_int(value: Any) -> int | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return int(value)
