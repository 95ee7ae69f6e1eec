"""Tables as the page shows them: formatted cells with their sort values, rows tagged for the filters.

A cell of a number carries its full value for sorting (``data-v``; empty for NaN, which sorts last either way) and
shows it rounded; a row carries one ``data-f-<filter>`` attribute per filter its table has a column for (values
joined by ``|`` where a row belongs to several, as a paired comparison to both its methods), so the page's script
(``report.js``) sorts and filters every table alike without knowing what it holds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

__all__ = ["FILTERS", "Cell", "HtmlTable", "Row", "format_number", "html_table"]

#: The filters of the page and the columns each one reads (the first a table has).
FILTERS = (
    ("sequence", ("sequence", "test_sequence")),
    ("model", ("model",)),
    ("strategy", ("strategy",)),
    ("center", ("center",)),
    ("metric", ("metric",)),
)
#: Where model and strategy sit in a paired table's method names (``model / strategy``).
_METHOD_PARTS = {"model": 0, "strategy": 1}


@dataclass(frozen=True)
class Cell:
    """A shown text and, for numbers, the value to sort by (``""`` for NaN)."""

    text: str
    sort: str | None = None


@dataclass(frozen=True)
class Row:
    """One table row: its cells and its filter values (``(filter, value)`` pairs)."""

    cells: tuple[Cell, ...]
    filters: tuple[tuple[str, str], ...]
    entry: str = ""


@dataclass(frozen=True)
class HtmlTable:
    """A sortable, filterable table: its id (the HTML anchor), caption, column names, whether each is numeric."""

    table_id: str
    title: str
    columns: tuple[str, ...]
    numeric: tuple[bool, ...]
    rows: tuple[Row, ...]
    download: str = ""


def format_number(value: float) -> Cell:
    """A number as shown (3 decimals, or 3 significant digits outside 0.001-1000) with its sort value."""
    if isinstance(value, bool):
        return Cell("yes" if value else "no")
    number = float(value)
    if math.isnan(number):
        return Cell("–", "")
    if math.isinf(number):
        return Cell("∞" if number > 0 else "-∞", "Infinity" if number > 0 else "-Infinity")
    if number == int(number) and abs(number) < 1e15 and isinstance(value, int):
        return Cell(str(int(number)), repr(number))
    text = f"{number:.3f}" if number == 0 or 0.001 <= abs(number) < 1000 else f"{number:.3g}"
    return Cell(text, repr(number))


def _cell(value: object) -> Cell:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Cell("–", "")
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalars
        value = value.item()
    if isinstance(value, (int, float)):  # bool too (an int): format_number writes it yes / no
        return format_number(value)
    return Cell(str(value))


def row_filters(columns: Sequence[str], values: Sequence[object]) -> tuple[tuple[str, str], ...]:
    """The ``(filter, value)`` pairs of one row of a table with these columns.

    A paired comparison (columns ``method_a``, ``method_b``: ``model / strategy``) belongs to both its methods:
    its model and strategy values are both methods', joined by ``|`` (the page's script matches either).
    """
    record = dict(zip(columns, values, strict=True))
    found = []
    for name, candidates in FILTERS:
        column = next((c for c in candidates if c in record), None)
        if column is not None:
            found.append((name, str(record[column])))
        elif name in _METHOD_PARTS and "method_a" in record and "method_b" in record:
            parts = [str(record[c]).split(" / ") for c in ("method_a", "method_b")]
            chosen = sorted({p[_METHOD_PARTS[name]] for p in parts if len(p) > _METHOD_PARTS[name]})
            if chosen:
                found.append((name, "|".join(chosen)))
    return tuple(found)


def html_table(table_id: str, title: str, frame: pd.DataFrame, *, download: str = "") -> HtmlTable:
    """A data frame as a page table (every column, in order)."""
    columns = tuple(str(c) for c in frame.columns)
    numeric = tuple(
        pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c]) for c in frame.columns
    )
    rows = []
    for values in frame.itertuples(index=False, name=None):
        rows.append(Row(cells=tuple(_cell(v) for v in values), filters=row_filters(columns, values)))
    return HtmlTable(table_id, title, columns, numeric, tuple(rows), download)
