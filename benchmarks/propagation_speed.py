"""Speed of SAM2 propagation through a volume: every engine side by side (reference, fast-serial, fast).

Builds one model configuration per engine (a checkpoint if given, otherwise random weights from the real
config: speed does not depend on the weights), segments the same phantom volume under the same box prompt, and
prints for each: end-to-end slices/s (prepare + segment, one prompt set), propagation-only slices/s, the ratio
to the reference engine, peak GPU memory, and the agreement with the reference masks (Dice, largest
probability difference). ``--many K`` also times ``Session.segment_many`` on K box prompts on different key
slices against K separate ``segment`` calls on the same session (engine ``fast``), per prompt set.

``--recipe-costs`` measures what the authors' recipe costs, side by side in one run (engine ``fast``): hole
filling (``fill_hole_area=8`` against 0: segment time, and the filling itself on every slice's logits at once),
and the 8-bit input pipeline (Pillow's resize) against the float path (prepare time, and Pillow's time per
slice).

    python benchmarks/propagation_speed.py --config sam2.1_hiera_t --image-size 512 --slices 64 --device cuda
    python benchmarks/propagation_speed.py --image-size 512 --slices 32 --engines fast --recipe-costs --device cpu
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from zeroshot.phantom import make_phantom_case
from zeroshot.prompts.types import SlicePrompt, VolumePrompts
from zeroshot.segmenters.sam2_video import Sam2Segmenter


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="sam2.1_hiera_t", help="SAM2 config short or Hydra name")
    parser.add_argument("--image-size", type=int, default=None, help="model input size S (default: the config's)")
    parser.add_argument("--slices", type=int, default=64, help="number of slices of the phantom volume")
    parser.add_argument("--height", type=int, default=256, help="phantom slice rows")
    parser.add_argument("--width", type=int, default=256, help="phantom slice columns")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--precision", default="auto", help="auto, bfloat16 or float32")
    parser.add_argument("--checkpoint", default=None, help="SAM2-format .pt (default: random weights)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per engine (the median is reported)")
    parser.add_argument(
        "--encoder-batch-size", type=int, default=None, help="slices per encoder batch (fast; default: the segmenter's)"
    )
    parser.add_argument("--engines", default="reference,fast-serial,fast", help="comma-separated engines to run")
    parser.add_argument("--many", type=int, default=0, help="also time segment_many on this many prompt sets")
    parser.add_argument(
        "--recipe-costs", action="store_true", help="also time hole filling on/off and the 8-bit vs float input path"
    )
    parser.add_argument("--offload", action="store_true", help="offload video features and state to the CPU")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    case = make_phantom_case(0, shape=(args.slices, args.height, args.width))
    volume = case.volumes["T1"]
    prompts = _box_prompt(case.label)
    print(f"volume {volume.shape} (z, y, x); key slice {prompts.key_slices[0]}, box {prompts.slices[0].box}")
    results, masks, probs = {}, {}, {}
    for engine in args.engines.split(","):
        segmenter = _segmenter(args, engine, offload_video_to_cpu=args.offload, offload_state_to_cpu=args.offload)
        device = segmenter.device
        _warm_up(segmenter, volume, prompts)
        prepare_s, segment_s = [], []
        for _ in range(max(1, args.repeats)):
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            _sync(device)
            t0 = time.perf_counter()
            session = segmenter.prepare(volume)
            _sync(device)
            t1 = time.perf_counter()
            result = session.segment(prompts)
            _sync(device)
            t2 = time.perf_counter()
            session.close()
            prepare_s.append(t1 - t0)
            segment_s.append(t2 - t1)
        frames = sum(p["slices"] for p in result.info["passes"])
        prep, seg = float(np.median(prepare_s)), float(np.median(segment_s))
        results[engine] = {
            "prepare_s": prep,
            "segment_s": seg,
            "slices_per_s_end_to_end": frames / (prep + seg),
            "slices_per_s_segment": frames / seg,
            "frames_propagated": frames,
            "encoder_slices": result.info["encoder_slices_total"],
            "peak_gpu_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        }
        masks[engine], probs[engine] = result.mask, result.probabilities
        describe = segmenter.describe()
        del segmenter, session
    print(
        f"model {describe['config']} at {describe['image_size']} px, {describe['weights'].split(':')[0]}, "
        f"device {describe['device']} ({_device_name(device)}), precision {describe['precision']}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, median of {args.repeats}"
    )
    columns = ("prepare s", "segment s", "e2e sl/s", "seg sl/s", "encoded", "peak MiB")
    print(f"{'engine':<12} " + " ".join(f"{c:>10}" for c in columns))
    for engine, r in results.items():
        peak = f"{r['peak_gpu_mib']:.0f}" if r["peak_gpu_mib"] is not None else "-"
        print(
            f"{engine:<12} {r['prepare_s']:>10.3f} {r['segment_s']:>10.3f} {r['slices_per_s_end_to_end']:>10.2f} "
            f"{r['slices_per_s_segment']:>10.2f} {r['encoder_slices']:>10d} {peak:>10}"
        )
    summary: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "describe": describe, "engines": results}
    summary["process_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process peak RSS {summary['process_peak_rss_mib']:.0f} MiB")
    if "reference" in results:
        base = results["reference"]["slices_per_s_end_to_end"]
        for engine in results:
            a, b = masks["reference"], masks[engine]
            total = int(a.sum()) + int(b.sum())
            dice = 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total
            max_dp = float(np.abs(probs["reference"] - probs[engine]).max())
            ratio = results[engine]["slices_per_s_end_to_end"] / base
            results[engine].update(dice_vs_reference=dice, max_abs_prob_diff=max_dp, speedup_end_to_end=ratio)
            print(
                f"{engine:<12} / reference: {ratio:5.2f}x end to end; agreement Dice {dice:.6f}, "
                f"max |delta probability| {max_dp:.2e}, voxels {b.sum()} vs {a.sum()}"
            )
    if args.many > 0:
        summary["segment_many"] = _time_many(args, volume, case.label)
    if args.recipe_costs:
        summary["recipe_costs"] = _recipe_costs(args, volume, prompts)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2, default=str))
    return 0


def _time_many(args: argparse.Namespace, volume, label: np.ndarray) -> dict:
    """K prompt sets in one ``segment_many`` call against K ``segment`` calls, on one prepared session."""
    segmenter = _segmenter(args, "fast")
    zs = np.flatnonzero(label.any(axis=(1, 2)))
    picks = np.linspace(zs[len(zs) // 4], zs[(3 * len(zs)) // 4], args.many).round().astype(int)
    prompt_sets = [_box_prompt(label, int(z)) for z in picks]
    _warm_up(segmenter, volume, prompt_sets[0])
    device = segmenter.device
    with segmenter.prepare(volume) as session:
        session.segment_many(prompt_sets[:2])  # untimed: batch sizes not seen in the warm-up
        separate_s, many_s = [], []
        for _ in range(max(1, args.repeats)):
            _sync(device)
            t0 = time.perf_counter()
            separate = [session.segment(p) for p in prompt_sets]
            _sync(device)
            t1 = time.perf_counter()
            together = session.segment_many(prompt_sets)
            _sync(device)
            separate_s.append(t1 - t0)
            many_s.append(time.perf_counter() - t1)
    worst = min(_dice(a.mask, b.mask) for a, b in zip(separate, together, strict=True))
    sep, many = float(np.median(separate_s)), float(np.median(many_s))
    k = len(prompt_sets)
    print(
        f"segment_many, K={k} prompt sets (key slices {picks.tolist()}), engine fast: "
        f"{many / k:.3f} s per prompt set vs {sep / k:.3f} s in separate calls ({sep / many:.2f}x); "
        f"lowest Dice many vs separate {worst:.6f}"
    )
    return {
        "k": k,
        "key_slices": picks.tolist(),
        "many_s": many,
        "separate_s": sep,
        "speedup": sep / many,
        "min_dice_many_vs_separate": worst,
    }


def _recipe_costs(args: argparse.Namespace, volume, prompts: VolumePrompts) -> dict:
    """Hole filling on against off, and the 8-bit pipeline against the float path, on the fast engine."""
    from zeroshot.segmenters.hole_filling import fill_small_holes
    from zeroshot.segmenters.preprocessing import resize_uint8, window_to_uint8

    variants = {
        "fill_hole_area=8": _segmenter(args, "fast", fill_hole_area=8),
        "fill_hole_area=0": _segmenter(args, "fast", fill_hole_area=0),
        "preprocessing=float": _segmenter(args, "fast", fill_hole_area=8, preprocessing="float"),
    }
    device = variants["fill_hole_area=8"].device
    image_size = variants["fill_hole_area=8"].image_size
    for segmenter in variants.values():
        _warm_up(segmenter, volume, prompts)
    timings: dict[str, dict[str, list[float]]] = {name: {"prepare": [], "segment": []} for name in variants}
    for _ in range(max(1, args.repeats)):
        for name, segmenter in variants.items():  # interleaved, so that drifting machine load hits all alike
            _sync(device)
            t0 = time.perf_counter()
            session = segmenter.prepare(volume)
            _sync(device)
            t1 = time.perf_counter()
            session.segment(prompts)
            _sync(device)
            timings[name]["prepare"].append(t1 - t0)
            timings[name]["segment"].append(time.perf_counter() - t1)
            session.close()
    median = {name: {k: float(np.median(v)) for k, v in t.items()} for name, t in timings.items()}

    # The filling alone, on every slice's low-resolution logits at once (what the lockstep engine does per pass).
    low_res = torch.randn((volume.num_slices, 1, image_size // 4, image_size // 4), device=device)
    fill_small_holes(low_res, 8)
    fill_s = []
    for _ in range(max(3, args.repeats)):
        _sync(device)
        t0 = time.perf_counter()
        fill_small_holes(low_res, 8)
        _sync(device)
        fill_s.append(time.perf_counter() - t0)
    # Pillow's resize alone, per slice (after the window and uint8 cast, which are timed with it).
    with variants["fill_hole_area=8"].prepare(volume) as session:
        window = session.intensity_window
    t0 = time.perf_counter()
    resize_uint8(window_to_uint8(volume.array, window), image_size)
    pillow_per_slice_ms = (time.perf_counter() - t0) / volume.num_slices * 1e3

    on, off, flt = median["fill_hole_area=8"], median["fill_hole_area=0"], median["preprocessing=float"]
    fill_ms = float(np.median(fill_s)) * 1e3
    print(
        f"recipe costs (engine fast, {volume.num_slices} slices at {image_size} px, {_device_name(device)}, median of "
        f"{args.repeats}):\n"
        f"  hole filling: segment {on['segment']:.3f} s with fill_hole_area=8 vs {off['segment']:.3f} s with 0 "
        f"({(on['segment'] / off['segment'] - 1) * 100:+.1f} %); the filling alone on all {volume.num_slices} slices' "
        f"{image_size // 4}x{image_size // 4} logits: {fill_ms:.2f} ms ({fill_ms / volume.num_slices:.3f} ms per slice)"
        f"\n  input pipeline: prepare {on['prepare']:.3f} s with the 8-bit Pillow path vs {flt['prepare']:.3f} s "
        f"with the float path ({(on['prepare'] / flt['prepare'] - 1) * 100:+.1f} %); window + uint8 + Pillow resize "
        f"{pillow_per_slice_ms:.2f} ms per slice on {torch.get_num_threads()} torch threads / "
        f"{os.cpu_count()} CPUs"
    )
    return {
        "median_s": median,
        "fill_all_slices_ms": fill_ms,
        "pillow_path_per_slice_ms": pillow_per_slice_ms,
        "hole_filling_segment_overhead": on["segment"] / off["segment"] - 1,
        "uint8_prepare_overhead": on["prepare"] / flt["prepare"] - 1,
    }


def _segmenter(args: argparse.Namespace, engine: str, **options: object) -> Sam2Segmenter:
    """The model the arguments describe, with ``engine`` and further options."""
    return Sam2Segmenter(
        config=args.config,
        checkpoint=args.checkpoint,
        image_size=args.image_size,
        device=args.device,
        precision=args.precision,
        engine=engine,
        encoder_batch_size=args.encoder_batch_size,
        **options,
    )


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def _box_prompt(label: np.ndarray, z: int | None = None) -> VolumePrompts:
    if z is None:
        zs = np.flatnonzero(label.any(axis=(1, 2)))
        z = int(zs[len(zs) // 2])
    ys, xs = np.nonzero(label[z])
    box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
    return VolumePrompts("phantom_000", f"box-{z}", 0, "gt", (SlicePrompt(z=z, box=box),), oracle={"gt_prompt": True})


def _warm_up(segmenter: Sam2Segmenter, volume, prompts: VolumePrompts) -> None:
    """One untimed run on a few slices around the key slice (lazy initialisation, kernel selection)."""
    z = prompts.key_slices[0]
    lo = max(0, z - 3)
    small = type(volume)(array=volume.array[lo : z + 4], spacing_mm=volume.spacing_mm)
    shifted = VolumePrompts("warm-up", "box-mid", 0, "gt", (SlicePrompt(z=z - lo, box=prompts.slices[0].box),))
    with segmenter.prepare(small) as session:
        session.segment(shifted)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"


if __name__ == "__main__":
    sys.exit(main())
