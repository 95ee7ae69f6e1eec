"""Several cases in flight: the prompt sets of up to N cases propagate in one lockstep call.

The rows must be those of one case at a time: same metrics, byte-equal saved masks, on cases of different slice
counts and in-plane shapes (10 and 8 slices, 32x40 and 40x48 px; four cases, so N = 3 makes a joint call of
three and a call of one). An out-of-memory error in the joint call leaves every case's rows correct (each runs
alone, where its own offloading retry still works), and a run killed with SIGKILL resumes to the uninterrupted
rows. Random tiny SAM2 weights: machinery only, never accuracy.
"""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from fixtures_batch import assert_same_rows, build, config, eval_command, saved_masks, write_mixed_dataset
from fixtures_runner import comparable, kill_mid_run_then_resume, write_strategies

import zeroshot.runner.work as work
from zeroshot.errors import ConfigError
from zeroshot.runner import RunDir, run_eval
from zeroshot.segmenters.sam2_session import Sam2Session


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("in-flight")
    return write_mixed_dataset(root / "data"), write_strategies(root / "strategies")


@pytest.fixture(scope="module")
def one_at_a_time(dataset, tmp_path_factory, one_torch_thread):
    out = tmp_path_factory.mktemp("runs") / "one"
    return out, run_eval(config(dataset, out), progress=False, build=build).results


def volumes_in_call(out) -> list[int]:
    """``volumes_in_call`` of every row's segmentation info (1 where the case ran alone)."""
    return sorted(record.info.get("volumes_in_call", 1) for record in RunDir(out).store.records())


def test_rows_with_three_cases_in_flight_equal_one_at_a_time(dataset, one_at_a_time, tmp_path, one_torch_thread):
    plain_out, plain = one_at_a_time
    out = tmp_path / "three"
    results = run_eval(config(dataset, out, cases_in_flight=3), progress=False, build=build).results
    assert len(results) == 16 and not results["failed"].any()
    assert results["dice"].nunique() > 1  # the rows differ from each other: equal tables mean something
    pd.testing.assert_frame_equal(comparable(results), comparable(plain))
    assert saved_masks(out) == saved_masks(plain_out) and len(saved_masks(out)) == 16
    assert volumes_in_call(out) == [1] * 4 + [3] * 12  # three cases together, then the last alone
    assert volumes_in_call(plain_out) == [1] * 16
    invocation = json.loads((out / "run.json").read_text())["invocations"][-1]
    assert invocation["cases_in_flight"] == 3
    identity = json.loads((out / "run.json").read_text())["identity"]
    assert identity == json.loads((plain_out / "run.json").read_text())["identity"]  # not part of the identity


def _raise_in_joint_call(monkeypatch, error: BaseException) -> list[int]:
    """Make every joint (several-volume) lockstep call raise ``error``; return the volumes of each call tried."""
    tried: list[int] = []

    def joint(self, items):
        tried.append(len(items))
        raise error

    monkeypatch.setattr(Sam2Session, "_propagate_volumes", joint)
    return tried


@pytest.mark.parametrize(
    "error",
    [torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), RuntimeError("kernel failed")],
    ids=["out-of-memory", "other-error"],
)
def test_an_error_in_the_joint_call_runs_each_case_alone(
    dataset, one_at_a_time, tmp_path, monkeypatch, one_torch_thread, error
):
    plain_out, plain = one_at_a_time
    tried = _raise_in_joint_call(monkeypatch, error)
    out = tmp_path / "joint-fails"
    results = run_eval(config(dataset, out, cases_in_flight=3), progress=False, build=build).results
    assert tried == [3]
    assert not results["failed"].any() and not results["offloaded"].any()  # alone, each case fits and succeeds
    pd.testing.assert_frame_equal(comparable(results), comparable(plain))
    assert saved_masks(out) == saved_masks(plain_out)
    assert volumes_in_call(out) == [1] * 16


def test_out_of_memory_alone_too_retries_that_case_offloaded(
    dataset, one_at_a_time, tmp_path, monkeypatch, one_torch_thread
):
    """After the joint call runs out of memory, a case that runs out alone too takes its offloading retry."""
    _, plain = one_at_a_time
    _raise_in_joint_call(monkeypatch, torch.cuda.OutOfMemoryError("CUDA out of memory"))
    propagate = Sam2Session._propagate_lockstep

    def lockstep(self, prompt_sets):
        if self.volume.num_slices == 8 and not self.options.offload_state_to_cpu:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return propagate(self, prompt_sets)

    monkeypatch.setattr(Sam2Session, "_propagate_lockstep", lockstep)
    results = run_eval(config(dataset, tmp_path / "oom", cases_in_flight=3), progress=False, build=build).results
    assert not results["failed"].any()
    offloaded = results.groupby(results["case_id"].str[:2])["offloaded"]
    assert offloaded.all().to_dict() == {"g0": False, "g1": True} and not offloaded.any()["g0"]
    pd.testing.assert_frame_equal(
        comparable(results).drop(columns="offloaded"), comparable(plain).drop(columns="offloaded")
    )


def test_free_gpu_memory_bounds_the_cases_of_a_call(monkeypatch):
    """On CUDA a case joins only while free memory holds every case's lockstep bytes with a 25 % margin."""

    class Source:
        def __init__(self, needed: int) -> None:
            inner = SimpleNamespace(options=SimpleNamespace(device=torch.device("cuda")))
            inner.lockstep_bytes = lambda prompt_sets: needed * prompt_sets
            self._session = SimpleNamespace(session=inner)

        def session(self):
            return self._session

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (1000, 8000))
    assert work._fits_on_device([(Source(100), 2), (Source(200), 2)])  # (200 + 400) * 1.25 = 750 <= 1000
    assert not work._fits_on_device([(Source(100), 2), (Source(200), 2), (Source(300), 1)])  # 900 * 1.25 > 1000
    cpu = Source(10**12)
    cpu.session().session.options.device = torch.device("cpu")
    assert work._fits_on_device([(cpu, 4)])  # no bound off CUDA


def test_a_full_device_splits_the_cases_into_several_calls(dataset, one_at_a_time, tmp_path, monkeypatch):
    _, plain = one_at_a_time
    monkeypatch.setattr(work, "_fits_on_device", lambda members: len(members) <= 2)
    out = tmp_path / "split"
    results = run_eval(config(dataset, out, cases_in_flight=4), progress=False, build=build).results
    pd.testing.assert_frame_equal(comparable(results), comparable(plain))
    assert volumes_in_call(out) == [2] * 16


def test_cases_in_flight_below_one_raises(dataset, tmp_path):
    with pytest.raises(ConfigError, match="--cases-in-flight: expected 1 or more, got 0"):
        config(dataset, tmp_path / "run", cases_in_flight=0)


def test_kill_9_mid_run_then_resume_gives_the_uninterrupted_rows(dataset, one_at_a_time, tmp_path):
    """A run with three cases in flight killed while writing rows resumes to the rows of a run never killed."""
    command = eval_command(dataset, tmp_path / "killed", "--cases-in-flight", "3")
    kill_mid_run_then_resume(command, tmp_path / "killed", total=16)
    plain_out, _ = one_at_a_time
    assert_same_rows(pd.read_csv(tmp_path / "killed" / "results.csv"), pd.read_csv(plain_out / "results.csv"))
    assert saved_masks(tmp_path / "killed") == saved_masks(plain_out)


def test_an_unreadable_case_among_cases_in_flight_fails_alone(dataset, tmp_path, one_torch_thread):
    """A case that cannot be read fails its own rows; the cases read with it still propagate together."""
    manifest, _ = dataset
    lines = manifest.read_text().splitlines()
    broken = lines[1].split(",")
    broken[0], broken[1] = "broken", str(tmp_path / "corrupt_0000.nii.gz")
    (tmp_path / "corrupt_0000.nii.gz").write_bytes(b"not a NIfTI file")
    data = tmp_path / "with-broken.csv"
    data.write_text("\n".join([lines[0], lines[1], ",".join(broken), lines[3]]) + "\n")
    tables = {}
    for n in (1, 3):
        out = tmp_path / f"n{n}"
        tables[n] = run_eval(config(dataset, out, data=data, cases_in_flight=n), progress=False, build=build).results
    assert tables[3]["failed"].sum() == 4 and tables[3].loc[tables[3]["failed"], "case_id"].eq("broken").all()
    pd.testing.assert_frame_equal(comparable(tables[3]), comparable(tables[1]))
    assert volumes_in_call(tmp_path / "n3") == [1] * 4 + [2] * 8  # the broken case alone; the two others together


def test_a_model_that_cannot_share_calls_runs_each_case_alone(dataset, tmp_path):
    """Baselines (and sessions without lockstep) take one case at a time: the same rows, no joint call."""
    runs = {n: run_eval(config(dataset, tmp_path / f"n{n}", models=("box-fill",), cases_in_flight=n), progress=False)
            for n in (1, 3)}  # fmt: skip
    pd.testing.assert_frame_equal(comparable(runs[3].results), comparable(runs[1].results))
    assert saved_masks(tmp_path / "n3") == saved_masks(tmp_path / "n1")


def test_gpu_check_compares_one_case_at_a_time_with_four_in_flight():
    """The GPU check's sweep step parses and times 4 cases in flight beside one at a time (the GPU decides)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    text = (root / "benchmarks" / "gpu_check.sh").read_text().replace("\\\n", " ")
    (line,) = [line.strip() for line in text.splitlines() if line.strip().startswith("step sweep-speed ")]
    args = line.split("benchmarks/sweep_speed.py", 1)[1]
    args = args.replace('"${BENCH_DEVICE:-cuda}"', "cuda").replace('"${SWEEP_CASES:-8}"', "8")
    args = args.replace('"$OUT/sweep-speed.json"', "/tmp/sweep-speed.json")
    sys.path.insert(0, str(root / "benchmarks"))
    try:
        import sweep_speed
    finally:
        sys.path.remove(str(root / "benchmarks"))
    parsed = sweep_speed.parse_args(args.split())
    assert parsed.cases_in_flight == 4 and parsed.cases == 8 and "reference" not in parsed.skip
