"""``--executor ray`` across a two-node Ray cluster started on this machine, with batched prompt sets.

A head and a second node, each with one CPU and a resource of its own, are started with ``ray start --block`` as
child processes of the test and stopped by it (their process groups only; ``ray stop`` would stop every Ray on the
machine). The driver, ``run_eval`` with ``--executor ray``, runs in a process of its own (this file run as a
script), so no Ray state of other tests in the pytest process leaks in. Each actor asks for one CPU, so the two
actors land on different nodes; each records the node it built its model on. Random tiny SAM2 weights (so that
``segment_many`` batches): machinery only.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from fixtures_runner import comparable, write_strategies, write_tiny_dataset

from zeroshot.runner import EvalConfig, RunDir, run_eval
from zeroshot.runner.ray_executor import RayExecutor
from zeroshot.segmenters import build_segmenter

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'zeroshot[ray]'")

MODEL = "random:sam2.1_hiera_t@64"
TESTS = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ray_start(*arguments: str, env: dict[str, str]) -> subprocess.Popen:
    ray_cli = Path(sys.executable).with_name("ray")
    return subprocess.Popen(
        [str(ray_cli), "start", "--block", "--num-cpus=1", "--disable-usage-stats", *arguments],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: stopped below without touching any other Ray
    )


def _stop(processes: list[subprocess.Popen]) -> None:
    """SIGTERM every node's process group, then SIGKILL what is left after 5 s (the groups are the test's own)."""
    running = [p for p in processes if p.poll() is None]
    for process in running:
        os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    for process in running:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for process in running:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # also any worker of the node still in its group
        except ProcessLookupError:
            pass
        process.wait()


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    """``(address, env)`` of a running two-node cluster (head + second node), stopped after the module's tests."""
    temp = tmp_path_factory.mktemp("ray")
    port = _free_port()
    # Workers and the driver import this file (the build function) and the worktree's zeroshot. A private cluster
    # on the loopback interface: no token (nodes, workers and driver all agree).
    path = os.pathsep.join([str(TESTS.parent), str(TESTS), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "RAY_TMPDIR": str(temp), "OMP_NUM_THREADS": "1"}
    env.update(RAY_AUTH_MODE="disabled")
    env.pop("RAY_ADDRESS", None)
    address = f"127.0.0.1:{port}"
    head = _ray_start(
        "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--include-dashboard=false",
        f"--temp-dir={temp}", '--resources={"head_node": 1}', env=env,
    )  # fmt: skip
    nodes = [head]
    try:
        deadline = time.monotonic() + 60
        while True:
            if head.poll() is not None:
                pytest.fail(f"ray start --head exited with status {head.returncode}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("the Ray head did not listen within 60 s")
                time.sleep(0.5)
        second = f"--address={address}", "--node-ip-address=127.0.0.1", '--resources={"second_node": 1}'
        nodes.append(_ray_start(*second, env=env))
        yield address, env
    finally:
        _stop(nodes)


def build_on_node(folder: str, name: str):
    """Build the model and leave a file named after the Ray node that built it (which nodes did the work)."""
    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else "driver"
    Path(folder, node).touch()
    return build_segmenter(name, device="cpu")


def config(data: Path, strategies: tuple[str, ...], out: Path, **overrides) -> EvalConfig:
    options = {"data": data, "out": out, "models": (MODEL,), "strategies": strategies, "seeds": (0, 1)}
    options.update(device="cpu", workers=0)
    return EvalConfig(**{**options, **overrides})


def drive(address: str, data: str, out: str, nodes: str, *strategies: str) -> None:
    """The driver: wait for both nodes, then run the eval on them (``python test_ray_cluster.py ...``)."""
    ray.init(address=address, include_dashboard=False, log_to_driver=False)
    deadline = time.monotonic() + 60
    while len([n for n in ray.nodes() if n["Alive"]]) < 2:
        if time.monotonic() > deadline:
            raise SystemExit("the second Ray node did not join within 60 s")
        time.sleep(0.5)
    resources = {k for n in ray.nodes() if n["Alive"] for k in n["Resources"] if k.endswith("_node")}
    if resources != {"head_node", "second_node"}:
        raise SystemExit(f"unexpected node resources {resources}")
    run_eval(
        config(Path(data), strategies, Path(out), executor="ray", workers=2),
        progress=False,
        build=functools.partial(build_on_node, nodes),
        executor=RayExecutor(workers=2, device="cpu", address=address),
    )


def test_ray_across_two_nodes_makes_every_case_once_with_the_local_rows(two_nodes, tmp_path):
    address, env = two_nodes
    manifest = write_tiny_dataset(tmp_path / "data", subjects=2)  # 6 cases
    strategies = tuple(str(s) for s in write_strategies(tmp_path / "strategies"))
    local = run_eval(
        config(manifest, strategies, tmp_path / "local"),
        progress=False,
        build=lambda name: build_segmenter(name, device="cpu"),
    )
    nodes = tmp_path / "nodes"
    nodes.mkdir()
    out = tmp_path / "ray"
    driver = [sys.executable, __file__, address, str(manifest), str(out), str(nodes), *strategies]
    done = subprocess.run(driver, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len({p.name for p in nodes.iterdir()} - {"driver"}) == 2  # both nodes built the model and took cases
    records = list(RunDir(out).store.records())
    keys = [record.key for record in records]
    assert len(keys) == len(set(keys)) == 6 * 2 * 2  # every row exactly once
    assert {record.info["prompt_sets_in_call"] for record in records} == {4}  # batched
    pd.testing.assert_frame_equal(comparable(pd.read_parquet(out / "results.parquet")), comparable(local.results))


if __name__ == "__main__":
    drive(*sys.argv[1:])
