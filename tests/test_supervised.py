"""The demo's supervised baseline: trains on one sequence, predicts files that score like an nnU-Net folder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zeroshot.compare import compare_runs
from zeroshot.datasets import discover, select
from zeroshot.errors import ConfigError
from zeroshot.phantom import write_phantom_dataset
from zeroshot.runner import EvalConfig, run_eval
from zeroshot.scoring import score_files
from zeroshot.supervised import SliceCNNSettings, normalise, train_slice_cnn, write_predictions
from zeroshot.volume import read_volume

QUICK = SliceCNNSettings(steps=4, batch=2, patch_px=32, channels=4)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    """Five subjects: three T1 training cases, one test case per sequence."""
    return discover(write_phantom_dataset(tmp_path_factory.mktemp("phantom"), cases=5, seed=0))


def test_same_seed_same_masks_and_threads_restored(phantom) -> None:
    train = select(phantom, sequences=["T1"], splits=["train"])
    threads = torch.get_num_threads()
    first, second = train_slice_cnn(train, QUICK), train_slice_cnn(train, QUICK)
    assert torch.get_num_threads() == threads
    volume = read_volume(select(phantom, sequences=["OOP"], splits=["test"])[0].image)
    assert np.array_equal(first.predict(volume), second.predict(volume))
    for a, b in zip(first.network.parameters(), second.network.parameters(), strict=True):
        assert torch.equal(a, b)
    other = train_slice_cnn(train, SliceCNNSettings(steps=4, batch=2, patch_px=32, channels=4, seed=1))
    assert not torch.equal(next(other.network.parameters()), next(first.network.parameters()))


def test_predictions_are_written_in_the_baseline_preds_layout_on_each_image_grid(phantom, tmp_path) -> None:
    model = train_slice_cnn(select(phantom, sequences=["T1"], splits=["train"]), QUICK)
    assert model.train_sequence == "T1" and model.train_cases == ("phantom_000", "phantom_001", "phantom_002")
    test = select(phantom, splits=["test"])
    out = write_predictions(model, test, tmp_path / "preds")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.nii.gz")) == [
        "OOP/phantom_004.nii.gz",
        "T1/phantom_004.nii.gz",
        "T2/phantom_004.nii.gz",
    ]
    for case in test:  # the scorer's grid and binary checks accept them
        assert 0.0 <= score_files(case.label, out / case.sequence / f"{case.case_id}.nii.gz", label=1).dice <= 1.0
    assert model.describe()["settings"]["steps"] == QUICK.steps


def test_compare_scores_the_predictions_as_a_supervised_baseline(phantom, tmp_path) -> None:
    model = train_slice_cnn(select(phantom, sequences=["T1"], splits=["train"]), QUICK)
    preds = write_predictions(model, select(phantom, splits=["test"]), tmp_path / "preds")
    manifest = phantom[0].image.parents[3] / "manifest.csv"
    run = run_eval(
        EvalConfig(manifest, tmp_path / "run", ("box-fill",), ("box-mid",), splits=("test",), workers=0),
        progress=False,
    )
    output = compare_runs([run.out], tmp_path / "compare", baseline_predictions=[f"tiny-T1={preds}"])
    rows = output.cross_sequence
    supervised = rows.loc[rows["model"] == "tiny-T1"]
    assert len(supervised) == 3 and set(supervised["train_sequence"]) == {"T1"}  # one row per test sequence


def test_the_default_baseline_succeeds_in_sequence_and_collapses_across(phantom, tmp_path) -> None:
    model = train_slice_cnn(select(phantom, sequences=["T1"], splits=["train"]))
    dice = {}
    for case in select(phantom, splits=["test"]):
        volume = read_volume(case.image)
        write_predictions(model, [case], tmp_path)
        dice[case.sequence] = score_files(case.label, tmp_path / case.sequence / f"{case.case_id}.nii.gz", label=1).dice
        assert volume.shape == model.predict(volume).shape
    assert dice["T1"] > 0.7
    assert dice["T2"] < 0.1 and dice["OOP"] < 0.1


def test_normalise_is_a_z_score_over_non_zero_voxels() -> None:
    array = np.array([[[0.0, 2.0, 4.0]]])
    assert normalise(array).tolist() == [[[-3.0, -1.0, 1.0]]]
    assert normalise(np.zeros((1, 2, 2))).tolist() == [[[0.0, 0.0], [0.0, 0.0]]]  # no division by zero
    assert normalise(np.full((1, 1, 2), 7.0)).dtype == np.float32


def test_training_cases_must_share_one_sequence(phantom) -> None:
    with pytest.raises(ConfigError, match=r"expected training cases of one sequence, got OOP, T1, T2"):
        train_slice_cnn(select(phantom, splits=["test"]), QUICK)
    with pytest.raises(ConfigError, match=r"expected training cases of one sequence, got no cases"):
        train_slice_cnn([], QUICK)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("steps", 0, r"SliceCNNSettings.steps: expected a positive integer, got 0"),
        ("batch", 2.5, r"SliceCNNSettings.batch: expected a positive integer, got 2.5"),
        ("patch_px", True, r"SliceCNNSettings.patch_px: expected a positive integer, got True"),
        ("learning_rate", 0.0, r"SliceCNNSettings.learning_rate: expected a positive number, got 0.0"),
        ("centred_fraction", 1.5, r"SliceCNNSettings.centred_fraction: expected a share between 0 and 1, got 1.5"),
    ],
)
def test_bad_settings_are_refused(field, value, match) -> None:
    with pytest.raises(ConfigError, match=match):
        SliceCNNSettings(**{field: value})
