"""The run store: the rows and prompts of a run in an append-only log per writer, compacted into Parquet parts.

Modules: :mod:`~zeroshot.store.schema` (the columns of the result tables), :mod:`~zeroshot.store.records`
(row and prompt identities, row records), :mod:`~zeroshot.store.log` (segments), :mod:`~zeroshot.store.parts`
(compaction), :mod:`~zeroshot.store.store` (:class:`RunStore`), :mod:`~zeroshot.store.tables` (:class:`RunTables`),
:mod:`~zeroshot.store.paths` (path components, the layout before the store) and :mod:`~zeroshot.store.migrate`
(``zeroshot migrate``). ``docs/run-store.md`` describes the layout and what a kill at each instant does.
"""

from zeroshot.store.records import PromptKey, RowKey, RowRecord
from zeroshot.store.store import KeySet, RunStore
from zeroshot.store.tables import RunTables, build_tables

__all__ = ["KeySet", "PromptKey", "RowKey", "RowRecord", "RunStore", "RunTables", "build_tables"]
