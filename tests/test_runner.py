"""The runner: run directories, identity checks, resumption, failures, out-of-memory retry, sharding, merging.

Weight-free segmenters (box-fill) and small fakes run the machinery; nothing here measures accuracy.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from fixtures_runner import SHAPE, comparable, config_for, write_strategies, write_tiny_dataset

from zeroshot.compare.summary import summary_table
from zeroshot.errors import ConfigError
from zeroshot.runner import RowKey, RunDir, Shard, merge_runs, run_eval
from zeroshot.runner.config import model_identity
from zeroshot.runner.identity import RunIdentity
from zeroshot.runner.rundir import path_component, read_json, write_atomic
from zeroshot.runner.scoring import slice_table
from zeroshot.runner.work import offload_variant
from zeroshot.segmenters.base import Segmentation
from zeroshot.segmenters.boxfill import BoxFillSegmenter
from zeroshot.store.paths import legacy_key, legacy_row_path
from zeroshot.store.schema import SLICE_DTYPES


@dataclass
class Counter:
    """Counts model builds and volume preparations of box-fill segmenters."""

    builds: int = 0
    prepares: int = 0
    describe_extra: dict = field(default_factory=dict)

    def build(self, name: str):
        self.builds += 1
        return CountingSegmenter(self, name)


class CountingSegmenter:
    def __init__(self, counter: Counter, name: str) -> None:
        self.counter = counter
        self.name = name
        self.inner = BoxFillSegmenter(interpolate_between_key_slices=True)

    def prepare(self, volume):
        self.counter.prepares += 1
        return self.inner.prepare(volume)

    def describe(self):
        return {**self.inner.describe(), "name": self.name, **self.counter.describe_extra}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def strategies(tmp_path_factory) -> tuple[Path, Path]:
    return write_strategies(tmp_path_factory.mktemp("strategies"))


# ------------------------------------------------------------------------------------------------------ rundir
def test_path_component_is_reversible_and_never_leaves_its_folder():
    assert path_component("random:sam2.1_hiera_t@128") == "random%3Asam2.1_hiera_t%40128"
    assert path_component("..") == "%2E."
    assert path_component("a/b") == "a%2Fb"
    rundir = RunDir("/runs/x")
    key = RowKey("T2", "case-1", "random:sam2@128", "../evil", 3)
    path = rundir.prediction_path(key)
    assert path.parent.parent.parent.parent.parent == Path("/runs/x/predictions")
    legacy = legacy_row_path(rundir.root, key)  # the layout before the store, read by `zeroshot migrate`
    assert legacy_key(rundir.root, legacy) == key


def test_write_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "file.json"
    write_atomic(target, "one")
    write_atomic(target, b"two")
    assert target.read_text() == "two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.json"]


def test_read_json_names_a_corrupt_file(tmp_path):
    bad = tmp_path / "run.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match=r"run\.json: not valid JSON"):
        read_json(bad)


def test_second_writer_is_refused_while_the_lock_is_held(tmp_path):
    rundir = RunDir(tmp_path / "run")
    with rundir.lock(), pytest.raises(ConfigError, match="another zeroshot process is writing to this run"):
        with RunDir(tmp_path / "run").lock():
            pass
    with rundir.lock():  # released on exit
        pass


# ------------------------------------------------------------------------------------------------------ config
def test_shard_partition_is_complete_disjoint_and_balanced():
    @dataclass(frozen=True)
    class Item:
        key: str

    items = [Item(f"T1/c{i:02d}") for i in range(10)]
    parts = [Shard(i, 3).select(list(reversed(items))) for i in range(3)]
    assert sorted(x.key for part in parts for x in part) == [x.key for x in items]
    assert [len(p) for p in parts] == [4, 3, 3]
    assert [x.key for x in parts[1]] == ["T1/c01", "T1/c04", "T1/c07"]
    assert Shard.parse("1/3") == Shard(1, 3) and str(Shard(1, 3)) == "1/3"


@pytest.mark.parametrize("text", ["3", "a/b", "1/"])
def test_shard_parse_refuses_malformed_text(text):
    with pytest.raises(ConfigError, match="expected i/n"):
        Shard.parse(text)


def test_shard_index_must_be_below_count():
    with pytest.raises(ConfigError, match="0 <= i < n"):
        Shard(2, 2)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"models": ()}, "--model: give at least one"),
        ({"seeds": (0, 0)}, "--seeds: given more than once: 0"),
        ({"seeds": (-1,)}, r"--seeds: seeds are whole numbers from 0 to 2\*\*63 - 1 = 9223372036854775807, got -1"),
        ({"tolerances_mm": (0.0,)}, "--tolerance-mm"),
        ({"image_size": 8}, "--image-size"),
        ({"executor": "dask"}, "--executor 'dask'"),
        ({"workers": -1}, "--workers"),
    ],
)
def test_eval_config_refuses_bad_options(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        config_for(tmp_path, ["s.yaml"], tmp_path / "out", **overrides)


def test_model_identity_ignores_where_and_with_what_it_ran():
    a = {"name": "m", "checkpoint": "/a/x.pt", "checkpoint_sha256": "ab", "weights": "checkpoint /a/x.pt"}
    b = {"name": "m", "checkpoint": "/b/x.pt", "checkpoint_sha256": "ab", "weights": "checkpoint /b/x.pt"}
    assert model_identity({**a, "device": "cuda:0", "torch_version": "1"}) == model_identity(
        {**b, "device": "cuda:1", "torch_version": "2"}
    )
    assert model_identity({**a, "device": "cpu"}) != model_identity({**a, "device": "cuda"})
    assert model_identity({"name": "r", "weights": "random (seed 0)"})["weights"] == "random (seed 0)"


def test_check_compatible_names_every_difference():
    old = {"fixed": {"label": 1}, "strategies": {"s": {"jitter": 0}}, "cases": {"T1/a": {"image_sha256": "1"}}}
    new = {"fixed": {"label": 2}, "strategies": {"s": {"jitter": 5}}, "cases": {"T1/b": {"image_sha256": "2"}}}
    recorded = RunIdentity.from_json(old)
    with pytest.raises(ConfigError, match=r"(?s)settings: label: 1 -> 2.*strategy 's': jitter: 0 -> 5"):
        recorded.check_compatible(RunIdentity.from_json(new), where="runs/x")
    extended = RunIdentity(cases=new["cases"])
    recorded.check_compatible(extended, where="runs/x")  # a new case extends the run
    union = recorded.union(extended)
    assert set(union.cases) == {"T1/a", "T1/b"} and union.fixed == {"label": 1}
    assert RunIdentity.from_json(union.to_json()) == union and union.sha256() != recorded.sha256()
    with pytest.raises(TypeError):
        union.cases["T1/c"] = {}  # frozen: identities are never mutated in place


# --------------------------------------------------------------------------------------------- scoring, tables
def test_slice_table_measures_drift_from_the_prompted_slice():
    gt = np.zeros((4, 3, 3), bool)
    pred = np.zeros((4, 3, 3), bool)
    gt[1:3, 0, 0:2] = True
    pred[1, 0, 0:2] = True
    pred[3, 2, 2] = True
    table = slice_table(gt, pred, (2.5, 0.5, 0.5), key_slices=[1])
    assert table["dist_slices"].tolist() == [1, 0, 1, 2]
    assert table["dist_mm"].tolist() == [2.5, 0.0, 2.5, 5.0]
    assert table["gt_area_px"].tolist() == [0, 2, 2, 0]
    assert table["pred_area_mm2"].tolist() == [0.0, 0.5, 0.0, 0.25]
    assert math.isnan(table["slice_dice"][0])
    assert table["slice_dice"][1:].tolist() == [1.0, 0.0, 0.0]
    assert {name: str(values.dtype) for name, values in table.items()} == SLICE_DTYPES


def test_summary_counts_failed_rows_as_dice_zero():
    results = pd.DataFrame(
        {
            "case_id": ["a", "b", "a"],
            "sequence": ["T2", "T2", "T1"],
            "model": ["m", "m", "m"],
            "strategy": ["s", "s", "s"],
            "dice": [0.8, float("nan"), 0.5],
            "failed": [False, True, False],
        }
    )
    table = summary_table(results)
    assert list(table["sequence"]) == ["T1", "T2"]
    assert table.loc[1, "dice_mean"] == pytest.approx(0.4)
    assert table.loc[1, "failed"] == 1


# ------------------------------------------------------------------------------------------------ evaluation
def test_eval_writes_a_complete_run_directory(dataset, strategies, tmp_path):
    out = tmp_path / "run"
    summary = run_eval(config_for(dataset, strategies, out, save_pred=True, workers=1), progress=False)
    results = summary.results
    assert summary.rows_selected == 6 * 2 * 2 == len(results) == summary.rows_computed
    assert summary.rows_failed == 0
    expected = [
        "case_id", "sequence", "center", "split", "model", "strategy", "seed",
        "dice", "iou", "vol_gt_ml", "vol_pred_ml", "rel_vol_err", "hd95_mm", "hd_mm", "assd_mm", "masd_mm",
        "nsd_2mm", "d_max_mm", "empty_gt", "empty_pred", "failed", "error",
        "oracle_gt_prompt", "oracle_gt_z_range", "oracle_gt_roi_crop",
    ]  # fmt: skip
    assert list(results.columns[: len(expected)]) == expected
    assert set(results["sequence"]) == {"T1", "T2", "OOP"}
    assert set(results["strategy"]) == {"box-mid", "box-jitter"}
    assert results["dice"].between(0, 1).all() and (results["dice"] > 0).all()
    assert results["oracle_gt_prompt"].all() and not results["oracle_gt_z_range"].any()
    assert (results["center"].str.startswith("center-")).all() and (results["split"] == "test").all()
    # The tight box does not depend on the seed; the jittered one does.
    tight = results[results.strategy == "box-mid"].groupby(["sequence", "case_id"])["dice"].nunique()
    assert (tight == 1).all()
    for name in ("results.csv", "results.parquet", "failures.csv", "slices.parquet", "run.json"):
        assert (out / name).is_file(), name
    assert pd.read_csv(out / "results.csv").shape == results.shape
    assert pd.read_csv(out / "failures.csv").empty
    slices = pd.read_parquet(out / "slices.parquet")
    assert len(slices) == len(results) * SHAPE[0]
    assert (slices.loc[slices.dist_slices == 0, "pred_area_px"] > 0).all()
    # Predictions overlay the input: same affine and shape as the image file.
    first = results.iloc[0]
    prediction = nib.load(out / first["prediction"])
    image = nib.load(dataset.parent / f"{first['sequence']}_{first['case_id']}_0000.nii.gz")
    assert prediction.shape == image.shape and np.allclose(prediction.affine, image.affine)
    # Prompts are cached per case, strategy and seed (not per model), in the store's parts: no file per row.
    prompts = pd.concat([pd.read_parquet(p) for p in (out / "store" / "parts").glob("*.prompts.parquet")])
    assert len(prompts) == 6 * 2 * 2 and not prompts.duplicated(["sequence", "case_id", "strategy", "seed"]).any()
    assert not RunDir(out).store.segments(), "the run's log segment was compacted when it ended"
    assert RunDir(out).store.file_count() == 3
    manifest = json.loads((out / "run.json").read_text())
    identity = manifest["identity"]
    assert set(identity["cases"]) == set(results["sequence"] + "/" + results["case_id"])
    assert all(len(c["image_sha256"]) == 64 for c in identity["cases"].values())
    assert identity["strategies"]["box-jitter"]["prompt"]["box"]["jitter_percent"] == 10
    assert identity["models"]["box-fill"]["name"] == "box-fill"
    assert identity["fixed"] == {"label": 1, "tolerances_mm": [2.0], "image_size": None}
    invocation = manifest["invocations"][-1]
    assert invocation["status"] == "finished" and invocation["rows_computed"] == len(results)
    assert {"numpy", "torch", "zeroshot"} <= set(invocation["packages"])
    assert invocation["selection"]["data"] == str(dataset.resolve())
    assert len(manifest["config_sha256"]) == 64


def test_rerun_builds_no_model_and_prepares_no_volume(dataset, strategies, tmp_path):
    counter = Counter()
    config = config_for(dataset, strategies, tmp_path / "run")
    first = run_eval(config, progress=False, build=counter.build)
    assert (counter.builds, counter.prepares) == (1, 6)  # one session per case, shared by 2 strategies x 2 seeds
    again = run_eval(config, progress=False, build=counter.build)
    assert (counter.builds, counter.prepares) == (1, 6)
    assert again.rows_computed == 0
    pd.testing.assert_frame_equal(comparable(first.results), comparable(again.results))
    assert len(json.loads((tmp_path / "run" / "run.json").read_text())["invocations"]) == 2


def test_new_seed_extends_the_run_with_only_its_rows(dataset, strategies, tmp_path):
    counter = Counter()
    run_eval(config_for(dataset, strategies, tmp_path / "run", seeds=(0,)), progress=False, build=counter.build)
    summary = run_eval(
        config_for(dataset, strategies, tmp_path / "run", seeds=(0, 1)), progress=False, build=counter.build
    )
    assert summary.rows_computed == 6 * 2 and counter.prepares == 6 + 6
    assert sorted(set(summary.results["seed"])) == [0, 1] and len(summary.results) == 24
    manifest = json.loads((tmp_path / "run" / "run.json").read_text())
    assert manifest["identity"]["seeds"] == [0, 1]


def test_changed_strategy_is_refused_and_new_run_moves_the_old_run_aside(dataset, tmp_path):
    folder = tmp_path / "strategies"
    tight, jitter = write_strategies(folder)
    out = tmp_path / "run"
    run_eval(config_for(dataset, [tight, jitter], out, seeds=(0,)), progress=False)
    jitter.write_text("prompt:\n  type: box\n  box: {jitter_percent: 20}\n")
    with pytest.raises(ConfigError, match=r"(?s)strategy 'box-jitter': prompt\.box\.jitter_percent: 10\.0 -> 20\.0"):
        run_eval(config_for(dataset, [tight, jitter], out, seeds=(0,)), progress=False)
    summary = run_eval(config_for(dataset, [tight, jitter], out, seeds=(0,), new_run=True), progress=False)
    assert summary.rows_computed == 12
    archived = [p for p in tmp_path.iterdir() if p.name.startswith("run.previous-")]
    assert len(archived) == 1 and (archived[0] / "results.csv").is_file()


def test_changed_case_file_is_refused(strategies, tmp_path):
    manifest = write_tiny_dataset(tmp_path / "data", subjects=1)
    out = tmp_path / "run"
    run_eval(config_for(manifest, strategies, out, seeds=(0,), sequences=("T1",)), progress=False)
    label = tmp_path / "data" / "T1_phantom_000.nii.gz"
    nii = nib.load(label)
    data = np.asarray(nii.dataobj).copy()
    data[0, 0, 0] = 1
    nib.save(nib.Nifti1Image(data, nii.affine), label)
    with pytest.raises(ConfigError, match=r"case 'T1/phantom_000': label_sha256"):
        run_eval(config_for(manifest, strategies, out, seeds=(0,), sequences=("T1",)), progress=False)


def test_changed_model_is_refused_before_it_makes_a_row(dataset, strategies, tmp_path):
    counter = Counter()
    config = config_for(dataset, strategies, tmp_path / "run", seeds=(0,), sequences=("T1",))
    run_eval(config, progress=False, build=counter.build)
    counter.describe_extra = {"point_radius_mm": 9.0}
    extended = config_for(dataset, strategies, tmp_path / "run", seeds=(0, 1), sequences=("T1",))
    prepares = counter.prepares
    with pytest.raises(ConfigError, match=r"model 'box-fill': point_radius_mm: 5\.0 -> 9\.0"):
        run_eval(extended, progress=False, build=counter.build)
    assert counter.prepares == prepares


def test_unreadable_case_becomes_a_failed_row_and_the_run_goes_on(strategies, tmp_path):
    manifest = write_tiny_dataset(tmp_path / "data", subjects=2)
    (tmp_path / "data" / "T2_phantom_001_0000.nii.gz").write_bytes(b"not a nifti file")
    summary = run_eval(config_for(manifest, strategies, tmp_path / "run", seeds=(0,)), progress=False)
    results = summary.results
    bad = results[(results.sequence == "T2") & (results.case_id == "phantom_001")]
    assert len(bad) == 2 and bad["failed"].all() and bad["dice"].isna().all()
    assert bad["error"].str.contains("VolumeError: .*cannot read as NIfTI", regex=True).all()
    assert bad["oracle_gt_prompt"].all()  # the strategy's flag, although no prompt could be made
    assert (~results.drop(bad.index)["failed"]).all() and summary.rows_failed == 2
    failures = pd.read_csv(tmp_path / "run" / "failures.csv")
    assert len(failures) == 2 and "cannot read as NIfTI" in failures.loc[0, "error"]
    assert "Traceback" in (tmp_path / "run" / "logs" / "errors.log").read_text()
    # Failed rows count as finished; --retry-failed computes them again.
    assert run_eval(config_for(manifest, strategies, tmp_path / "run", seeds=(0,)), progress=False).rows_computed == 0
    retried = run_eval(
        config_for(manifest, strategies, tmp_path / "run", seeds=(0,), retry_failed=True), progress=False
    )
    assert retried.rows_computed == 2


class OutOfMemoryOnce:
    """A box-fill segmenter whose first segment() raises CUDA out-of-memory unless it offloads."""

    name = "oom-once"

    def __init__(self, log: list[str], offload_video_to_cpu: bool = False) -> None:
        self.log = log
        self.offload_video_to_cpu = offload_video_to_cpu
        self.offload_state_to_cpu = offload_video_to_cpu
        self.inner = BoxFillSegmenter()

    def prepare(self, volume):
        self.log.append(f"prepare offload={self.offload_video_to_cpu}")
        session = self.inner.prepare(volume)
        parent = self

        class Session:
            def segment(self, prompts):
                if not parent.offload_video_to_cpu:
                    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
                return session.segment(prompts)

            def close(self):
                parent.log.append("close")

        return Session()

    def describe(self):
        return {"name": self.name}

    def with_offload(self):
        if self.offload_video_to_cpu:
            return None
        variant = OutOfMemoryOnce(self.log, offload_video_to_cpu=True)
        variant.inner = self.inner
        return variant


def test_out_of_memory_is_retried_once_with_offloading(dataset, strategies, tmp_path):
    log: list[str] = []
    config = config_for(dataset, strategies, tmp_path / "run", seeds=(0,), case_ids=("phantom_000",))
    summary = run_eval(config, progress=False, build=lambda name: OutOfMemoryOnce(log))
    results = summary.results
    assert not results["failed"].any() and results["offloaded"].all()
    assert log[:3] == ["prepare offload=False", "close", "prepare offload=True"]
    assert log.count("prepare offload=True") == 3  # once per case, the retry kept for the case's other rows


def test_offload_variant_shares_the_model_and_sets_both_flags():
    original = OutOfMemoryOnce([])
    variant = offload_variant(original)
    assert variant.inner is original.inner and variant.offload_state_to_cpu and not original.offload_state_to_cpu
    assert offload_variant(variant) is None
    assert offload_variant(BoxFillSegmenter()) is None


class WrongShape:
    name = "wrong-shape"

    def prepare(self, volume):
        class Session:
            def segment(self, prompts):
                return Segmentation(mask=np.zeros((2, 2, 2), bool))

            def close(self):
                pass

        return Session()

    def describe(self):
        return {"name": self.name}


def test_a_mask_of_the_wrong_shape_fails_its_row(dataset, strategies, tmp_path):
    config = config_for(dataset, strategies, tmp_path / "run", seeds=(0,), sequences=("T1",))
    results = run_eval(config, progress=False, build=lambda name: WrongShape()).results
    assert results["failed"].all()
    assert results["error"].str.contains(r"mask of shape \(2, 2, 2\) for a volume of shape", regex=True).all()


# ------------------------------------------------------------------------------------------------- shards, merge
def test_shards_merge_into_the_unsharded_results(dataset, strategies, tmp_path):
    whole = run_eval(config_for(dataset, strategies, tmp_path / "whole"), progress=False).results
    for index in range(2):
        run_eval(config_for(dataset, strategies, tmp_path / f"shard{index}", shard=Shard(index, 2)), progress=False)
    shard_rows = [len(pd.read_csv(tmp_path / f"shard{i}" / "results.csv")) for i in range(2)]
    assert shard_rows == [12, 12]
    merged = merge_runs([tmp_path / "shard0", tmp_path / "shard1"], tmp_path / "merged")
    pd.testing.assert_frame_equal(comparable(merged.results), comparable(whole))
    assert pd.read_parquet(tmp_path / "merged" / "slices.parquet").shape[0] == len(whole) * SHAPE[0]
    manifest = json.loads((tmp_path / "merged" / "run.json").read_text())
    assert len(manifest["merged_from"]) == 2 and len(manifest["identity"]["cases"]) == 6
    with pytest.raises(ConfigError, match=r"row .* is in both"):
        merge_runs([tmp_path / "whole", tmp_path / "shard0"], tmp_path / "dup")


def test_merge_refuses_runs_of_another_configuration(dataset, strategies, tmp_path):
    run_eval(config_for(dataset, strategies, tmp_path / "a", sequences=("T1",), seeds=(0,)), progress=False)
    other = config_for(dataset, strategies, tmp_path / "b", sequences=("T2",), seeds=(0,), tolerances_mm=(1.0,))
    run_eval(other, progress=False)
    with pytest.raises(ConfigError, match=r"settings: tolerances_mm\[?.*2\.0.* -> .*1\.0"):
        merge_runs([tmp_path / "a", tmp_path / "b"], tmp_path / "merged")


def test_merge_refuses_bad_arguments(tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(ConfigError, match="at least one run"):
        merge_runs([], tmp_path / "out")
    with pytest.raises(ConfigError, match="more than once"):
        merge_runs([tmp_path / "plain", tmp_path / "plain"], tmp_path / "out")
    with pytest.raises(ConfigError, match="is one of the runs"):
        merge_runs([tmp_path / "plain"], tmp_path / "plain")
    with pytest.raises(ConfigError, match="exists and is not empty"):
        merge_runs([tmp_path / "plain"], tmp_path / "full")
    with pytest.raises(ConfigError, match="has no run.json"):
        merge_runs([tmp_path / "plain"], tmp_path / "out")


def test_duplicate_strategy_names_are_refused(dataset, tmp_path):
    one, _ = write_strategies(tmp_path / "a")
    two, _ = write_strategies(tmp_path / "b")
    with pytest.raises(ConfigError, match="strategy name 'box-mid' is given twice"):
        run_eval(config_for(dataset, [one, two], tmp_path / "run"), progress=False)
