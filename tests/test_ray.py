"""The Ray executor gives exactly the local executor's rows (a local Ray on the CPU, weight-free model)."""

from __future__ import annotations

import pandas as pd
import pytest
from fixtures_runner import comparable, config_for, write_strategies, write_tiny_dataset

from zeroshot.runner import run_eval
from zeroshot.runner.ray_executor import RayExecutor

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'zeroshot[ray]'")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_executor_matches_the_local_executor(local_ray, tmp_path):
    manifest = write_tiny_dataset(tmp_path / "data", subjects=1)
    strategies = write_strategies(tmp_path / "strategies")
    local = run_eval(config_for(manifest, strategies, tmp_path / "local"), progress=False)
    distributed = run_eval(
        config_for(manifest, strategies, tmp_path / "ray", executor="ray", workers=2, save_pred=True),
        progress=False,
        executor=RayExecutor(workers=2, device="cpu"),
    )
    assert distributed.rows_computed == len(local.results) == 3 * 2 * 2
    expected = comparable(local.results).drop(columns="prediction")
    pd.testing.assert_frame_equal(comparable(distributed.results).drop(columns="prediction"), expected)
    assert all((tmp_path / "ray" / p).is_file() for p in distributed.results["prediction"])
    again = run_eval(config_for(manifest, strategies, tmp_path / "ray", executor="ray"), progress=False)
    assert again.rows_computed == 0
