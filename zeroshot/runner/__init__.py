"""The evaluation runner: run directories, resumable evaluation, sharding, merging, and executors (local, Ray).

Modules, in the order a run uses them: :mod:`~zeroshot.runner.config` (what a run is asked to do and what
identifies its results), :mod:`~zeroshot.runner.rundir` (where everything is written; rows and prompts go to
:mod:`zeroshot.store`),
:mod:`~zeroshot.runner.work` (one case: read, prompt, segment, make rows), :mod:`~zeroshot.runner.scoring`
(metrics and per-slice tables, in worker processes), :mod:`~zeroshot.runner.executors` (local pipeline) and
:mod:`~zeroshot.runner.ray_executor`, :mod:`~zeroshot.runner.evaluate` (``zeroshot eval``),
:mod:`~zeroshot.runner.tables` (consolidated tables) and :mod:`~zeroshot.runner.merge` (``zeroshot merge``).
"""

from zeroshot.runner.config import EvalConfig, Shard
from zeroshot.runner.evaluate import RunSummary, run_eval
from zeroshot.runner.merge import merge_runs
from zeroshot.runner.rundir import RowKey, RunDir
from zeroshot.runner.tables import RunTables, write_tables
from zeroshot.store.schema import TIMING_COLUMNS

__all__ = [
    "TIMING_COLUMNS",
    "EvalConfig",
    "RowKey",
    "RunDir",
    "RunSummary",
    "RunTables",
    "Shard",
    "merge_runs",
    "run_eval",
    "write_tables",
]
