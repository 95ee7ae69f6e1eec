"""nnInteractive on a tiny random trained-model folder, through the package's own loading and inference code.

Random weights test machinery (coordinates reaching nnInteractive, interaction bookkeeping, determinism, loading),
never accuracy: no Dice value here says anything about nnInteractive.
"""

import json
import sys

import numpy as np
import pandas as pd
import pytest
from test_runner import SHAPE, write_tiny_dataset

from zeroshot.checkpoints import download, sha256_of
from zeroshot.cli import main
from zeroshot.errors import PromptError, SegmenterError
from zeroshot.interactive import ClickSettings, simulate
from zeroshot.prompts import SlicePrompt, VolumePrompts
from zeroshot.segmenters import build_segmenter
from zeroshot.segmenters.base import Segmenter, Session
from zeroshot.segmenters.nninteractive import NnInteractiveSegmenter
from zeroshot.segmenters.nninteractive_tiny import write_tiny_model_folder
from zeroshot.volume import volume_from_array

pytest.importorskip("nnInteractive.inference.inference_session")

PACKAGE_CALLS = (
    "set_image",
    "reset_interactions",
    "add_bbox_interaction",
    "add_point_interaction",
    "add_initial_seg_interaction",
)


class Calls:
    """Records the package calls the segmenter makes on its nnInteractive inference session."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, inference) -> None:
        self.log: list[tuple[str, tuple, dict]] = []
        for name in PACKAGE_CALLS:
            original = getattr(inference, name)

            def wrapper(*args, _name=name, _original=original, **kwargs):
                self.log.append((_name, args, kwargs))
                return _original(*args, **kwargs)

            monkeypatch.setattr(inference, name, wrapper)

    def names(self) -> list[str]:
        return [name for name, _, _ in self.log]


def _prompts(*slices: SlicePrompt) -> VolumePrompts:
    return VolumePrompts(case_id="phantom", strategy="test", seed=0, source="gt", slices=tuple(slices))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_tiny_model_folder(tmp_path_factory.mktemp("nninteractive") / "tiny", seed=0)


@pytest.fixture(scope="module")
def segmenter(folder):
    return NnInteractiveSegmenter(model_folder=folder, device="cpu")


@pytest.fixture(scope="module")
def volume(phantom_case):
    return phantom_case.volumes["T1"]


@pytest.fixture(scope="module")
def key_box(phantom_case):
    """The middle ground-truth slice and the inclusive box of the structure there."""
    z = int(np.flatnonzero(phantom_case.label.any(axis=(1, 2))).mean())
    ys, xs = np.nonzero(phantom_case.label[z])
    return z, (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))


@pytest.fixture(scope="module")
def box_result(segmenter, volume, key_box):
    z, box = key_box
    with segmenter.prepare(volume) as session:
        return session.segment(_prompts(SlicePrompt(z=z, box=box)))


def test_segmenter_and_session_satisfy_the_protocols(segmenter, volume):
    assert isinstance(segmenter, Segmenter)
    with segmenter.prepare(volume) as session:
        assert isinstance(session, Session)


def test_a_box_reaches_nninteractive_as_a_2d_box_in_z_y_x(segmenter, volume, key_box, monkeypatch, capsys):
    z, (x0, y0, x1, y1) = key_box
    calls = Calls(monkeypatch, segmenter.inference)
    rng_before = np.random.get_state()[1].copy()  # noqa: NPY002 - the legacy global generator nnInteractive uses
    with segmenter.prepare(volume) as session:
        result = session.segment(_prompts(SlicePrompt(z=z, box=(x0, y0, x1, y1))))
    assert calls.names() == ["set_image", "add_bbox_interaction"]
    (image, properties), _ = calls.log[0][1], calls.log[0][2]
    assert image.shape == (1, *volume.shape) and image.dtype == np.float32
    np.testing.assert_array_equal(image[0], volume.array)  # raw intensities: nnInteractive normalises itself
    assert properties == {"spacing": list(volume.spacing_mm)}
    assert calls.log[1][1] == ([[z, z + 1], [y0, y1 + 1], [x0, x1 + 1]],)
    assert calls.log[1][2] == {"include_interaction": True}
    assert result.mask.shape == volume.shape and result.mask.dtype == bool and result.mask.any()
    assert result.probabilities is None
    info = result.info
    assert info["interactions_added"] == [{"kind": "box", "z": z, "box": [x0, y0, x1, y1]}]
    assert (info["interactions_total"], info["interactions_kept"], info["interactions_reset"]) == (1, 0, False)
    assert info["images_set"] == 1 and info["encoder_slices_total"] == volume.num_slices
    assert info["encoder_slices_segment"] == 0 and json.dumps(info)
    assert capsys.readouterr().out == "", "nnInteractive's progress prints are silenced unless verbose"
    rng_after = np.random.get_state()[1]  # noqa: NPY002
    assert np.array_equal(rng_after, rng_before), "the caller's NumPy generator is left as it was"


def test_positive_and_negative_points_are_3d_clicks(segmenter, volume, key_box, monkeypatch):
    z, (x0, y0, x1, y1) = key_box
    calls = Calls(monkeypatch, segmenter.inference)
    inside, outside = ((x0 + x1) // 2, (y0 + y1) // 2), (1, 2)
    with segmenter.prepare(volume) as session:
        result = session.segment(_prompts(SlicePrompt(z=z, points=(inside, outside), labels=(1, 0))))
    points = [(args, kwargs) for name, args, kwargs in calls.log if name == "add_point_interaction"]
    assert points == [
        (((z, inside[1], inside[0]),), {"include_interaction": True}),
        (((z, 2, 1),), {"include_interaction": False}),
    ]
    assert [a["positive"] for a in result.info["interactions_added"]] == [True, False]


def test_a_mask_prompt_is_the_initial_segmentation(segmenter, volume, phantom_case, key_box, monkeypatch):
    z, _ = key_box
    calls = Calls(monkeypatch, segmenter.inference)
    with segmenter.prepare(volume) as session:
        result = session.segment(_prompts(SlicePrompt(z=z, mask=phantom_case.label[z])))
    ((_, (initial,), kwargs),) = [entry for entry in calls.log if entry[0] == "add_initial_seg_interaction"]
    assert kwargs == {"run_prediction": True} and initial.shape == volume.shape and initial.dtype == np.uint8
    assert np.array_equal(initial[z], phantom_case.label[z]) and not np.delete(initial, z, axis=0).any()
    assert result.info["interactions_added"] == [{"kind": "initial_segmentation", "slices": [z]}]


def test_several_key_slices_give_one_box_each_in_slice_order(segmenter, volume, key_box, monkeypatch):
    z, box = key_box
    calls = Calls(monkeypatch, segmenter.inference)
    with segmenter.prepare(volume) as session:
        result = session.segment(_prompts(*(SlicePrompt(z=k, box=box) for k in (z - 2, z, z + 2))))
    boxes = [args[0] for name, args, _ in calls.log if name == "add_bbox_interaction"]
    assert [b[0] for b in boxes] == [[z - 2, z - 1], [z, z + 1], [z + 2, z + 3]]
    assert result.info["key_slices"] == [z - 2, z, z + 2]


@pytest.mark.parametrize("end", ["first", "last"])
def test_a_key_slice_at_either_end_of_the_volume(segmenter, volume, key_box, end):
    _, box = key_box
    z = 0 if end == "first" else volume.num_slices - 1
    with segmenter.prepare(volume) as session:
        result = session.segment(_prompts(SlicePrompt(z=z, box=box)))
    assert result.mask.shape == volume.shape and result.info["interactions_added"][0]["z"] == z


def test_corrective_clicks_add_only_the_new_interactions_and_match_a_fresh_session(
    segmenter, volume, phantom_case, key_box, monkeypatch
):
    z, box = key_box
    initial = _prompts(SlicePrompt(z=z, box=box))
    calls = Calls(monkeypatch, segmenter.inference)
    with segmenter.prepare(volume) as session:
        rounds = list(simulate(session, phantom_case.label, initial, settings=ClickSettings(rounds=3)))
        again = session.segment(initial)  # not an extension of round 3: reset, then the box again
    clicks = rounds[-1].clicks
    assert len(clicks) == 3 and len({c.z for c in clicks}) > 1, "the clicks went to more than one slice"
    assert calls.names() == ["set_image", "add_bbox_interaction"] + ["add_point_interaction"] * 3 + [
        "reset_interactions",
        "add_bbox_interaction",
    ]
    infos = [r.segmentation.info for r in rounds]
    assert [i["interactions_kept"] for i in infos] == [0, 1, 2, 3]
    assert [len(i["interactions_added"]) for i in infos] == [1, 1, 1, 1]
    assert not any(i["interactions_reset"] for i in infos) and again.info["interactions_reset"]
    assert all(i["encoder_slices_total"] == volume.num_slices for i in infos), "the image was set once"
    assert np.array_equal(again.mask, rounds[0].segmentation.mask)
    # A resumed curve starts from the recorded clicks on a fresh session: the same interactions, the same mask.
    with segmenter.prepare(volume) as fresh:
        replayed = fresh.segment(rounds[-1].prompts)
    assert replayed.info["interactions_added"] == [
        record for i in infos for record in i["interactions_added"]
    ] and np.array_equal(replayed.mask, rounds[-1].segmentation.mask)


def test_the_same_inputs_give_the_same_mask_in_another_segmenter(folder, volume, key_box, box_result):
    z, box = key_box
    other = NnInteractiveSegmenter(model_folder=folder, device="cpu", name="again")
    with other.prepare(volume) as session:
        result = session.segment(_prompts(SlicePrompt(z=z, box=box)))
        repeated = session.segment(_prompts(SlicePrompt(z=z, box=box)))
    assert np.array_equal(result.mask, box_result.mask) and np.array_equal(repeated.mask, box_result.mask)
    assert repeated.info["interactions_added"] == [] and repeated.info["interactions_kept"] == 1


@pytest.mark.parametrize(
    ("capabilities", "prompt", "message"),
    [
        (
            {"points": False},
            SlicePrompt(z=3, points=((5, 5),), labels=(1,)),
            r"slice 3: .* does not take point prompts",
        ),
        ({"bbox2d": False}, SlicePrompt(z=4, box=(1, 1, 9, 9)), r"slice 4: .* does not take box prompts .*'bbox2d'"),
    ],
)
def test_prompt_kinds_the_checkpoint_does_not_take_are_refused(tmp_path, volume, capabilities, prompt, message):
    folder = write_tiny_model_folder(tmp_path / "limited", supported_interactions=capabilities)
    limited = NnInteractiveSegmenter(model_folder=folder, device="cpu")
    assert all(limited.describe()["supported_interactions"][k] is v for k, v in capabilities.items())
    with limited.prepare(volume) as session, pytest.raises(PromptError, match=message):
        session.segment(_prompts(prompt))


def test_a_closed_or_superseded_session_refuses_to_segment(segmenter, volume, phantom_case, key_box):
    z, box = key_box
    prompts = _prompts(SlicePrompt(z=z, box=box))
    first = segmenter.prepare(volume)
    second = segmenter.prepare(phantom_case.volumes["T2"])
    with pytest.raises(SegmenterError, match="holds one image at a time.*prepare this volume again"):
        first.segment(prompts)
    second.close()
    second.close()  # closing twice is harmless
    with pytest.raises(SegmenterError, match="session was closed"):
        second.segment(prompts)
    first.close()


def test_a_prompt_outside_the_volume_is_refused(segmenter, volume):
    with segmenter.prepare(volume) as session, pytest.raises(PromptError, match="outside the volume"):
        session.segment(_prompts(SlicePrompt(z=volume.num_slices, box=(1, 1, 3, 3))))


def test_an_all_zero_volume_is_refused_by_name(segmenter):
    empty = volume_from_array(np.zeros((4, 8, 8), np.float32), (1.0, 1.0, 1.0))
    with pytest.raises(
        SegmenterError, match="nnInteractive cannot take the volume .*entirely zero \\(nnInteractive normalises"
    ):
        segmenter.prepare(empty)


def test_a_folder_that_is_not_a_trained_model_is_refused(tmp_path):
    with pytest.raises(
        SegmenterError, match=r"nowhere is not an nnInteractive trained-model folder \(no such folder\)"
    ):
        NnInteractiveSegmenter(model_folder=tmp_path / "nowhere")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "plans.json").write_text("{}")
    with pytest.raises(SegmenterError, match=r"\(missing dataset.json\).*zeroshot checkpoints path nninteractive"):
        NnInteractiveSegmenter(model_folder=tmp_path / "half")
    with pytest.raises(SegmenterError, match="seed must be an integer"):
        NnInteractiveSegmenter(model_folder=tmp_path / "half", seed=0.5)


def test_options_the_package_cannot_honour_are_refused(folder, monkeypatch):
    with pytest.raises(SegmenterError, match="use_torch_compile=True needs a CUDA device"):
        NnInteractiveSegmenter(model_folder=folder, device="cpu", use_torch_compile=True)
    monkeypatch.setitem(sys.modules, "nnInteractive.inference.inference_session", None)
    with pytest.raises(SegmenterError, match=r"nnInteractive is not installed .*zeroshot\[nninteractive\]"):
        NnInteractiveSegmenter(model_folder=folder, device="cpu")


def test_an_interaction_nninteractive_refuses_is_named_and_the_next_call_starts_over(
    segmenter, volume, key_box, monkeypatch
):
    z, box = key_box
    inference = segmenter.inference
    original = inference.add_point_interaction

    def refuse(*args, **kwargs):
        raise ValueError("no such point")

    with segmenter.prepare(volume) as session:
        monkeypatch.setattr(inference, "add_point_interaction", refuse)
        with pytest.raises(SegmenterError, match=r"case phantom: nnInteractive refused .*'point'.*: no such point"):
            session.segment(_prompts(SlicePrompt(z=z, box=box, points=((box[0], box[1]),), labels=(1,))))
        monkeypatch.setattr(inference, "add_point_interaction", original)
        after = session.segment(_prompts(SlicePrompt(z=z, box=box)))
    assert after.info["interactions_reset"] and after.info["interactions_kept"] == 0


def test_a_checkpoint_the_package_cannot_load_is_named(tmp_path):
    folder = write_tiny_model_folder(tmp_path / "broken")
    (folder / "fold_0" / "checkpoint_final.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(SegmenterError, match=r"nnInteractive could not load .*broken: "):
        NnInteractiveSegmenter(model_folder=folder, device="cpu")


def test_describe_is_json_with_licence_weights_hash_and_random_weights_named(segmenter, folder):
    described = json.loads(json.dumps(segmenter.describe()))
    assert described["backend"] == "nninteractive" and described["nninteractive_version"] == "2.6.0"
    assert described["checkpoint_sha256"] == sha256_of(folder) and described["licence"] == "CC0-1.0"
    assert described["weights"].startswith("random weights") and "never accuracy" in described["weights"]
    assert described["patch_size"] == [64, 64, 64] and described["supported_interactions"]["bbox3d"] is False
    assert described["precision"] == "float32" and described["device"] == "cpu"


def test_the_tiny_folder_writer_refuses_unusable_settings(tmp_path):
    with pytest.raises(SegmenterError, match="patch_size must be three sizes of at least 49 voxels"):
        write_tiny_model_folder(tmp_path / "a", patch_size=(32, 64, 64))
    with pytest.raises(SegmenterError, match=r"foreground_fraction must lie in \(0, 1\)"):
        write_tiny_model_folder(tmp_path / "b", foreground_fraction=1.0)


# --------------------------------------------------------------------------------------------------- registry
def test_a_local_folder_loads_by_path_and_with_the_prefix(folder):
    by_path = build_segmenter(str(folder), device="cpu")
    by_prefix = build_segmenter(f"nninteractive:{folder}", device="cpu", do_autozoom=False)
    assert isinstance(by_path, NnInteractiveSegmenter) and by_path.name == "tiny"
    assert by_prefix.describe()["do_autozoom"] is False
    with pytest.raises(SegmenterError, match="nnInteractive works in the volume's own voxels; drop '@64'"):
        build_segmenter(f"nninteractive:{folder}@64")
    with pytest.raises(SegmenterError, match="it has no image size"):
        build_segmenter(str(folder), image_size=64)
    with pytest.raises(SegmenterError, match="nninteractive backend: .*unexpected keyword.*'window'"):
        build_segmenter(str(folder), window=3)


def test_the_checkpoint_list_entry_loads_its_verified_folder(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("ZEROSHOT_HOME", str(tmp_path / "home"))
    with pytest.raises(Exception, match="zeroshot checkpoints download nninteractive"):
        build_segmenter("nninteractive", device="cpu")
    resolved = download("nninteractive", source=folder, progress=False)
    assert resolved.path.name == "nnInteractive_v1.0" and resolved.sha256 == sha256_of(folder)
    built = build_segmenter("nninteractive", device="cpu")
    assert built.name == "nninteractive" and built.checkpoint_sha256 == resolved.sha256
    with pytest.raises(SegmenterError, match="nnInteractive works in the volume's own voxels"):
        build_segmenter("nninteractive@128")


# ------------------------------------------------------------------------------------------------ end to end
def test_eval_with_clicks_runs_end_to_end(folder, tmp_path, capsys):
    data = write_tiny_dataset(tmp_path / "data", subjects=1)
    out = tmp_path / "run"
    args = ["eval", "--data", str(data), "--sequence", "T1", "--model", str(folder), "--strategy", "box-mid"]
    assert main([*args, "--clicks", "5", "--device", "cpu", "--out", str(out), "--no-progress", "--workers", "0"]) == 0
    results = pd.read_parquet(out / "results.parquet")
    assert results["round"].tolist() == list(range(6)) and not results["failed"].any()
    assert set(results["model"]) == {str(folder)} and results["dice"].between(0, 1).all()
    from zeroshot.runner import RunDir

    infos = [record.info for record in sorted(RunDir(out).store.records(), key=lambda r: r.key)]
    assert [info["encoder_slices_total"] for info in infos] == [SHAPE[0]] * 6
    assert not any(info["interactions_reset"] for info in infos)
    manifest = json.loads((out / "run.json").read_text())
    assert "nninteractive" in json.dumps(manifest)


def test_a_curve_extended_later_equals_the_curve_made_at_once(folder, tmp_path):
    """Round 2 is rebuilt from its recorded clicks on a fresh session; rounds 3-4 then match an unbroken run."""
    data = write_tiny_dataset(tmp_path / "data", subjects=1)
    base = ["eval", "--data", str(data), "--sequence", "T1", "--model", str(folder), "--strategy", "box-mid"]
    base += ["--device", "cpu", "--no-progress", "--workers", "0", "--save-pred"]
    assert main([*base, "--clicks", "4", "--out", str(tmp_path / "once")]) == 0
    assert main([*base, "--clicks", "2", "--out", str(tmp_path / "later")]) == 0
    assert main([*base, "--clicks", "4", "--out", str(tmp_path / "later")]) == 0
    once, later = (pd.read_parquet(tmp_path / run / "results.parquet") for run in ("once", "later"))
    assert later["round"].tolist() == once["round"].tolist() == [0, 1, 2, 3, 4]
    assert later["clicks"].tolist() == once["clicks"].tolist()
    masks = [(tmp_path / "once" / path).read_bytes() for path in once["prediction"]]
    assert len(set(masks)) > 2, "the clicks changed the mask, so the comparison below is not vacuous"
    assert len({json.loads(c)[-1]["z"] for c in once["clicks"][1:]}) > 1, "clicks on more than one slice"
    for a, b in zip(once["prediction"], later["prediction"], strict=True):
        assert (tmp_path / "once" / a).read_bytes() == (tmp_path / "later" / b).read_bytes()
