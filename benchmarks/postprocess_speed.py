"""The model's thread with and without the CPU post-processing: ``zeroshot eval`` in line vs deferred to the workers.

MedSAM2's recipe keeps the largest 3D connected component of every mask (SciPy, on the CPU). Done where the mask is
made it runs on the model's thread, once per prompt set, while the device waits; ``zeroshot eval`` with scoring
processes defers it to them (``Segmentation.postprocessing``). This script runs the same eval twice, side by side
on the same phantom volumes (CrossPan-like sizes by default, or ``--slices``/``--width``), random MedSAM2 weights,
3 strategies, ``--workers`` scoring processes:

* ``in-line``: post-processing on the model's thread (the deferral switched off, as before issue 14);
* ``deferred``: post-processing in the scoring processes (the default of ``zeroshot eval``).

It prints, per volume, the seconds the model's thread spent finishing segmentations (threshold, probabilities,
post-processing: ``VideoSession._finish``) and post-processing, its seconds in all (``seconds_prepare`` +
``seconds_segment`` of the volume's rows: on a busy CPU the model's own time varies more than the difference),
and each run's wall time, and checks that the two runs' rows are equal. Random weights: speed only, never accuracy.

    .venv/bin/python benchmarks/postprocess_speed.py --device cpu --cases 4 --image-size 128 --slices 48 --width 320
    python benchmarks/postprocess_speed.py --device cuda --cases 12        # GPU: realistic sizes, MedSAM2 at 512 px
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")  # SAM2's predictor draws a progress bar per pass

import pandas as pd
import torch
from sweep_speed import STRATEGIES, add_sweep_arguments, sweep_config, write_dataset

from zeroshot.runner import run_eval
from zeroshot.runner.executors import RowScorer
from zeroshot.segmenters.postprocess import PostProcessing
from zeroshot.segmenters.video_core import VideoSession
from zeroshot.store.schema import TIMING_COLUMNS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_sweep_arguments(parser, cases=12)  # the model's recipe (random:medsam2) keeps the largest component
    return parser.parse_args(argv)


class ModelThreadClock:
    """Time, in this process (the model's), finishing segmentations and post-processing; optionally in line.

    ``in_line`` switches the deferral off (``RowScorer.finishes_off_thread`` false), as before issue 14.
    """

    def __init__(self, *, in_line: bool) -> None:
        self.in_line = in_line
        self.finish_s = self.postprocess_s = 0.0
        self._saved = (VideoSession._finish, PostProcessing.apply, RowScorer.finishes_off_thread)

    def __enter__(self) -> ModelThreadClock:
        finish, apply, _ = self._saved
        clock = self

        def timed_finish(session: VideoSession, *args: Any) -> Any:
            start = time.perf_counter()
            try:
                return finish(session, *args)
            finally:
                clock.finish_s += time.perf_counter() - start

        def timed_apply(steps: PostProcessing, mask: Any) -> Any:
            start = time.perf_counter()
            try:
                return apply(steps, mask)
            finally:
                clock.postprocess_s += time.perf_counter() - start

        VideoSession._finish = timed_finish  # type: ignore[method-assign]
        PostProcessing.apply = timed_apply  # type: ignore[method-assign]
        if self.in_line:
            RowScorer.finishes_off_thread = property(lambda self: False)  # type: ignore[method-assign,assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        VideoSession._finish, PostProcessing.apply, RowScorer.finishes_off_thread = self._saved  # type: ignore[method-assign]


def timed_eval(manifest: Path, out: Path, args: argparse.Namespace) -> tuple[pd.DataFrame, float]:
    start = time.perf_counter()
    rows = run_eval(sweep_config(manifest, out, args), progress=False).results
    wall = time.perf_counter() - start
    if rows["failed"].any():
        raise SystemExit(f"eval rows failed: {rows.loc[rows['failed'], 'error'].unique().tolist()}")
    return rows, wall


def model_thread_s(rows: pd.DataFrame) -> pd.Series:
    """Per volume: preparing its session (once) and segmenting its rows, the model thread's work."""
    by_case = rows.groupby("case_id")
    return by_case["seconds_prepare"].first() + by_case["seconds_segment"].sum()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="postprocess-speed-") as temporary:
        work = args.work or Path(temporary)
        manifest, depths = write_dataset(work / "data", args)
        print(
            f"{len(depths)} volumes, {min(depths)}-{max(depths)} slices, {len(STRATEGIES)} strategies; model "
            f"{args.model} @ {args.image_size} px, device {args.device}, {args.workers} scoring process(es), "
            f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
        )
        warm_up = manifest.with_name("warm-up.csv")  # one volume: kernels and caches warm before either run
        warm_up.write_text("".join(manifest.read_text().splitlines(keepends=True)[:2]))
        timed_eval(warm_up, work / "warm-up", args)
        with ModelThreadClock(in_line=True) as in_line:
            inline, inline_wall = timed_eval(manifest, work / "in-line", args)
        with ModelThreadClock(in_line=False) as deferring:
            deferred, deferred_wall = timed_eval(manifest, work / "deferred", args)
    timings = [*TIMING_COLUMNS]
    same = (
        inline.drop(columns=timings)
        .sort_values(["case_id", "strategy"])
        .reset_index(drop=True)
        .equals(deferred.drop(columns=timings).sort_values(["case_id", "strategy"]).reset_index(drop=True))
    )
    before, after = model_thread_s(inline), model_thread_s(deferred)
    volumes = len(before)
    clocks = {"in-line": in_line, "deferred": deferring}
    print(f"{'per volume, model thread':<34}{'in-line':>10}{'deferred':>10}")
    print(
        f"{'  finishing its segmentations (s)':<34}"
        + "".join(f"{c.finish_s / volumes:>10.3f}" for c in clocks.values())
    )
    print(
        f"{'    of which post-processing (s)':<34}"
        + "".join(f"{c.postprocess_s / volumes:>10.3f}" for c in clocks.values())
    )
    print(f"{'  prepare + segment, all (s)':<34}{before.mean():>10.3f}{after.mean():>10.3f}")
    print(f"{'eval wall (s, all volumes)':<34}{inline_wall:>10.2f}{deferred_wall:>10.2f}")
    print(f"rows equal: {same}")
    if args.json is not None:
        figures = {
            "args": {k: str(v) for k, v in vars(args).items()},
            "slices": depths,
            "model_thread_s_per_volume": {"in-line": before.mean(), "deferred": after.mean()},
            "finish_s_per_volume": {name: c.finish_s / volumes for name, c in clocks.items()},
            "postprocess_s_per_volume_on_model_thread": {name: c.postprocess_s / volumes for name, c in clocks.items()},
            "wall_s": {"in-line": inline_wall, "deferred": deferred_wall},
            "rows_equal": same,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
