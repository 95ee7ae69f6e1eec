"""Speed of every backend on the same volume and the same prompts: SAM2 (native and transformers), SAM 3, the rest.

Each backend segments one phantom volume under one box on its middle ground-truth slice, through the shared
video core where it is a video model. Models are built from their real configurations with random weights
(speed does not depend on the weights; no Dice printed here means anything):

``sam2``
    SAM2.1-tiny on Meta's ``sam2`` package (engine ``fast``: batched encoding, lockstep passes).
``sam2-transformers``
    SAM2.1-tiny as ``transformers``' ``Sam2VideoModel`` (its default config is SAM2.1-tiny's).
``sam3``
    SAM 3's tracker as ``transformers``' ``Sam3TrackerVideoModel`` (its default config: ViT-L/14 backbone, 1008
    px; ``--sam3-size`` runs it at a multiple of 336 instead, as ``sam3@SIZE`` does).
``nninteractive-tiny``
    nnInteractive's package code on a tiny random network (not the published architecture's size: its figure
    times the package's own steps only).
``grabcut``, ``box-fill``
    The weight-free baselines.

For each, after one untimed warm-up run: prepare seconds (preprocessing and image encoding), segment seconds
(one prompt set, median of ``--repeats``), end-to-end slices/s, and image-encoder slices counted by the session.

    python benchmarks/backend_speed.py --slices 16 --size 96 --image-size 256 --sam3-size 336 --device cpu
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from zeroshot.phantom import make_phantom_case
from zeroshot.prompts.regions import tight_box
from zeroshot.prompts.types import SlicePrompt, VolumePrompts
from zeroshot.segmenters import build_segmenter

BACKENDS = ("sam2", "sam2-transformers", "sam3", "nninteractive-tiny", "grabcut", "box-fill")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=16, help="slices of the phantom volume")
    parser.add_argument("--size", type=int, default=128, help="phantom slice rows and columns")
    parser.add_argument("--image-size", type=int, default=256, help="SAM2 model input size (both SAM2 backends)")
    parser.add_argument("--sam3-size", type=int, default=336, help="SAM 3 input size (a multiple of 336; 1008 native)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--repeats", type=int, default=3, help="timed segment calls (the median is reported)")
    parser.add_argument(
        "--backends", default=",".join(BACKENDS), help="comma-separated subset of " + ", ".join(BACKENDS)
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    unknown = sorted(set(args.backends.split(",")) - set(BACKENDS))
    if unknown:
        print(f"unknown backends: {', '.join(unknown)}; known: {', '.join(BACKENDS)}", file=sys.stderr)
        return 2
    case = make_phantom_case(0, index=0, shape=(args.slices, args.size, args.size))
    volume = case.volumes["T1"]
    z = int(np.flatnonzero(case.label.any(axis=(1, 2))).mean())
    prompts = VolumePrompts("phantom_000", "box-mid", 0, "gt", (SlicePrompt(z=z, box=tight_box(case.label[z])),))
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.backends.split(","):
            segmenter = _build(name, args, Path(scratch))
            rows.append(_time(name, segmenter, volume, prompts, repeats=args.repeats))
            print(_line(rows[-1]), flush=True)
            del segmenter
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    print(
        f"\n{args.slices} slices of {args.size} x {args.size} px; SAM2 at {args.image_size} px, SAM 3 at "
        f"{args.sam3_size} px; device {device}, {torch.get_num_threads()} torch threads; random weights"
    )
    if args.json is not None:
        args.json.write_text(json.dumps({"arguments": vars(args) | {"json": str(args.json)}, "rows": rows}, indent=2))
    return 0


def _build(name: str, args: argparse.Namespace, scratch: Path):
    device = args.device
    if name == "sam2":
        return build_segmenter(f"random:sam2.1_hiera_t@{args.image_size}", device=device)
    if name in ("sam2-transformers", "sam3"):
        from transformers import Sam2VideoConfig, Sam2VideoModel, Sam3TrackerVideoConfig, Sam3TrackerVideoModel

        from zeroshot.segmenters.transformers_video import TransformersVideoSegmenter, resize_video_config

        config = Sam2VideoConfig() if name == "sam2-transformers" else Sam3TrackerVideoConfig()
        size = args.image_size if name == "sam2-transformers" else args.sam3_size
        resize_video_config(config, size, what=name)
        model_class = Sam2VideoModel if name == "sam2-transformers" else Sam3TrackerVideoModel
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = model_class(config)
        return TransformersVideoSegmenter(model=model, device=device, name=name)
    if name == "nninteractive-tiny":
        from zeroshot.segmenters.nninteractive_tiny import write_tiny_model_folder

        return build_segmenter(str(write_tiny_model_folder(scratch / "nninteractive", seed=0)), device=device)
    return build_segmenter(name)


def _time(name: str, segmenter, volume, prompts: VolumePrompts, *, repeats: int) -> dict:
    # Warm up (lazy initialisation, allocator, kernels) on the same volume; its timing is not reported.
    warm = segmenter.prepare(volume)
    warm.segment(prompts)
    warm.close()
    started = time.perf_counter()
    session = segmenter.prepare(volume)
    prepare_s = time.perf_counter() - started
    seconds = []
    result = None
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        result = session.segment(prompts)
        seconds.append(time.perf_counter() - started)
    session.close()
    segment_s = statistics.median(seconds)
    info = result.info if result is not None else {}
    parameters = segmenter.describe().get("parameters", 0)
    return {
        "backend": name,
        "parameters_m": round(parameters / 1e6, 1),
        "prepare_s": round(prepare_s, 3),
        "segment_s": round(segment_s, 3),
        "slices_per_s": round(volume.num_slices / (prepare_s + segment_s), 2),
        "encoder_slices_total": info.get("encoder_slices_total"),
    }


def _line(row: dict) -> str:
    return (
        f"{row['backend']:<20} {row['parameters_m']:>7.1f} M  prepare {row['prepare_s']:>8.3f} s  "
        f"segment {row['segment_s']:>8.3f} s  {row['slices_per_s']:>7.2f} slices/s end to end  "
        f"encoder slices {row['encoder_slices_total']}"
    )


if __name__ == "__main__":
    sys.exit(main())
