"""SAM2 segmenter on a CUDA GPU (random weights: machinery, speed and memory, never accuracy).

Skipped without CUDA; a skip is not a pass: run ``bash benchmarks/gpu_check.sh`` on a GPU machine.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zeroshot.prompts.types import SlicePrompt, VolumePrompts
from zeroshot.segmenters.sam2_video import Sam2Segmenter
from zeroshot.volume import volume_from_array

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

GIB = 2**30


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def tube_volume(depth: int, size: int = 256, seed: int = 0):
    """A bright elliptic tube drifting through noise: (volume, box prompt on the middle slice)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[:depth, :size, :size]
    cy = size * (0.45 + 0.1 * np.sin(z / max(depth, 1) * np.pi))
    cx = size * (0.5 + 0.1 * np.cos(z / max(depth, 1) * np.pi))
    tube = ((y - cy) / (size * 0.08)) ** 2 + ((x - cx) / (size * 0.12)) ** 2 <= 1.0
    array = rng.normal(100.0, 20.0, size=(depth, size, size)).astype(np.float32) + 300.0 * tube
    key = depth // 2
    ys, xs = np.nonzero(tube[key])
    box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
    prompts = VolumePrompts("tube", "box-mid", 0, "synthetic", (SlicePrompt(z=key, box=box),))
    return volume_from_array(np.clip(array, 0, None), (3.0, 1.0, 1.0)), prompts


def run(segmenter: Sam2Segmenter, volume, prompts):
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    with segmenter.prepare(volume) as session:
        result = session.segment(prompts)
    return result, torch.cuda.max_memory_allocated() / GIB


@pytest.fixture(scope="module")
def tube():
    return tube_volume(32)


@pytest.mark.parametrize("precision", ["bfloat16", "float32"])
def test_fast_engines_agree_with_reference_on_cuda(tube, precision):
    volume, prompts = tube
    results = {}
    for engine in ("reference", "fast-serial", "fast"):
        segmenter = Sam2Segmenter(image_size=512, device="cuda", precision=precision, engine=engine)
        assert segmenter.describe()["precision"] == precision
        results[engine], _ = run(segmenter, volume, prompts)
    ref = results["reference"]
    assert results["fast"].info["lockstep"]
    for engine in ("fast-serial", "fast"):
        result = results[engine]
        agreement = dice(ref.mask, result.mask)
        max_dp = float(np.abs(ref.probabilities - result.probabilities).max())
        print(f"{precision}: Dice {engine} vs reference {agreement:.6f}, max |dp| {max_dp:.2e}")
        # bfloat16: batched and per-slice encoding round differently; float32 agrees to noise (cuDNN may use TF32).
        assert agreement >= (0.99 if precision == "bfloat16" else 0.999)
        assert result.info["encoder_slices_total"] == volume.num_slices
    assert ref.info["encoder_slices_total"] > volume.num_slices


def test_segment_many_agrees_with_separate_calls_on_cuda(tube):
    volume, prompts = tube
    box = prompts.slices[0].box
    sets = [VolumePrompts("tube", f"box-{z}", 0, "synthetic", (SlicePrompt(z=z, box=box),)) for z in (4, 12, 16, 20)]
    with Sam2Segmenter(image_size=512, device="cuda").prepare(volume) as session:
        together = session.segment_many(sets)
        separate = [session.segment(p) for p in sets]
    scores = [dice(a.mask, b.mask) for a, b in zip(together, separate, strict=True)]
    print(f"bfloat16 segment_many vs separate calls: Dice {[round(s, 6) for s in scores]}")
    assert min(scores) >= 0.99
    assert all(r.info["lockstep"] and r.info["prompt_sets_in_call"] == 4 for r in together)


def test_cuda_float32_agrees_with_cpu(tube):
    volume, prompts = tube
    small = volume_from_array(volume.array[8:24], volume.spacing_mm)
    shifted = VolumePrompts("tube", "box-mid", 0, "synthetic", (SlicePrompt(z=8, box=prompts.slices[0].box),))
    gpu, _ = run(Sam2Segmenter(image_size=256, device="cuda", precision="float32"), small, shifted)
    with Sam2Segmenter(image_size=256, device="cpu").prepare(small) as session:
        cpu = session.segment(shifted)
    agreement = dice(gpu.mask, cpu.mask)
    print(f"CUDA float32 vs CPU: Dice {agreement:.6f}")
    assert agreement >= 0.99


def test_300_slices_with_offloading_stay_within_memory():
    """A 300-slice volume at SAM2.1's 1024 px fits a 16 GB GPU; offloading features and state lowers the peak."""
    volume, prompts = tube_volume(300)
    peaks = {}
    for offload in (False, True):
        segmenter = Sam2Segmenter(device="cuda", offload_video_to_cpu=offload, offload_state_to_cpu=offload)
        result, peaks[offload] = run(segmenter, volume, prompts)
        assert result.mask.shape == volume.shape
        assert sum(p["slices"] for p in result.info["passes"]) == 301
        speed = result.info["slices_per_s"]
        print(f"300 slices at 1024 px, offload={offload}: peak {peaks[offload]:.2f} GiB, {speed} slices/s")
        del segmenter
    assert peaks[False] < 16.0
    assert peaks[True] < 4.0
    assert peaks[True] < peaks[False]


def test_hole_filling_acts_in_every_engine_on_cuda(tube, monkeypatch):
    """SAM2's hole filling runs on the GPU (no CUDA extension needed) in every engine, which still agree."""
    import zeroshot.segmenters.hole_filling as hole_filling

    volume, prompts = tube
    filled = []
    original = hole_filling.small_background

    def counting(background, max_area):
        holes = original(background, max_area)
        assert holes.device.type == background.device.type
        filled.append(holes.sum())  # a device tensor: counting must not synchronise either
        return holes

    monkeypatch.setattr(hole_filling, "small_background", counting)
    results = {}
    for engine in ("reference", "fast-serial", "fast"):
        filled.clear()
        segmenter = Sam2Segmenter(image_size=512, device="cuda", precision="float32", engine=engine)
        assert segmenter.describe()["hole_filling"].startswith("zeroshot.segmenters.hole_filling on cuda")
        results[engine], _ = run(segmenter, volume, prompts)
        count = int(sum(f.item() for f in filled))
        print(f"{engine}: {count} low-resolution pixels filled")
        assert count > 0
    for engine in ("fast-serial", "fast"):
        max_dp = float(np.abs(results["reference"].probabilities - results[engine].probabilities).max())
        print(
            f"float32 with hole filling, {engine} vs reference: Dice "
            f"{dice(results['reference'].mask, results[engine].mask):.6f}, max |dp| {max_dp:.2e}"
        )
        assert dice(results["reference"].mask, results[engine].mask) >= 0.999


def test_recipe_on_cuda_float32_equals_cpu(tube):
    """Hole filling, 8-bit input and coordinates are device-independent: CUDA float32 (no TF32) matches the CPU."""
    volume, prompts = tube
    small = volume_from_array(volume.array[8:24], volume.spacing_mm)
    shifted = VolumePrompts("tube", "box-mid", 0, "synthetic", (SlicePrompt(z=8, box=prompts.slices[0].box),))
    gpu_segmenter = Sam2Segmenter(image_size=256, device="cuda", precision="float32", engine="reference")
    assert gpu_segmenter.describe()["tf32"] is False
    gpu, _ = run(gpu_segmenter, small, shifted)
    with Sam2Segmenter(image_size=256, device="cpu", engine="reference").prepare(small) as session:
        cpu = session.segment(shifted)
    max_dp = float(np.abs(gpu.probabilities - cpu.probabilities).max())
    print(f"recipe, CUDA float32 vs CPU (reference engine): Dice {dice(gpu.mask, cpu.mask):.6f}, max |dp| {max_dp:.2e}")
    assert dice(gpu.mask, cpu.mask) >= 0.999
    assert max_dp < 1e-2
