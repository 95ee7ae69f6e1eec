"""Runs the batching tests share (test_batch_prompts, test_cases_in_flight, test_mask_finishing): a random tiny
SAM2 on phantom cases of two grids (different slice counts and in-plane shapes), their configuration and command,
and how their rows and saved masks are compared."""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from fixtures_runner import IDENTITY, write_tiny_dataset

from zeroshot.runner import EvalConfig
from zeroshot.segmenters import build_segmenter

MODEL = "random:sam2.1_hiera_t@64"
SHAPES = ((10, 32, 40), (8, 40, 48))  # different slice counts and in-plane shapes


def write_mixed_dataset(root: Path) -> Path:
    """Phantom cases of two grids in one manifest (absolute paths), T2 and OOP of each: four cases."""
    lines = ["case_id,image,label,sequence,center,split"]
    for index, shape in enumerate(SHAPES):
        manifest = write_tiny_dataset(root / f"grid{index}", subjects=1, shape=shape)
        table = pd.read_csv(manifest)
        for row in table.itertuples():
            if row.sequence in ("T2", "OOP"):
                folder = manifest.parent
                lines.append(
                    f"g{index}-{row.case_id},{folder / row.image},{folder / row.label},{row.sequence},{row.center},test"
                )
    path = root / "manifest.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def config(dataset, out: Path, **overrides) -> EvalConfig:
    manifest, strategies = dataset
    options = {
        "data": manifest,
        "out": out,
        "models": (MODEL,),
        "strategies": tuple(str(s) for s in strategies),
        "seeds": (0, 1),
        "device": "cpu",
        "save_pred": True,
        "workers": 0,
    }
    options.update(overrides)
    return EvalConfig(**options)


def build(_name: str):
    return build_segmenter(MODEL, device="cpu")


def saved_masks(out: Path) -> dict[str, bytes]:
    """Every saved prediction's voxels, by path relative to the run."""
    return {
        path.relative_to(out).as_posix(): np.asarray(nib.load(path).dataobj).tobytes()
        for path in sorted(out.rglob("*.nii.gz"))
        if "predictions" in path.parts
    }


def eval_command(dataset, out: Path, *extra: str) -> list[str]:
    """``zeroshot eval`` of both strategies and seeds 0 and 1 into ``out``, saving predictions (a kill-9 test's run)."""
    manifest, strategies = dataset
    return [
        sys.executable, "-m", "zeroshot.cli", "eval", "--data", str(manifest), "--model", MODEL, "--device", "cpu",
        "--strategy", str(strategies[0]), "--strategy", str(strategies[1]), "--seeds", "0", "1",
        "--out", str(out), "--save-pred", "--workers", "1", "--no-progress", *extra,
    ]  # fmt: skip


def assert_same_rows(batched: pd.DataFrame, unbatched: pd.DataFrame, identity=IDENTITY) -> None:
    left = batched.drop(columns=["seconds_read", "seconds_prepare", "seconds_segment"])
    right = unbatched.drop(columns=["seconds_read", "seconds_prepare", "seconds_segment"])
    pd.testing.assert_frame_equal(
        left.sort_values(identity).reset_index(drop=True), right.sort_values(identity).reset_index(drop=True)
    )
