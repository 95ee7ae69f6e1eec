"""JSON round trip of prompts (mask prompts inline or as PNG files beside it), prompt files, and the value types."""

from __future__ import annotations

import base64
import dataclasses
import json
import zlib

import numpy as np
import pytest

from zeroshot.errors import PromptError
from zeroshot.prompts import (
    SlicePrompt,
    VolumePrompts,
    load_strategy,
    make_prompts,
    mask_dir_for,
    mask_file_name,
    prompts_from_json,
    prompts_to_json,
    read_prompts_file,
    write_prompt_masks,
    write_prompts_file,
)
from zeroshot.volume import volume_from_array


def _mask(shape=(8, 20, 26)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[2:6, 4:12, 5:20] = True
    mask[3, 15:18, 2:4] = True  # a second piece on slice 3
    return mask


def _make(name: str, seed: int = 0, case_id: str = "case_1") -> VolumePrompts:
    mask = _mask()
    volume = volume_from_array(np.zeros(mask.shape), (2.5, 0.9, 0.7))
    return make_prompts(load_strategy(name), case_id=case_id, volume=volume, source_mask=mask, seed=seed)


def _same(a: VolumePrompts, b: VolumePrompts) -> None:
    assert (a.case_id, a.strategy, a.seed, a.source) == (b.case_id, b.strategy, b.seed, b.source)
    assert dict(a.oracle) == dict(b.oracle) and dict(a.details) == dict(b.details)
    assert len(a.slices) == len(b.slices)
    for s, t in zip(a.slices, b.slices, strict=True):
        assert (s.z, s.box, s.points, s.labels) == (t.z, t.box, t.points, t.labels)
        assert (s.mask is None) == (t.mask is None)
        if s.mask is not None:
            assert np.array_equal(s.mask, t.mask)


@pytest.mark.parametrize("name", ["box-mid-jitter10", "points-3pos-3neg", "box-point-mid", "box-every-slice"])
def test_json_round_trip_gives_the_same_prompts(name):
    prompts = _make(name, seed=5)
    text = prompts_to_json(prompts)
    assert "\n" not in text
    data = json.loads(text)
    assert list(data)[:6] == ["case_id", "strategy", "seed", "source", "oracle", "slices"]
    assert set(data["slices"][0]) == {"z", "box", "points", "labels", "mask"}
    back = prompts_from_json(text)
    _same(prompts, back)
    assert prompts_to_json(back) == text
    assert isinstance(back.slices[0].points, tuple)


def test_mask_prompts_travel_inline_by_default():
    prompts = _make("mask-mid")
    text = prompts_to_json(prompts)
    inline = json.loads(text)["slices"][0]["mask"]
    assert sorted(inline) == ["bits", "sha256", "shape"] and inline["shape"] == [20, 26]
    packed = zlib.decompress(base64.b64decode(inline["bits"]))  # the documented encoding, decoded independently
    mask = np.unpackbits(np.frombuffer(packed, np.uint8), count=20 * 26).reshape(20, 26).astype(bool)
    assert np.array_equal(mask, prompts.slices[0].mask)
    assert inline["sha256"].startswith(mask_file_name("case_1", 3, mask).split("_")[-1][: -len(".png")])
    back = prompts_from_json(text)  # no mask_dir: the record carries the mask
    _same(prompts, back)
    assert back.slices[0].mask.dtype == bool and back.slices[0].mask.flags.writeable
    assert prompts_to_json(back) == text


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (7, 9), (512, 512)])
def test_inline_masks_of_any_size_round_trip_bit_for_bit(shape):
    rng = np.random.default_rng(sum(shape))
    mask = rng.random(shape) < 0.3
    prompts = VolumePrompts("c", "mask", 0, "gt", (SlicePrompt(z=0, mask=mask),))
    (back,) = prompts_from_json(prompts_to_json(prompts)).slices
    assert back.mask.shape == shape and np.array_equal(back.mask, mask)


def _inline(**changes) -> str:
    data = json.loads(prompts_to_json(_make("mask-mid")))
    data["slices"][0]["mask"].update(changes)
    return json.dumps(data)


def _bits(mask: np.ndarray) -> str:
    return base64.b64encode(zlib.compress(np.packbits(mask, axis=None).tobytes())).decode()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (_inline(sha256="0" * 64), r"slices\[0\]: mask: the mask does not match its sha256"),
        (_inline(bits=_bits(np.ones((20, 26), bool))), r"mask: the mask does not match its sha256"),
        (_inline(bits="%%%"), r"mask: bits: not base64 of zlib-compressed packed bits"),
        (_inline(bits=base64.b64encode(b"plain").decode()), r"mask: bits: not base64 of zlib-compressed"),
        (_inline(bits=_bits(np.ones((4, 4), bool))), r"mask: bits: 2 bytes, but a 20x26 mask packs into 65"),
        (_inline(shape=[20]), r"mask: shape: expected a list of 2 integers"),
        (_inline(shape=[0, 26]), r"mask: shape: expected two sizes of at least 1, got \[0, 26\]"),
        (_inline(bits=5), r"mask: bits: expected str, got 5"),
        (_inline(sha256=None), r"mask: sha256: expected str"),
    ],
)
def test_a_damaged_inline_mask_is_named(text, match):
    with pytest.raises(PromptError, match=match):
        prompts_from_json(text)


def test_an_inline_mask_without_its_digest_is_named():
    data = json.loads(_inline())
    del data["slices"][0]["mask"]["sha256"]
    with pytest.raises(PromptError, match=r"slices\[0\]: mask: missing key\(s\) \['sha256'\]"):
        prompts_from_json(json.dumps(data))


def test_mask_prompts_travel_as_png_files(tmp_path):
    prompts = _make("mask-mid")
    text = prompts_to_json(prompts, mask_files=True)
    name = json.loads(text)["slices"][0]["mask"]
    assert name.startswith("case_1_z0003_") and name.endswith(".png")
    (path,) = write_prompt_masks(prompts, tmp_path)
    assert path.name == name
    back = prompts_from_json(text, mask_dir=tmp_path)
    _same(prompts, back)
    assert prompts_to_json(back, mask_files=True) == text
    mtime = path.stat().st_mtime_ns
    assert write_prompt_masks(prompts, tmp_path) == [path]  # same content, same name: kept
    assert path.stat().st_mtime_ns == mtime


def test_prompts_file_is_byte_identical_for_the_same_seed(tmp_path):
    sets = [_make(n, seed=s, case_id=f"c{s}") for n in ("box-mid-jitter10", "mask-mid") for s in (0, 1)]
    first, second = tmp_path / "a" / "prompts.jsonl", tmp_path / "b" / "prompts.jsonl"
    assert write_prompts_file(first, sets) == 4
    write_prompts_file(second, (p for p in sets))
    assert first.read_bytes() == second.read_bytes()
    assert mask_dir_for(first) == tmp_path / "a" / "prompts.masks"
    assert len(list(mask_dir_for(first).glob("*.png"))) == 2
    assert all(
        isinstance(s["mask"], str) for line in first.read_text().splitlines()[2:] for s in json.loads(line)["slices"]
    )
    back = read_prompts_file(first)
    for a, b in zip(sets, back, strict=True):
        _same(a, b)
    other_seed = _make("box-mid-jitter10", seed=7, case_id="c0")
    assert prompts_to_json(other_seed) != prompts_to_json(sets[0])


def test_prompts_file_skips_blank_lines_and_names_the_bad_line(tmp_path):
    path = tmp_path / "p.jsonl"
    write_prompts_file(path, [_make("box-mid")])
    path.write_text(path.read_text() + "\n\n{not json}\n")
    with pytest.raises(PromptError, match=r"p.jsonl:4: prompts: not valid JSON"):
        read_prompts_file(path)
    with pytest.raises(PromptError, match=r"nothing.jsonl: prompts file not found"):
        read_prompts_file(tmp_path / "nothing.jsonl")


def _valid() -> dict:
    return json.loads(prompts_to_json(_make("box-point-mid")))


def _with(path: tuple, value) -> str:
    data = _valid()
    node = data
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return json.dumps(data)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[1, 2]", r"prompts: expected a JSON object, got list"),
        (_with(("slices",), KeyError), r"prompts: missing key\(s\) \['slices'\]"),
        (_with(("case_id",), 3), r"prompts: case_id: expected str, got 3"),
        (_with(("seed",), True), r"prompts of case case_1: seed: expected int, got True"),
        (_with(("oracle",), {"gt_prompt": 1}), r"oracle: every flag must be true or false"),
        (_with(("slices",), {}), r"slices: expected list"),
        (_with(("slices", 0, "labels"), KeyError), r"slices\[0\]: missing key\(s\) \['labels'\]"),
        (_with(("slices", 0), 3), r"slices\[0\]: slice: expected dict, got 3"),
        (_with(("slices", 0, "box"), [1, 2, 3]), r"slices\[0\]: box: expected a list of 4 integers"),
        (_with(("slices", 0, "box"), [1, 2, 3, 4.5]), r"slices\[0\]: box: expected int, got 4.5"),
        (_with(("slices", 0, "points"), [[1]]), r"points: expected a list of 2 integers, got \[1\]"),
        (_with(("slices", 0, "labels"), [2]), r"point labels must be 1 \(positive\) or 0 \(negative\)"),
        (_with(("slices", 0, "mask"), "m.png"), r"refers to mask file 'm.png'; pass mask_dir to read it"),
        (_with(("details",), []), r"details: expected dict"),
    ],
)
def test_bad_json_is_named(text, match):
    with pytest.raises(PromptError, match=match):
        prompts_from_json(text)


def test_a_prompts_file_with_inline_masks_reads_too(tmp_path):
    path = tmp_path / "inline.jsonl"
    sets = [_make("mask-mid", seed=s, case_id=f"c{s}") for s in (0, 1)]
    path.write_text("".join(prompts_to_json(p) + "\n" for p in sets))
    for a, b in zip(sets, read_prompts_file(path), strict=True):
        _same(a, b)


def test_mask_file_problems_are_named(tmp_path):
    prompts = _make("mask-mid")
    data = json.loads(prompts_to_json(prompts, mask_files=True))
    name = data["slices"][0]["mask"]
    with pytest.raises(PromptError, match=r"mask file .*case_1_z0003_.*\.png not found"):
        prompts_from_json(json.dumps(data), mask_dir=tmp_path)
    data["slices"][0]["mask"] = "../x.png"
    with pytest.raises(PromptError, match=r"mask file name '../x.png' must not contain a folder"):
        prompts_from_json(json.dumps(data), mask_dir=tmp_path)
    data["slices"][0]["mask"] = name
    (path,) = write_prompt_masks(prompts, tmp_path)
    path.write_bytes(b"not a png")
    with pytest.raises(PromptError, match=r"is not a single-channel PNG mask"):
        prompts_from_json(json.dumps(data), mask_dir=tmp_path)
    changed = dataclasses.replace(prompts.slices[0], mask=~prompts.slices[0].mask)
    write_prompt_masks(dataclasses.replace(prompts, slices=(changed,)), tmp_path)
    (tmp_path / path.name).unlink()
    other = next(tmp_path.glob("*.png"))
    other.rename(path)
    with pytest.raises(PromptError, match=r"does not hold the mask its name promises"):
        prompts_from_json(json.dumps(data), mask_dir=tmp_path)


def test_details_that_json_cannot_hold_are_refused():
    prompts = dataclasses.replace(_make("box-mid"), details={"x": float("nan")})
    with pytest.raises(PromptError, match=r"case case_1: prompts cannot be written as JSON"):
        prompts_to_json(prompts)


# ---------------------------------------------------------------------------------------------------- the types


def test_slice_prompt_checks_itself():
    with pytest.raises(PromptError, match=r"slice 3: 1 points but 0 labels"):
        SlicePrompt(z=3, points=((1, 2),))
    with pytest.raises(PromptError, match=r"slice 3: point labels must be 1 \(positive\) or 0 \(negative\)"):
        SlicePrompt(z=3, points=((1, 2),), labels=(5,))
    with pytest.raises(PromptError, match=r"slice 3: box \(5, 0, 4, 2\) has x1 < x0 or y1 < y0"):
        SlicePrompt(z=3, box=(5, 0, 4, 2))
    with pytest.raises(PromptError, match=r"slice 3: a prompt needs a box, points or a mask"):
        SlicePrompt(z=3)


def test_slice_prompt_fits_the_volume():
    shape = (4, 10, 20)  # z, y, x
    SlicePrompt(z=3, box=(0, 0, 19, 9)).validate_for(shape)
    with pytest.raises(PromptError, match=r"key slice 4 is outside the volume's 4 slices"):
        SlicePrompt(z=4, box=(0, 0, 1, 1)).validate_for(shape)
    with pytest.raises(PromptError, match=r"box \(0, 0, 10, 19\) leaves the 20x10 \(x by y\) slice"):
        SlicePrompt(z=0, box=(0, 0, 10, 19)).validate_for(shape)
    with pytest.raises(PromptError, match=r"point \(3, 10\) leaves the 20x10"):
        SlicePrompt(z=0, points=((3, 10),), labels=(1,)).validate_for(shape)
    with pytest.raises(PromptError, match=r"mask shape \(20, 10\) is not the slice shape \(10, 20\)"):
        SlicePrompt(z=0, mask=np.ones((20, 10), bool)).validate_for(shape)


def test_volume_prompts_checks_its_slices():
    one = SlicePrompt(z=2, box=(0, 0, 1, 1))
    with pytest.raises(PromptError, match=r"case c: no key slice"):
        VolumePrompts("c", "s", 0, "gt", ())
    with pytest.raises(PromptError, match=r"case c: key slices must be unique and sorted, got \[2, 2\]"):
        VolumePrompts("c", "s", 0, "gt", (one, one))
    assert VolumePrompts("c", "s", 0, "gt", (one,)).key_slices == (2,)
