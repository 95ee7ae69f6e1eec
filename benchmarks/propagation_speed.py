"""Speed of SAM2 propagation through a volume: the reference engine against the fast engine, side by side.

Builds one model configuration twice (a checkpoint if given, otherwise random weights from the real config:
speed does not depend on the weights), segments the same phantom volume under the same box prompt with both
engines, and prints for each: end-to-end slices/s (prepare + segment, one prompt set), propagation-only
slices/s, peak memory, and the agreement of the two masks (Dice, largest probability difference).

    python benchmarks/propagation_speed.py --config sam2.1_hiera_t --image-size 512 --slices 64 --device cuda
"""

from __future__ import annotations

import argparse
import json
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
    parser.add_argument("--encoder-batch-size", type=int, default=8, help="slices per encoder batch (fast)")
    parser.add_argument("--engines", default="reference,fast", help="comma-separated engines to run")
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
        segmenter = Sam2Segmenter(
            config=args.config,
            checkpoint=args.checkpoint,
            image_size=args.image_size,
            device=args.device,
            precision=args.precision,
            engine=engine,
            encoder_batch_size=args.encoder_batch_size,
            offload_video_to_cpu=args.offload,
            offload_state_to_cpu=args.offload,
        )
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
    print(f"{'engine':<10} " + " ".join(f"{c:>10}" for c in columns))
    for engine, r in results.items():
        peak = f"{r['peak_gpu_mib']:.0f}" if r["peak_gpu_mib"] is not None else "-"
        print(
            f"{engine:<10} {r['prepare_s']:>10.3f} {r['segment_s']:>10.3f} {r['slices_per_s_end_to_end']:>10.2f} "
            f"{r['slices_per_s_segment']:>10.2f} {r['encoder_slices']:>10d} {peak:>10}"
        )
    summary: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "describe": describe, "engines": results}
    summary["process_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process peak RSS {summary['process_peak_rss_mib']:.0f} MiB")
    if {"reference", "fast"} <= results.keys():
        a, b = masks["reference"], masks["fast"]
        total = int(a.sum()) + int(b.sum())
        dice = 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total
        max_dp = float(np.abs(probs["reference"] - probs["fast"]).max())
        ratio = results["fast"]["slices_per_s_end_to_end"] / results["reference"]["slices_per_s_end_to_end"]
        summary.update(dice_fast_vs_reference=dice, max_abs_prob_diff=max_dp, speedup_end_to_end=ratio)
        print(f"fast / reference end-to-end speed: {ratio:.2f}x")
        print(f"agreement: Dice {dice:.6f}, max |delta probability| {max_dp:.2e}, voxels {a.sum()} vs {b.sum()}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2, default=str))
    return 0


def _box_prompt(label: np.ndarray) -> VolumePrompts:
    zs = np.flatnonzero(label.any(axis=(1, 2)))
    z = int(zs[len(zs) // 2])
    ys, xs = np.nonzero(label[z])
    box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
    return VolumePrompts("phantom_000", "box-mid", 0, "gt", (SlicePrompt(z=z, box=box),), oracle={"gt_prompt": True})


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
