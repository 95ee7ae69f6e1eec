"""Shared fixtures: phantom data made once per test session, and the real example scan where present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Matplotlib never opens a window in tests.
os.environ.setdefault("MPLBACKEND", "Agg")

REAL_EXAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "totalsegmentator-mr-example"


@pytest.fixture(scope="session")
def phantom_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6-subject phantom dataset (18 volumes: T1, T2, OOP) in the CrossPan layout with a manifest."""
    from zeroshot.phantom import write_phantom_dataset

    out = tmp_path_factory.mktemp("phantom") / "data"
    write_phantom_dataset(out, cases=6, seed=0)
    return out


@pytest.fixture(scope="session")
def phantom_case():
    """One small phantom subject (16 slices, 96 x 112 pixels) held in memory."""
    from zeroshot.phantom import make_phantom_case

    return make_phantom_case(0, index=0, shape=(16, 96, 112))


@pytest.fixture(scope="session")
def real_example() -> Path:
    """The one real abdominal MR scan at hand (../shared/data/totalsegmentator-mr-example), if present."""
    if not (REAL_EXAMPLE / "image.nii.gz").is_file():
        pytest.skip(f"real example scan not found at {REAL_EXAMPLE} (it lives beside the checkout, not in it)")
    return REAL_EXAMPLE


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine, torch's spinning thread pool runs up to 4x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def report_runs(phantom_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """Real runs for the report (tests/fixtures_report.py): merged shards, failed rows, missing predictions, clicks."""
    from fixtures_report import write_report_runs

    return write_report_runs(tmp_path_factory.mktemp("report-runs"), phantom_data)
