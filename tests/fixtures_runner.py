"""Tiny datasets, strategies, configurations and counting segmenters that the runner tests share."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from zeroshot.interactive import ClickSettings
from zeroshot.phantom import make_phantom_case
from zeroshot.runner import TIMING_COLUMNS, EvalConfig, RunDir
from zeroshot.segmenters.grabcut import GrabCutSegmenter

SHAPE = (10, 32, 40)
IDENTITY = ["case_id", "sequence", "model", "strategy", "seed"]
FAST_GRABCUT = {"working_size_px": 96, "iterations": 2}


def write_tiny_dataset(root: Path, subjects: int = 2, shape: tuple[int, int, int] = SHAPE) -> Path:
    """A manifest dataset of phantom subjects (T1, T2, OOP each) on a small grid; returns the manifest."""
    root.mkdir(parents=True, exist_ok=True)
    lines = ["case_id,image,label,sequence,center,split"]
    affine = np.diag([1.5, 1.5, 3.0, 1.0])  # voxel (i, j, k) = (x, y, z); canonical LPS after reorientation
    for index in range(subjects):
        case = make_phantom_case(0, index=index, shape=shape)
        for sequence, volume in case.volumes.items():
            image = root / f"{sequence}_{case.case_id}_0000.nii.gz"
            label = root / f"{sequence}_{case.case_id}.nii.gz"
            nib.save(nib.Nifti1Image(np.transpose(volume.array, (2, 1, 0)).astype(np.float32), affine), image)
            nib.save(nib.Nifti1Image(np.transpose(case.label, (2, 1, 0)).astype(np.uint8), affine), label)
            lines.append(f"{case.case_id},{image.name},{label.name},{sequence},center-{index},test")
    manifest = root / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def write_strategies(folder: Path) -> tuple[Path, Path]:
    """Two strategies: a tight box on the middle slice, and one jittered by up to 10 % (seed-dependent)."""
    folder.mkdir(parents=True, exist_ok=True)
    tight = folder / "box-mid.yaml"
    tight.write_text("prompt: {type: box}\n")
    jitter = folder / "box-jitter.yaml"
    jitter.write_text("prompt:\n  type: box\n  box: {jitter_percent: 10}\n")
    return tight, jitter


def comparable(results: pd.DataFrame) -> pd.DataFrame:
    """A results table without timing columns, sorted by row identity (and round), for row-for-row comparison."""
    order = [*IDENTITY, *(["round"] if "round" in results.columns else [])]
    return results.drop(columns=list(TIMING_COLUMNS)).sort_values(order).reset_index(drop=True)


def config_for(dataset: Path, strategies, out: Path, **overrides) -> EvalConfig:
    options = {
        "data": dataset,
        "out": out,
        "models": ("box-fill",),
        "strategies": tuple(str(s) for s in strategies),
        "seeds": (0, 1),
        "workers": 0,
    }
    options.update(overrides)
    return EvalConfig(**options)


def click_config_for(dataset: Path, strategy: Path, out: Path, **overrides) -> EvalConfig:
    options = {
        "data": dataset,
        "out": out,
        "models": ("grabcut",),
        "strategies": (str(strategy),),
        "seeds": (0,),
        "sequences": ("T2",),
        "workers": 0,
        "clicks": ClickSettings(rounds=3),
    }
    options.update(overrides)
    return EvalConfig(**options)


class Counting:
    """Builds fast GrabCut segmenters and counts their ``prepare`` and ``segment`` calls.

    ``fail_at`` makes the n-th segment call (1-based, counted over the whole run) raise ``error``.
    """

    def __init__(self, fail_at: int | None = None, error: BaseException | None = None) -> None:
        self.prepares = 0
        self.segments = 0
        self.fail_at = fail_at
        self.error = error or RuntimeError("decoder exploded")

    def build(self, name: str):
        counter = self

        class Segmenter:
            def __init__(self, offload: bool = False) -> None:
                self.name = name
                self.inner = GrabCutSegmenter(**FAST_GRABCUT)
                self.offload_video_to_cpu = self.offload_state_to_cpu = offload

            def prepare(self, volume):
                counter.prepares += 1
                session = self.inner.prepare(volume)

                class Session:
                    volume = session.volume

                    def segment(self, prompts):
                        counter.segments += 1
                        if counter.segments == counter.fail_at:
                            raise counter.error
                        return session.segment(prompts)

                    def close(self):
                        pass

                return Session()

            def describe(self):
                return {**self.inner.describe(), "name": name}

            def with_offload(self):
                if self.offload_video_to_cpu:
                    return None
                variant = Segmenter(offload=True)
                variant.inner = self.inner
                return variant

        return Segmenter()


def kill_when(process: subprocess.Popen, ready: Callable[[], bool], *, timeout: float) -> None:
    """``kill -9`` ``process`` as soon as ``ready()`` holds (polled every 2 ms); fail the test if it ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if ready():
            break
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.wait()
    if process.returncode != -signal.SIGKILL:
        pytest.fail(f"the run ended (status {process.returncode}) before it could be killed; make it longer")


def kill_mid_run_then_resume(command: Sequence[str], out: Path, *, total: int, at_least: int = 2) -> int:
    """Run ``command`` (a ``zeroshot eval`` writing ``out``), kill it once ``at_least`` rows are done, run it again.

    Checks that the kill landed mid-run and that the resumed run computed exactly the rows missing; returns how
    many rows were done at the kill.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_when(process, lambda: len(RunDir(out).done_keys()) >= at_least, timeout=300)
    present = len(RunDir(out).done_keys())
    assert at_least <= present < total, "the kill must land mid-run"
    resumed = subprocess.run(command, check=True, env=env, capture_output=True)
    assert f"{total - present} row(s) computed now" in resumed.stdout.decode()
    return present
