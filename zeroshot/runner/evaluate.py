"""``zeroshot eval``: evaluate models on cases under prompt strategies and seeds, resumably, into a run directory.

One call does, in order: select the cases (and this shard's part of them), load the strategies, fingerprint the
case files, open the run directory (refusing a conflicting configuration, see :mod:`zeroshot.runner.config`),
list the rows still missing, and for each model with missing rows build it once and let the executor make them.
The tables are rebuilt from the run's store at the end. A second call with the same arguments finds every row
present, builds no model and only rebuilds the tables.

With corrective clicks (``EvalConfig.clicks``) each case x model x strategy x seed is a *curve* of rows, rounds 0
to ``rounds``. A curve whose rows stop early (a killed run, or a budget raised since) resumes after its last row
of the unbroken run from round 0: the clicks recorded in that row rebuild its state
(:func:`zeroshot.interactive.replay`), and the rounds after it are computed without touching any row already
written. A curve that ended with a failed round is finished (``retry_failed`` computes that round again).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import json
import math
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from zeroshot.datasets import Case, discover, label_file_notice, select
from zeroshot.errors import ConfigError, ZeroshotError, ZeroshotWarning
from zeroshot.interactive import clicks_from_records
from zeroshot.prompts.sources import check_source_label
from zeroshot.runner.config import (
    MANIFEST_FORMAT,
    EvalConfig,
    case_identity,
    file_sha256,
    model_identity,
    now_utc,
    provenance,
    strategy_identity,
)
from zeroshot.runner.executors import CaseJob, Executor, LocalExecutor, RunContext
from zeroshot.runner.identity import RunIdentity
from zeroshot.runner.rundir import RowKey, RunDir
from zeroshot.runner.tables import RunTables, write_tables
from zeroshot.runner.work import CurveStart
from zeroshot.store import KeySet, RowRecord
from zeroshot.store.store import KEY_COLUMNS
from zeroshot.structure import find_dataset_json

__all__ = ["RunSummary", "load_strategies_for_run", "plan_curves", "plan_jobs", "run_eval", "select_cases"]

#: Threads that hash case files (hashing releases the GIL; reading is I/O bound).
HASH_THREADS = 4


@dataclass(frozen=True, eq=False)
class RunSummary:
    """What a call of :func:`run_eval` did.

    Attributes
    ----------
    out : Path
        The run directory.
    rows_selected : int
        Rows of this call's selection (cases x models x strategies x seeds, x rounds + 1 with clicks).
    rows_computed : int
        Rows made by this call.
    rows_failed : int
        Failed rows among the selection (made now or before).
    tables : RunTables
        The run's consolidated tables (every row of the directory, also those of other selections).
    """

    out: Path
    rows_selected: int
    rows_computed: int
    rows_failed: int
    tables: RunTables

    @property
    def results(self) -> pd.DataFrame:
        """The consolidated results table."""
        return self.tables.results


def select_cases(config: EvalConfig) -> list[Case]:
    """The cases of ``config``'s selection (and shard), sorted by key."""
    cases = discover(config.data, layout=config.layout)
    cases = select(
        cases,
        sequences=config.sequences or None,
        centers=config.centers or None,
        splits=config.splits or None,
        case_ids=config.case_ids or None,
    )
    return config.shard.select(cases) if config.shard else sorted(cases, key=lambda c: c.key)


def load_strategies_for_run(specs: Sequence[str]) -> dict[str, Any]:
    """Load the strategies (a sweep file gives several), by name in the order given; names must be unique."""
    from zeroshot.prompts.strategy import load_strategies

    strategies: dict[str, Any] = {}
    for spec in specs:
        for strategy in load_strategies(spec):
            if strategy.name in strategies:
                raise ConfigError(f"--strategy {spec}: strategy name {strategy.name!r} is given twice")
            strategies[strategy.name] = strategy
    return strategies


def plan_jobs(
    cases: Sequence[Case], model: str, strategies: Sequence[str], seeds: Sequence[int], done: KeySet
) -> list[CaseJob]:
    """The case jobs of one model: for each case, the (strategy, seed) rows not yet ``done``."""
    present = done.tuples  # plain tuples: a million lookups without making a RowKey for each
    jobs = []
    for case in cases:
        keys = tuple(
            RowKey(case.sequence, case.case_id, model, strategy, seed)
            for strategy in strategies
            for seed in seeds
            if (case.sequence, case.case_id, model, strategy, seed, None) not in present
        )
        if keys:
            jobs.append(CaseJob(case, keys))
    return jobs


def plan_curves(
    cases: Sequence[Case],
    model: str,
    strategies: Sequence[str],
    seeds: Sequence[int],
    rundir: RunDir,
    *,
    rounds: int,
    retry_failed: bool = False,
) -> list[CaseJob]:
    """The case jobs of one model in an interactive run: the click curves with rounds still to make.

    A curve is finished when its rows (in ``rundir``'s store) run unbroken from round 0 to ``rounds``, or to a
    failed round (unless ``retry_failed``). Any other curve with rows resumes after the last row of that unbroken
    run (:class:`~zeroshot.runner.work.CurveStart`, with the clicks that row recorded); rows after a gap are kept.
    Only the rows a curve resumes from are read whole; the others by their keys alone.

    Raises
    ------
    ConfigError
        If a row that a curve resumes from has no readable clicks (a row not written by zeroshot).
    """
    written: dict[RowKey, set[int]] = {}
    for key in rundir.done_keys():
        if key.round is not None and key.model == model:
            written.setdefault(key.curve, set()).add(key.round)
    plans: dict[RowKey, int] = {}  # curve -> the last round of its unbroken run from round 0 (-1: none)
    for case in cases:
        for strategy in strategies:
            for seed in seeds:
                key = RowKey(case.sequence, case.case_id, model, strategy, seed)
                present = written.get(key, set())
                last = -1
                while last + 1 in present:
                    last += 1
                if last < 0 or last < rounds or retry_failed:
                    plans[key] = last
    rows = rundir.store.rows(key.at_round(last) for key, last in plans.items() if last >= 0)
    if retry_failed:  # a failed last round is made again, from the round before it
        retry = {key: last - 1 for key, last in plans.items() if last >= 0 and rows[key.at_round(last)].get("failed")}
        rows.update(rundir.store.rows(key.at_round(last) for key, last in retry.items() if last >= 0))
    jobs = []
    for case in cases:
        keys, starts = [], {}
        for strategy in strategies:
            for seed in seeds:
                key = RowKey(case.sequence, case.case_id, model, strategy, seed)
                if key not in plans:
                    continue  # complete (read by its keys alone)
                last = plans[key]
                if last < 0:
                    keys.append(key)
                    continue
                row = rows[key.at_round(last)]
                if row.get("failed"):
                    if not retry_failed:
                        continue
                    last -= 1
                    if last < 0:
                        keys.append(key)
                        continue
                    row = rows[key.at_round(last)]
                if last >= rounds:
                    continue
                keys.append(key)
                present = written.get(key, set())
                starts[key] = CurveStart(
                    last,
                    _recorded_clicks(row, rundir, key.at_round(last)),
                    frozenset(r for r in present if r > last + 1),
                )
        if keys:
            jobs.append(CaseJob(case, tuple(keys), starts))
    return jobs


def _recorded_clicks(row: Mapping[str, Any], rundir: RunDir, key: RowKey) -> tuple[Any, ...]:
    where = f"{rundir.root}: row {key.describe()}"
    try:
        records = json.loads(row["clicks"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: no readable 'clicks' column ({exc}); cannot resume this click curve") from exc
    try:
        return clicks_from_records(records)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def run_eval(
    config: EvalConfig,
    *,
    progress: bool | None = None,
    build: Callable[[str], Any] | None = None,
    executor: Executor | None = None,
) -> RunSummary:
    """Evaluate ``config`` into its run directory, resuming whatever an earlier call left undone.

    Parameters
    ----------
    config : EvalConfig
    progress : bool or None
        Show a progress bar (``None``: when stderr is a terminal).
    build : callable or None
        ``build(model_name) -> Segmenter``; default :func:`zeroshot.segmenters.build_segmenter` with the
        config's device, image size and model options.
    executor : Executor or None
        Default: the one ``config.executor`` names.

    Raises
    ------
    ConfigError
        A selection, strategy or option that cannot be used (a strategy whose ``source.label`` differs from the
        run's label), or a run directory holding a conflicting configuration (without ``new_run``).

    Warns
    -----
    ZeroshotWarning
        The default label on label files that hold several structures (:func:`zeroshot.structure.multi_label_notice`);
        box prompts covering less than :data:`zeroshot.prompts.generate.LOW_BOX_COVERAGE` of their structure.

    Notes
    -----
    With ``config.workers > 0`` scoring runs in processes started with ``spawn``; a script calling this function
    must then guard its entry point with ``if __name__ == "__main__":`` (as for any multiprocessing code).
    """
    cases = select_cases(config)
    strategies = load_strategies_for_run(config.strategies)
    structure = config.structure
    for strategy in strategies.values():
        check_source_label(strategy, structure.value)
    _notice_multi_label(config, cases)
    uses_coarse = any(getattr(s.source, "kind", None) == "coarse" for s in strategies.values())
    current = RunIdentity(
        fixed=config.fixed_identity(),
        cases=fingerprint_cases(cases, coarse_dir=config.coarse_dir if uses_coarse else None),
        strategies={name: strategy_identity(s) for name, s in strategies.items()},
        seeds=config.seeds,
        click_rounds=config.clicks.rounds if config.clicks is not None else None,
    )
    build = build or _registry_builder(config)
    executor = executor or _executor_for(config)
    rundir = RunDir(config.out)
    with contextlib.ExitStack() as locks:
        locks.enter_context(rundir.lock())
        rundir.check_layout()
        recorded = rundir.read_manifest()
        if recorded is not None:
            try:
                RunIdentity.from_json(recorded.get("identity")).check_compatible(current, where=f"{rundir.root}")
            except ConfigError:
                if not config.new_run:
                    raise
                _archive(rundir)  # the lock moves with the old directory; lock the new one
                locks.enter_context(rundir.lock())
                recorded = None
        return _run_locked(config, cases, strategies, current, recorded, rundir, build, executor, progress)


def _run_locked(
    config: EvalConfig,
    cases: list[Case],
    strategies: dict[str, Any],
    current: RunIdentity,
    recorded: dict[str, Any] | None,
    rundir: RunDir,
    build: Callable[[str], Any],
    executor: Executor,
    progress: bool | None,
) -> RunSummary:
    rundir.remove_temporaries()
    rundir.store.compact_all()  # segments of killed writers; a torn last record is dropped here
    manifest = _open_manifest(config, current, recorded)
    invocation = manifest["invocations"][-1]
    rundir.store.session = len(manifest["invocations"])
    rundir.write_manifest(manifest)

    def record_model(name: str, description: Mapping[str, Any]) -> None:
        recorded = RunIdentity.from_json(manifest["identity"])
        model = RunIdentity(models={name: model_identity(description)})
        recorded.check_compatible(model, where=f"{rundir.root}")
        identity = recorded.union(model)
        manifest["identity"] = identity.to_json()
        manifest["config_sha256"] = identity.sha256()
        invocation["models"][name] = dict(description)
        rundir.write_manifest(manifest)

    plans = _plans(config, cases, list(strategies), rundir)
    context = RunContext(
        rundir=rundir,
        strategies=strategies,
        label=config.structure.value,
        tolerances_mm=tuple(config.tolerances_mm),
        save_pred=config.save_pred,
        build=build,
        record_model=record_model,
        coarse_dir=config.coarse_dir,
        clicks=config.clicks,
        batch_prompts=config.batch_prompts,
    )
    bar = _ProgressBar(sum(len(jobs) for jobs in plans.values()), enabled=progress)
    status = "finished"
    try:
        for model, jobs in plans.items():
            if jobs:
                executor.run_model(model, jobs, context, bar)
    except BaseException as exc:
        status = f"stopped ({type(exc).__name__})"
        raise
    finally:
        bar.close()
        rundir.store.close()  # this process's segment, rolled into parts
        invocation.update(ended=now_utc(), status=status, rows_computed=bar.rows)
        rundir.write_manifest(manifest)
    rundir.store.compact_all()  # the segments of Ray actors
    tables = write_tables(rundir)
    selected = _selected_rows(tables.results, config, cases, list(strategies))
    _warn_low_box_coverage(selected)
    rows_selected = len(cases) * len(config.models) * len(strategies) * len(config.seeds)
    if config.clicks is not None:
        rows_selected *= config.clicks.rounds + 1
    return RunSummary(Path(config.out), rows_selected, bar.rows, int(selected["failed"].sum()), tables)


def _plans(config: EvalConfig, cases: list[Case], strategies: list[str], rundir: RunDir) -> dict[str, list]:
    """Each model's jobs: the rows (or click curves) of the selection the run does not hold yet."""
    if config.clicks is None:
        done = rundir.done_keys()
        if config.retry_failed:
            done = done.without(_failed_keys(rundir))
        return {m: plan_jobs(cases, m, strategies, config.seeds, done) for m in config.models}
    return {
        m: plan_curves(
            cases, m, strategies, config.seeds, rundir, rounds=config.clicks.rounds, retry_failed=config.retry_failed
        )
        for m in config.models
    }


def _selected_rows(results: pd.DataFrame, config: EvalConfig, cases: list[Case], strategies: list[str]) -> pd.DataFrame:
    """The rows of the run that this invocation's selection asked for (a run may hold more)."""
    if results.empty:
        return results.assign(failed=pd.Series(dtype=bool)) if "failed" not in results else results
    selected = {(c.sequence, c.case_id) for c in cases}
    in_selection = pd.Series(
        [(s, c) in selected for s, c in zip(results["sequence"], results["case_id"], strict=True)],
        index=results.index,
    )
    return results[
        in_selection
        & results["model"].isin(config.models)
        & results["strategy"].isin(strategies)
        & results["seed"].isin(config.seeds)
        & (results["round"] <= config.clicks.rounds if config.clicks is not None else True)
    ]


def _open_manifest(config: EvalConfig, current: RunIdentity, recorded: dict[str, Any] | None) -> dict[str, Any]:
    identity = RunIdentity.from_json(recorded["identity"]).union(current) if recorded else current
    invocation = provenance()
    invocation.update(
        selection=config.selection(),
        structure={"label": config.structure.value, "name": config.structure.name, "given": config.structure.given},
        models_asked=list(config.models),
        strategies_asked=list(config.strategies),
        seeds=list(config.seeds),
        device=config.device,
        image_size=config.image_size,
        executor=config.executor,
        workers=config.workers,
        batch_prompts=config.batch_prompts,
        cases_in_flight=config.cases_in_flight,
        save_pred=config.save_pred,
        retry_failed=config.retry_failed,
        clicks=config.clicks.to_dict() if config.clicks is not None else None,
        models={},
        status="running",
    )
    earlier = [dict(i) for i in (recorded.get("invocations", []) if recorded else [])]
    for previous in earlier:
        if previous.get("status") == "running":  # we hold the lock, so that process is gone
            previous["status"] = "died (killed or crashed; its finished rows were kept)"
    return {
        "format": MANIFEST_FORMAT,
        "tool": "zeroshot",
        "created": recorded.get("created") if recorded else invocation["started"],
        "config_sha256": identity.sha256(),
        "identity": identity.to_json(),
        "invocations": [*earlier, invocation],
    }


def fingerprint_cases(cases: Sequence[Case], *, coarse_dir: Path | None = None) -> dict[str, dict[str, Any]]:
    """The identity of each case (file SHA-256s, center, split), keyed ``sequence/case_id``.

    A missing file gets ``null`` (the case fails when read, with the reason). With ``coarse_dir`` the case's
    coarse mask is fingerprinted too.
    """
    from zeroshot.prompts.sources import find_coarse_file

    def one(case: Case) -> tuple[str, dict[str, Any]]:
        image = _sha_or_none(case.image)
        label = _sha_or_none(case.label) if case.label is not None else None
        coarse = None
        if coarse_dir is not None:
            try:
                coarse = _sha_or_none(find_coarse_file(coarse_dir, case))
            except ZeroshotError:
                coarse = None
        return case.key, case_identity(case, image, label, coarse)

    with cf.ThreadPoolExecutor(HASH_THREADS) as pool:
        return dict(sorted(pool.map(one, cases)))


def _notice_multi_label(config: EvalConfig, cases: Sequence[Case]) -> None:
    """Warn once per run when the default label is scored on label files that hold several structures."""
    structure = config.structure
    if structure.given:
        return
    first = next((c.label for c in cases if c.label is not None), None)
    notice = label_file_notice(structure, first, dataset_json=find_dataset_json(config.data))
    if notice is not None:
        warnings.warn(notice, ZeroshotWarning, stacklevel=3)


def _warn_low_box_coverage(rows: pd.DataFrame) -> None:
    """Warn about box prompts that cover less than ``LOW_BOX_COVERAGE`` of their slice's structure."""
    from zeroshot.prompts.generate import LOW_BOX_COVERAGE

    if "box_coverage" not in rows.columns:
        return
    initial = rows.loc[rows["round"] == 0] if "round" in rows.columns else rows
    coverage = pd.to_numeric(initial["box_coverage"], errors="coerce")
    low = initial.loc[coverage < LOW_BOX_COVERAGE]
    if low.empty:
        return
    strategies = ", ".join(sorted(low["strategy"].astype(str).unique()))
    warnings.warn(
        f"{len(low)} of {int(coverage.notna().sum())} box prompt row(s) cover less than {LOW_BOX_COVERAGE:.0%} of the "
        f"structure on their slice (lowest {coverage.min():.0%}; strategies {strategies}): the box jitter or shift is "
        "too large for the structure; see the box_coverage column",
        ZeroshotWarning,
        stacklevel=4,
    )


def _sha_or_none(path: Path) -> str | None:
    try:
        return file_sha256(path)
    except OSError:
        return None


def _failed_keys(rundir: RunDir) -> list[RowKey]:
    keys = rundir.store.key_frame("failed")
    failed = keys.loc[keys["failed"].fillna(False).astype(bool)] if len(keys) else keys
    return [RowKey.from_tuple(values) for values in failed[list(KEY_COLUMNS)].itertuples(index=False)]


def _archive(rundir: RunDir) -> Path:
    """Move an existing run aside as ``<out>.previous-<UTC time>`` (never deleted)."""
    stamp = now_utc().replace(":", "").replace("+0000", "Z")
    target = rundir.root.with_name(f"{rundir.root.name}.previous-{stamp}")
    suffix = 1
    while target.exists():
        suffix += 1
        target = rundir.root.with_name(f"{rundir.root.name}.previous-{stamp}-{suffix}")
    rundir.root.rename(target)
    print(f"zeroshot eval: --new-run: moved the previous run to {target}", file=sys.stderr)
    return target


def _registry_builder(config: EvalConfig) -> Callable[[str], Any]:
    """Build models by registry name; ``--image-size`` goes to every model but the baselines and ``NAME@SIZE``."""

    def build(name: str) -> Any:
        from zeroshot.segmenters.registry import BASELINES, build_segmenter

        options = dict(config.model_options)
        if config.image_size is not None and name not in BASELINES and "@" not in name:
            options.setdefault("image_size", config.image_size)
        segmenter = build_segmenter(name, device=config.device, **options)
        # Rows score masks: a video model's probabilities would cost a float32 copy of every union and a sigmoid.
        # (Duck-typed: importing the video core would load torch for the baselines too.)
        masks_only = getattr(segmenter, "without_probabilities", None)
        return masks_only() if masks_only is not None else segmenter

    return build


def _executor_for(config: EvalConfig) -> Executor:
    if config.executor == "ray":
        from zeroshot.runner.ray_executor import RayExecutor

        return RayExecutor(workers=config.workers, device=config.device)
    return LocalExecutor(workers=config.workers, cases_in_flight=config.cases_in_flight)


class _ProgressBar:
    """A tqdm bar over case x model jobs, showing the running mean Dice of the rows made."""

    def __init__(self, total: int, *, enabled: bool | None) -> None:
        from tqdm import tqdm

        disable = (not sys.stderr.isatty()) if enabled is None else not enabled
        self._bar = tqdm(total=total, unit="case", desc="eval", disable=disable, dynamic_ncols=True)
        self.rows = 0
        self._dice_sum = 0.0
        self._dice_count = 0
        self._failed = 0

    def row(self, record: RowRecord) -> None:
        row = record.row
        self.rows += 1
        dice = row.get("dice")
        if row.get("failed"):
            self._failed += 1
        elif isinstance(dice, float) and math.isfinite(dice):
            self._dice_sum += dice
            self._dice_count += 1
        if self._dice_count:
            postfix = {"dice": f"{self._dice_sum / self._dice_count:.3f}"}
            if self._failed:
                postfix["failed"] = str(self._failed)
            self._bar.set_postfix(postfix, refresh=False)

    def case_done(self) -> None:
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()
