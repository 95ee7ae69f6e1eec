"""The Ray executor: cases spread over a cluster, one model per worker, kept loaded between cases.

Each worker is a Ray actor that builds the model once (one GPU each where the cluster has GPUs) and then takes
whole cases: it reads the case, makes or loads its prompts, segments it under every strategy and seed in one
session, scores the predictions and appends the rows to a log segment of its own in the run's store, with the same
functions as the local executor, so results are identical; the driver compacts the actors' segments when the model
is done. The run directory must therefore be on a file system every node sees (as for any shared cluster job).
Only the driver writes ``run.json``: it checks that
every actor built the same model (same ``describe()`` identity, so a node with another checkpoint is caught).

Ray is an optional dependency (``pip install 'zeroshot[ray]'``). ``ray.init()`` connects to the cluster named by
``RAY_ADDRESS`` or, without one, starts a local Ray on this machine.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

from zeroshot.errors import ConfigError
from zeroshot.runner.config import model_identity
from zeroshot.runner.executors import CaseJob, Progress, RowScorer, RunContext
from zeroshot.runner.work import predict_case, read_case, release_device_memory
from zeroshot.store import RowRecord

__all__ = ["CaseWorker", "RayExecutor"]


def _record_in_driver_only(name: str, description: Mapping[str, Any]) -> None:
    raise RuntimeError("run.json is written by the driver only")  # pragma: no cover - never called in actors


class CaseWorker:
    """What a Ray actor holds: one loaded model and the context to make rows (usable without Ray, for tests).

    Parameters
    ----------
    context : RunContext
        The run's context (its ``record_model`` is not used: only the driver writes ``run.json``).
    model : str
        The model to build.
    """

    def __init__(self, context: RunContext, model: str) -> None:
        self._context = dataclasses.replace(context, record_model=_record_in_driver_only)
        self._segmenter = context.build(model)

    def describe(self) -> dict[str, Any]:
        """The model's ``describe()``."""
        return dict(self._segmenter.describe())

    def run(self, job: CaseJob) -> list[RowRecord]:
        """Make and write every row of one case job (durably: its log segment is synced); return the row records."""
        context = self._context
        records: list[RowRecord] = []
        inputs = read_case(
            job.case, job.tasks, context.strategies, context.rundir, label=context.label, coarse_dir=context.coarse_dir
        )
        with RowScorer(context, workers=0, on_row=records.append) as scorer:
            predictions = predict_case(
                self._segmenter,
                inputs,
                job.keys,
                clicks=context.clicks,
                starts=job.starts,
                batch_prompts=context.batch_prompts,
            )
            for prediction in predictions:
                scorer.submit(prediction, inputs)
        context.rundir.store.sync()
        return records

    def close(self) -> None:
        """Release the model's memory."""
        self._segmenter = None
        release_device_memory()


class RayExecutor:
    """Run a model's case jobs on Ray actors.

    Parameters
    ----------
    workers : int
        Actors; 0 uses one per GPU of the cluster, or (without GPUs, or with ``device="cpu"``) one per two CPUs.
    device : str
        The run's device: ``cpu`` never asks Ray for GPUs.
    address : str or None
        Ray cluster address; ``None`` uses ``RAY_ADDRESS`` or starts a local Ray.
    """

    def __init__(self, workers: int = 0, *, device: str = "auto", address: str | None = None) -> None:
        self.workers = workers
        self.device = device
        self.address = address

    def run_model(self, model: str, jobs: Sequence[CaseJob], context: RunContext, progress: Progress) -> None:
        """Start the actors, check they built the same model, record it, and stream the jobs through them."""
        ray = _import_ray()
        if not ray.is_initialized():
            ray.init(address=self.address or os.environ.get("RAY_ADDRESS"), include_dashboard=False)
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0)) if not self.device.startswith("cpu") else 0
        count = self.workers or (gpus if gpus else max(1, int(resources.get("CPU", 1)) // 2))
        count = max(1, min(count, len(jobs)))
        actor_class = ray.remote(num_cpus=1, num_gpus=1 if gpus else 0)(CaseWorker)
        actors = [actor_class.remote(context, model) for _ in range(count)]
        try:
            descriptions = ray.get([actor.describe.remote() for actor in actors])
            identities = [model_identity(d) for d in descriptions]
            if any(identity != identities[0] for identity in identities[1:]):
                raise ConfigError(
                    f"model {model!r}: the Ray workers built different models (e.g. another checkpoint on one "
                    "node); every node must hold the same weights and configuration"
                )
            context.record_model(model, descriptions[0])
            pool = ray.util.ActorPool(actors)
            for records in pool.map_unordered(lambda actor, job: actor.run.remote(job), list(jobs)):
                for record in records:
                    progress.row(record)
                progress.case_done()
        finally:
            for actor in actors:
                ray.kill(actor)


def _import_ray() -> Any:
    try:
        import ray
        import ray.util
    except ImportError as exc:
        raise ConfigError(
            "--executor ray needs Ray, an optional dependency: pip install 'zeroshot[ray]' (or 'ray[default]')"
        ) from exc
    return ray
