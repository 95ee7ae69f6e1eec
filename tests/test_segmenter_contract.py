"""The contract every segmenter keeps, checked the same way on each: the tiny random models and the baselines.

One parametrised suite over SAM2 (native, random tiny config), SAM2 on transformers, the SAM 3 tracker on
transformers, nnInteractive (a tiny random trained-model folder), GrabCut and box-fill:

- the same inputs give the same mask (twice on one session, and on a second session of the same segmenter);
- the image is encoded once per volume, however many calls and click rounds follow (models with an encoder);
- a key slice at either end of the volume, and several key slices, are handled (video models: the passes reach
  every slice from the first and the last key slice);
- every prompt kind zeroshot makes (box, points, mask, and their combinations, negative clicks alone) runs, but
  the one a segmenter cannot take, which is a clear error naming the case and slice.

Random weights test machinery, never accuracy: no assertion here is about how good a mask is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from zeroshot.errors import PromptError, SegmenterError
from zeroshot.interactive import ClickSettings, simulate
from zeroshot.phantom import make_phantom_case
from zeroshot.prompts import SlicePrompt, VolumePrompts
from zeroshot.prompts.regions import tight_box
from zeroshot.segmenters import build_segmenter
from zeroshot.segmenters.base import Segmenter, Session

SHAPE = (8, 48, 56)


@dataclass(frozen=True)
class Contract:
    """What one segmenter promises: how to build it, whether it encodes, the prompt kind it refuses (all others run)."""

    build: Callable[[object], Segmenter]
    encodes: bool
    video: bool
    refused: tuple[str, str] | None  # (prompt kind, message pattern)


def _nninteractive(tmp_path_factory):
    from zeroshot.segmenters.nninteractive_tiny import write_tiny_model_folder

    folder = write_tiny_model_folder(tmp_path_factory.mktemp("nninteractive") / "tiny", seed=0)
    return build_segmenter(str(folder), device="cpu")


CONTRACTS = {
    "sam2": Contract(
        lambda _: build_segmenter("random:sam2.1_hiera_t@64", device="cpu"),
        encodes=True,
        video=True,
        refused=None,  # SAM2's predictor takes every kind, a mask with clicks included
    ),
    "transformers-sam2": Contract(
        lambda _: build_segmenter("random:transformers-tiny@64", device="cpu"),
        encodes=True,
        video=True,
        refused=("mask+points", r"case phantom_000, slice \d+: the transformers backend takes a mask or a box/points"),
    ),
    "sam3": Contract(
        lambda _: build_segmenter("random:sam3@56", device="cpu"),
        encodes=True,
        video=True,
        refused=("mask+points", r"case phantom_000, slice \d+: the transformers backend takes a mask or a box/points"),
    ),
    "nninteractive": Contract(
        _nninteractive,
        encodes=True,
        video=False,
        refused=None,  # the v1 capabilities take every kind zeroshot makes (3D boxes are never made)
    ),
    "grabcut": Contract(
        lambda _: build_segmenter("grabcut", iterations=1, working_size_px=48),
        encodes=False,
        video=False,
        refused=("negative-points", r"case phantom_000: grabcut needs a box, a mask or a positive point"),
    ),
    "box-fill": Contract(
        lambda _: build_segmenter("box-fill"),
        encodes=False,
        video=False,
        refused=None,  # the prompt alone is its answer: every kind paints something (or nothing)
    ),
}


@pytest.fixture(scope="module")
def case():
    return make_phantom_case(0, index=0, shape=SHAPE)


@pytest.fixture(scope="module")
def volume(case):
    return case.volumes["T1"]


@pytest.fixture(scope="module", params=sorted(CONTRACTS))
def contract(request, tmp_path_factory, one_torch_thread):
    spec = CONTRACTS[request.param]
    return spec, spec.build(tmp_path_factory)


@pytest.fixture
def session(contract, volume):
    """A fresh session per test (nnInteractive holds one image at a time: a second one would end the first)."""
    _, segmenter = contract
    prepared = segmenter.prepare(volume)
    yield prepared
    prepared.close()


def _box(label: np.ndarray, z: int) -> tuple[int, int, int, int]:
    box = tight_box(label[z])
    if box is None:  # a slice outside the structure: a box in the middle of the slice
        height, width = label.shape[1:]
        return (width // 3, height // 3, 2 * width // 3, 2 * height // 3)
    return box


def _slice_prompt(kind: str, label: np.ndarray, z: int) -> SlicePrompt:
    box = _box(label, z)
    centre = ((box[0] + box[2]) // 2, (box[1] + box[3]) // 2)
    corner = (0, 0)
    mask = label[z] if label[z].any() else np.zeros(label.shape[1:], dtype=bool)
    if not mask.any():
        mask[box[1] : box[3] + 1, box[0] : box[2] + 1] = True
    prompts = {
        "box": SlicePrompt(z=z, box=box),
        "points": SlicePrompt(z=z, points=(centre, corner), labels=(1, 0)),
        "mask": SlicePrompt(z=z, mask=mask),
        "mask+points": SlicePrompt(z=z, mask=mask, points=(centre,), labels=(1,)),
        "box+points": SlicePrompt(z=z, box=box, points=(centre, corner), labels=(1, 0)),
        "negative-points": SlicePrompt(z=z, points=(corner,), labels=(0,)),
    }
    return prompts[kind]


def _prompts(*slices: SlicePrompt) -> VolumePrompts:
    return VolumePrompts(case_id="phantom_000", strategy="contract", seed=0, source="gt", slices=tuple(slices))


def _middle(label: np.ndarray) -> int:
    return int(np.flatnonzero(label.any(axis=(1, 2))).mean())


def _check_result(result, volume) -> None:
    assert result.mask.shape == volume.shape and result.mask.dtype == bool
    if result.probabilities is not None:
        assert result.probabilities.shape == volume.shape


def test_it_is_a_segmenter_with_a_session(contract, session):
    _, segmenter = contract
    assert isinstance(segmenter, Segmenter) and isinstance(session, Session)
    assert segmenter.describe()["name"]


def test_the_same_inputs_give_the_same_mask(contract, session, case, volume):
    _, segmenter = contract
    prompts = _prompts(_slice_prompt("box", case.label, _middle(case.label)))
    first = session.segment(prompts)
    session.segment(_prompts(_slice_prompt("box", case.label, 0)))  # an unrelated call in between
    again = session.segment(prompts)
    np.testing.assert_array_equal(first.mask, again.mask)
    session.close()
    other = segmenter.prepare(volume)
    np.testing.assert_array_equal(other.segment(prompts).mask, first.mask)
    other.close()


def test_the_image_is_encoded_once_per_volume_across_calls_and_click_rounds(contract, session, case, volume):
    spec, _ = contract
    prompts = _prompts(_slice_prompt("box", case.label, _middle(case.label)))
    rounds = list(simulate(session, case.label, prompts, settings=ClickSettings(rounds=2)))
    assert [r.round for r in rounds] == [0, 1, 2]
    for r in rounds:
        _check_result(r.segmentation, volume)
    info = rounds[-1].segmentation.info
    if spec.encodes:
        assert info["encoder_slices_total"] == volume.num_slices
    else:
        assert "encoder_slices_total" not in info


@pytest.mark.parametrize("where", ["first", "last"])
def test_a_key_slice_at_either_end(contract, session, case, volume, where):
    spec, _ = contract
    z = 0 if where == "first" else volume.num_slices - 1
    result = session.segment(_prompts(_slice_prompt("box", case.label, z)))
    _check_result(result, volume)
    if spec.video:
        reached = {
            s
            for p in result.info["passes"]
            for s in (
                range(p["start"], p["start"] + p["slices"])
                if p["direction"] == "forward"
                else range(p["start"], p["start"] - p["slices"], -1)
            )
        }
        assert reached == set(range(volume.num_slices))


def test_several_key_slices(contract, session, case, volume):
    spec, _ = contract
    covered = np.flatnonzero(case.label.any(axis=(1, 2)))
    low, high = int(covered.min()), int(covered.max())
    result = session.segment(_prompts(_slice_prompt("box", case.label, low), _slice_prompt("box", case.label, high)))
    _check_result(result, volume)
    if spec.video:
        assert result.info["key_slices"] == [low, high]
        assert [(p["direction"], p["start"]) for p in result.info["passes"]] == [("forward", low), ("reverse", high)]


KINDS = ("box", "points", "mask", "mask+points", "box+points", "negative-points")


@pytest.mark.parametrize("kind", KINDS)
def test_every_prompt_kind_runs_but_the_one_it_refuses_clearly(contract, session, case, volume, kind):
    spec, _ = contract
    prompts = _prompts(_slice_prompt(kind, case.label, _middle(case.label)))
    if spec.refused is not None and kind == spec.refused[0]:
        with pytest.raises((SegmenterError, PromptError), match=spec.refused[1]):
            session.segment(prompts)
    else:
        _check_result(session.segment(prompts), volume)


def test_segmenter_modules_import_each_other_one_way():
    """No import cycle in zeroshot/segmenters (module-level imports; sessions never import their segmenter)."""
    import ast
    from pathlib import Path

    import zeroshot.segmenters as package

    folder = Path(package.__file__).parent
    graph: dict[str, set[str]] = {}
    for path in folder.glob("*.py"):
        imports = set()
        # Module level, ``if TYPE_CHECKING:`` blocks included (a design dependency all the same); lazy imports
        # inside functions are how the registry reaches the backends, and are fine.
        body = ast.parse(path.read_text()).body
        nodes = [*body, *(inner for node in body if isinstance(node, ast.If) for inner in node.body)]
        for node in nodes:
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("zeroshot.segmenters."):
                imports.add(node.module.removeprefix("zeroshot.segmenters."))
        graph[path.stem] = imports
    assert "sam2_video" not in graph["sam2_session"] and "transformers_video" not in graph["video_core"]

    def cycle_from(start: str, seen: tuple[str, ...]) -> tuple[str, ...] | None:
        for nxt in sorted(graph.get(start, ())):
            if nxt in seen:
                return (*seen, nxt)
            found = cycle_from(nxt, (*seen, nxt))
            if found:
                return found
        return None

    cycles = {name: cycle_from(name, (name,)) for name in graph}
    assert not any(cycles.values()), {name: path for name, path in cycles.items() if path}


def test_video_info_is_typed_read_only_and_reads_as_the_recorded_json(case, volume):
    import json

    from zeroshot.segmenters.video_core import Pass, VideoInfo

    session = build_segmenter("random:sam3@56", device="cpu").prepare(volume)
    info = session.segment(_prompts(_slice_prompt("box", case.label, _middle(case.label)))).info
    assert isinstance(info, VideoInfo) and all(isinstance(p, Pass) for p in info.passes)
    assert info["passes"] == [p.as_dict() for p in info.passes] and json.loads(json.dumps(info)) == dict(info)
    assert "engine" not in info and "lockstep" not in info  # SAM2-only fields are left out, not null
    with pytest.raises(TypeError, match="VideoInfo is read-only; copy it with dict"):
        info["z_extent"] = [0, 1]
    assert {**info, "z_extent": [0, 1]}["z_extent"] == [0, 1]
    import copy
    import pickle

    for again in (pickle.loads(pickle.dumps(info)), copy.deepcopy(info)):
        assert isinstance(again, VideoInfo) and again == info and again.passes == info.passes
