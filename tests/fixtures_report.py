"""Real runs for the report's tests, made in seconds: the phantom, weight-free models, every situation a report meets.

``write_report_runs`` evaluates two cases x three sequences with box-fill under a box and a point strategy as two
shards (the first with ``--save-pred``, the second without: predictions missing) merged into one run, with one
image truncated (failed rows); then an interactive run of GrabCut with two rounds of corrective clicks; then
``zeroshot compare`` and ``zeroshot figures`` of the merged run.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from zeroshot.cli import main

CASES = ("phantom_003", "phantom_004")
BROKEN_IMAGE = Path("OOP") / "val" / "images" / "phantom_003_0000.nii.gz"


@dataclass(frozen=True)
class ReportRuns:
    """The folders :func:`write_report_runs` wrote."""

    data: Path
    run: Path
    shards: tuple[Path, Path]
    clicks: Path
    compare: Path
    figures: Path


def _eval(*argv: str) -> None:
    assert main(["eval", *argv, "--workers", "0", "--no-progress"]) == 0


def write_report_runs(root: Path, phantom_data: Path) -> ReportRuns:
    """Write the runs under ``root`` from a copy of the session's phantom dataset."""
    data = root / "data"
    shutil.copytree(phantom_data, data)
    broken = data / BROKEN_IMAGE
    broken.write_bytes(broken.read_bytes()[:2000])  # the header survives, the voxels do not: its rows fail
    common = ["--data", str(data), "--case", *CASES, "--model", "box-fill", "--strategy", "box-mid"]
    common += ["--strategy", "point-center"]
    shards = (root / "shard0", root / "shard1")
    _eval(*common, "--shard", "0/2", "--save-pred", "--out", str(shards[0]))
    _eval(*common, "--shard", "1/2", "--out", str(shards[1]))
    run = root / "run"
    assert main(["merge", *map(str, shards), "--out", str(run)]) == 0
    clicks = root / "clicks"
    _eval("--data", str(data), "--sequence", "T1", "--case", "phantom_004", "--model", "grabcut", "--strategy",
          "box-mid", "--clicks", "2", "--save-pred", "--out", str(clicks))  # fmt: skip
    compare, figures = root / "compare", root / "figures"
    assert main(["compare", str(run), "--resamples", "200", "--out", str(compare)]) == 0
    assert main(["figures", str(run), "--compare", str(compare), "--resamples", "200", "--out", str(figures)]) == 0
    return ReportRuns(data=data, run=run, shards=shards, clicks=clicks, compare=compare, figures=figures)
