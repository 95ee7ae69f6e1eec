"""The segmenter registry: names -> segmenters, from baselines to verified checkpoints (random weights only here).

Random weights test that a checkpoint saved from a SAM2.1-tiny model loads back through the registry, bit for
bit, and runs; they say nothing about accuracy.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from zeroshot import checkpoints as ck
from zeroshot.errors import CheckpointError, SegmenterError
from zeroshot.prompts import SlicePrompt, VolumePrompts
from zeroshot.segmenters import available_models, build_segmenter, cached_models, registry
from zeroshot.volume import volume_from_array

RANDOM_TINY = "random:sam2.1_hiera_t@256"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ZEROSHOT_HOME", str(tmp_path / "zeroshot-home"))
    monkeypatch.delenv("ZEROSHOT_CHECKPOINTS", raising=False)
    return tmp_path / "zeroshot-home"


@pytest.fixture(scope="module")
def random_tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SAM2.1-tiny (real config, 256 px) with seeded random weights, saved as sam2 does: {"model": state_dict}."""
    model = build_segmenter(RANDOM_TINY, device="cpu", seed=7)
    path = tmp_path_factory.mktemp("weights") / "sam2.1_tiny_random.pt"
    torch.save({"model": model.model.state_dict()}, path)
    return path


@pytest.fixture
def listed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, random_tiny_checkpoint: Path) -> Path:
    """A checkpoint list with the random checkpoint as a file:// entry (no hash: trusted on first use)."""
    listing = tmp_path / "checkpoints.txt"
    listing.write_text(
        "# test list\n"
        "tiny-random  sam2  configs/sam2.1/sam2.1_hiera_t.yaml  image_size=256  Apache-2.0  -  "
        f"{random_tiny_checkpoint.as_uri()}\n"
        "hf-random    transformers  -  -  Apache-2.0  -  hf://zeroshot-tests/hf-random\n"
    )
    monkeypatch.setenv("ZEROSHOT_CHECKPOINTS", str(listing))
    return listing


def test_importing_the_package_loads_no_model_code() -> None:
    code = (
        "import sys, zeroshot.segmenters as s; s.build_segmenter; s.available_models();"
        "print(sorted(m for m in ('torch', 'sam2', 'hydra', 'transformers', 'huggingface_hub') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_baselines_are_built_by_name_with_options() -> None:
    segmenter = build_segmenter("box-fill", device="cuda", interpolate_between_key_slices=True)
    assert segmenter.describe()["name"] == "box-fill" and segmenter.interpolate_between_key_slices
    with pytest.raises(SegmenterError, match=r"baseline 'box-fill': got an unexpected keyword .*'radius'"):
        build_segmenter("box-fill", radius=3)
    with pytest.raises(SegmenterError, match=r"'box-fill@256': the box-fill baseline has no image size"):
        build_segmenter("box-fill@256")


def test_a_missing_backend_module_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.BASELINES, "grabcut", ("zeroshot.segmenters.not_there", "GrabCutSegmenter"))
    with pytest.raises(SegmenterError, match=r"baseline 'grabcut' is not available .*not_there is missing"):
        build_segmenter("grabcut")


def test_unknown_names_list_what_is_available() -> None:
    with pytest.raises(SegmenterError, match=r"unknown segmenter 'sam4'; available: box-fill, grabcut, .*medsam2"):
        build_segmenter("sam4")
    names = available_models()
    assert {"box-fill", "grabcut", "medsam2", "sam2.1-large", "hf-sam2.1-tiny", RANDOM_TINY} <= set(names)


def test_an_entry_not_downloaded_gives_the_download_command() -> None:
    with pytest.raises(
        CheckpointError, match=r"(?s)'medsam2' is not in the cache.*zeroshot checkpoints download medsam2"
    ):
        build_segmenter("medsam2")
    with pytest.raises(SegmenterError, match=r"'medsam2' is a checkpoint-list entry .* fixes config"):
        build_segmenter("medsam2", config="sam2.1_hiera_l")
    assert cached_models() == ()


def test_a_checkpoint_path_needs_its_config(tmp_path: Path) -> None:
    with pytest.raises(SegmenterError, match=r"checkpoint path .*weights.pt' needs its SAM2 config: .*--config"):
        build_segmenter(str(tmp_path / "weights.pt"))


def test_random_weights_say_so() -> None:
    segmenter = build_segmenter(RANDOM_TINY, device="cpu")
    described = segmenter.describe()
    assert described["name"] == RANDOM_TINY and described["image_size"] == 256
    assert "random initialisation" in described["weights"] and "never accuracy" in described["weights"]
    assert described["checkpoint_sha256"] is None


def test_a_saved_random_checkpoint_loads_back_through_the_registry(listed: Path, random_tiny_checkpoint: Path) -> None:
    ck.download("tiny-random", progress=False)
    assert cached_models() == ("tiny-random",) and cached_models(backend="transformers") == ()

    segmenter = build_segmenter("tiny-random", device="cpu")

    saved = torch.load(random_tiny_checkpoint, weights_only=True)["model"]
    loaded = segmenter.model.state_dict()
    assert loaded.keys() == saved.keys()
    assert all(torch.equal(loaded[k].cpu(), saved[k]) for k in saved)
    described = segmenter.describe()
    assert described["name"] == "tiny-random" and described["image_size"] == 256
    assert (
        described["checkpoint_sha256"]
        == ck.sha256_of(random_tiny_checkpoint)
        == ck.recorded_sha256(ck.find_entry("tiny-random"))
    )


def test_a_changed_cached_checkpoint_is_refused(listed: Path) -> None:
    path = ck.download("tiny-random", progress=False).path
    with open(path, "r+b") as stream:  # flip one byte inside the archive
        stream.seek(1000)
        byte = stream.read(1)
        stream.seek(1000)
        stream.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(CheckpointError, match=r"'tiny-random' .* refusing to load it"):
        build_segmenter("tiny-random", device="cpu")
    assert cached_models() == ()


def test_a_checkpoint_changing_during_the_build_is_refused(listed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ck.download("tiny-random", progress=False)

    class Swapped:
        checkpoint_sha256 = "0" * 64

    monkeypatch.setattr(registry, "_build", lambda *args, **kwargs: Swapped())
    with pytest.raises(SegmenterError, match=r"changed while 'tiny-random' was being built"):
        build_segmenter("tiny-random")


def test_size_suffix_and_options_reach_the_backend(listed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ck.download("tiny-random", progress=False)
    built = {}

    def record(module: str, cls: str, *, what: str, **kwargs: object) -> object:
        built.update(kwargs, module=module)
        return type("Fake", (), {"checkpoint_sha256": ck.resolve_checkpoint("tiny-random").sha256})()

    monkeypatch.setattr(registry, "_build", record)
    build_segmenter("tiny-random@512", device="cuda", largest_component=True)
    assert built["image_size"] == 512 and built["largest_component"] is True and built["device"] == "cuda"
    assert built["config"] == "configs/sam2.1/sam2.1_hiera_t.yaml" and built["name"] == "tiny-random@512"
    assert built["module"] == "zeroshot.segmenters.sam2_video"
    assert built["checkpoint"] == ck.cached_path(ck.find_entry("tiny-random"))


def test_a_local_checkpoint_path_with_a_config(random_tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built = {}
    monkeypatch.setattr(registry, "_build", lambda module, cls, *, what, **kwargs: built.update(kwargs) or "model")
    assert build_segmenter(str(random_tiny_checkpoint), config="sam2.1_hiera_t", image_size=256) == "model"
    assert built["checkpoint"] == random_tiny_checkpoint and built["config"] == "sam2.1_hiera_t"
    assert built["name"] == "sam2.1_tiny_random" and built["image_size"] == 256


def test_a_local_checkpoint_follows_a_listed_recipe(
    random_tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``config=ENTRY``: a MedSAM2 file held locally runs with the config and options of the ``medsam2`` line."""
    built = {}
    monkeypatch.setattr(registry, "_build", lambda module, cls, *, what, **kwargs: built.update(kwargs) or "model")
    entry = ck.find_entry("medsam2")
    build_segmenter(str(random_tiny_checkpoint), config="medsam2", largest_component=False)
    assert built["config"] == entry.config and built["checkpoint"] == random_tiny_checkpoint
    assert built["image_size"] == dict(entry.options)["image_size"] == 512
    assert built["largest_component"] is False  # keyword options override the entry's


def test_random_weights_with_a_listed_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    built = {}
    monkeypatch.setattr(registry, "_build", lambda module, cls, *, what, **kwargs: built.update(kwargs) or "model")
    build_segmenter("random:medsam2@256", device="cpu")
    assert built["config"] == ck.find_entry("medsam2").config and built["checkpoint"] is None
    assert built["image_size"] == 256 and built["largest_component"] is True and built["name"] == "random:medsam2@256"
    build_segmenter("random:sam2.1_hiera_s")  # not an entry: a config name, as before
    assert built["config"] == "sam2.1_hiera_s"


@pytest.mark.slow
def test_a_local_checkpoint_path_loads_and_runs(random_tiny_checkpoint: Path) -> None:
    segmenter = build_segmenter(str(random_tiny_checkpoint), config="sam2.1_hiera_t", image_size=256, device="cpu")
    assert segmenter.describe()["checkpoint_sha256"] == ck.sha256_of(random_tiny_checkpoint)
    volume = volume_from_array(np.random.default_rng(0).random((4, 40, 48), dtype=np.float32), (3.0, 1.0, 1.0))
    prompts = VolumePrompts("case", "box-mid", 0, "gt", (SlicePrompt(z=2, box=(10, 12, 30, 28)),))
    with segmenter.prepare(volume) as session:
        assert session.segment(prompts).mask.shape == (4, 40, 48)


@pytest.fixture(scope="module")
def tiny_transformers_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random Sam2VideoModel saved in the Hub's transformers format (config.json + model.safetensors)."""
    from zeroshot.segmenters.transformers_video import tiny_sam2_video_model

    folder = tmp_path_factory.mktemp("hf-random")
    tiny_sam2_video_model(image_size=128, seed=3).save_pretrained(folder)
    return folder


def test_a_transformers_entry_loads_its_verified_folder(
    listed: Path, tiny_transformers_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ck.download("hf-random", source=tiny_transformers_folder, progress=False)
    assert cached_models(backend="transformers") == ("hf-random",)

    segmenter = build_segmenter("hf-random", device="cpu", largest_component=True)

    described = segmenter.describe()
    assert described["name"] == "hf-random" and described["backend"] == "transformers"
    assert described["weights_sha256"] == ck.recorded_sha256(ck.find_entry("hf-random"))
    assert described["model_id_or_path"] == str(ck.cached_path(ck.find_entry("hf-random")))
    assert described["largest_component"] is True and described["image_size"] == 128
    resized = build_segmenter("hf-random@256", device="cpu")
    assert resized.image_size == 256 and resized.model.config.memory_attention_rope_feat_sizes == [16, 16]
    with pytest.raises(SegmenterError, match=r"SAM2 runs at multiples of 32 pixels of at least 64, got 100"):
        build_segmenter("hf-random@100")
    monkeypatch.setitem(registry.BACKENDS, "transformers", registry.Backend("zeroshot.segmenters.nope", "X", "a", "b"))
    with pytest.raises(SegmenterError, match=r"the transformers backend is not available .*nope is missing"):
        build_segmenter("hf-random")


def test_random_transformers_model() -> None:
    segmenter = build_segmenter("random:transformers-tiny@64", device="cpu", seed=1)
    assert segmenter.image_size == 64 and segmenter.describe()["name"] == "random:transformers-tiny@64"
    assert "random weights" in segmenter.describe()["weights"]


def test_a_local_transformers_folder_loads_by_path_at_its_size_or_another(tiny_transformers_folder: Path) -> None:
    segmenter = build_segmenter(str(tiny_transformers_folder), device="cpu")
    assert segmenter.describe()["backend"] == "transformers" and segmenter.image_size == 128
    assert segmenter.name == tiny_transformers_folder.name and len(segmenter.weights_sha256) == 64
    assert build_segmenter(f"{tiny_transformers_folder}@64", device="cpu").image_size == 64


def test_random_sam3_tracker_and_a_saved_one_at_another_size(tmp_path: Path) -> None:
    segmenter = build_segmenter("random:sam3", device="cpu")
    described = segmenter.describe()
    assert described["model_type"] == "sam3_tracker_video" and described["model_class"] == "Sam3TrackerVideoModel"
    assert segmenter.image_size == 56 and "random weights" in described["weights"]
    # SAM 3's processor normalises with mean and std 0.5 after a bilinear resize; SAM2 keeps ImageNet's statistics.
    assert described["preprocessing"]["mean"] == [0.5] * 3 and described["preprocessing"]["resize"] == "bilinear"
    assert build_segmenter("random:transformers-tiny@64").describe()["preprocessing"]["pipeline"] == "sam2"
    assert build_segmenter("random:sam3@112", device="cpu").image_size == 112
    segmenter.model.save_pretrained(tmp_path / "sam3-tiny")
    loaded = build_segmenter(f"{tmp_path / 'sam3-tiny'}@112", device="cpu")
    assert loaded.image_size == 112 and loaded.model.config.memory_attention_rope_feat_sizes == [8, 8]
    with pytest.raises(SegmenterError, match=r"SAM 3 runs at multiples of 28 pixels \(14-pixel patches in windows"):
        build_segmenter(f"{tmp_path / 'sam3-tiny'}@70", device="cpu")


@pytest.mark.parametrize("name", ["sam3.1", "random:sam3.1", "sam3.1@512"])
def test_sam3_1_is_refused_with_the_reason(name: str) -> None:
    with pytest.raises(SegmenterError, match=r"SAM 3.1 \(facebook/sam3.1\) is not supported: .*transformers"):
        build_segmenter(name)


def test_the_sam3_entry_is_gated_and_not_downloaded_yet() -> None:
    entry = ck.find_entry("sam3")
    assert entry.backend == "transformers" and entry.gated and entry.licence == "SAM-License"
    assert entry.licence_page == "https://huggingface.co/facebook/sam3" and "gated" not in entry.option_dict()
    with pytest.raises(CheckpointError, match=r"(?s)'sam3' is not in the cache.*zeroshot checkpoints download sam3"):
        build_segmenter("sam3")


def test_grabcut_is_built_by_name() -> None:
    segmenter = build_segmenter("grabcut", iterations=2)
    assert segmenter.describe()["name"] == "grabcut" and segmenter.iterations == 2


def test_real_sam3_configs_resize_to_multiples_of_patch_times_window() -> None:
    """SAM 3 (ViT-L/14, 24-patch windows) runs in 336-pixel steps; a full sam3_video config resizes its tracker."""
    from transformers import Sam3TrackerVideoConfig, Sam3VideoConfig

    from zeroshot.segmenters.transformers_video import resize_video_config

    tracker = Sam3TrackerVideoConfig()
    resize_video_config(tracker, 672, what="sam3")
    assert tracker.image_size == 672 and tracker.memory_attention_rope_feat_sizes == [48, 48]
    full = Sam3VideoConfig()
    resize_video_config(full, 336, what="'facebook/sam3'")
    assert full.tracker_config.image_size == 336
    with pytest.raises(SegmenterError, match=r"'facebook/sam3': SAM 3 runs at multiples of 336 pixels .*got 1000"):
        resize_video_config(Sam3VideoConfig(), 1000, what="'facebook/sam3'")
