"""Speed of the nnInteractive segmenter on one phantom volume: load, prepare, the first box, each corrective click.

Without ``--folder`` a tiny random trained-model folder is written to a temporary directory
(:func:`zeroshot.segmenters.nninteractive_tiny.write_tiny_model_folder`, 64-voxel patch): its figures measure the
toolkit's and the package's machinery (image hand-over, interaction bookkeeping, nnInteractive's own cropping and
pasting) around a network far smaller than the published one (192-voxel patch), never the published model's speed
or accuracy. Give ``--folder`` (e.g. ``zeroshot checkpoints path nninteractive``) to time real weights.

    python benchmarks/nninteractive_speed.py --slices 64 --height 256 --width 256 --clicks 5 --device cpu
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

from zeroshot.interactive import ClickSettings, simulate
from zeroshot.phantom import make_phantom_case
from zeroshot.prompts.types import SlicePrompt, VolumePrompts
from zeroshot.segmenters.nninteractive import NnInteractiveSegmenter
from zeroshot.segmenters.nninteractive_tiny import write_tiny_model_folder


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, default=None, help="trained-model folder (default: tiny random one)")
    parser.add_argument("--slices", type=int, default=64, help="number of slices of the phantom volume")
    parser.add_argument("--height", type=int, default=256, help="phantom slice rows")
    parser.add_argument("--width", type=int, default=256, help="phantom slice columns")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--clicks", type=int, default=5, help="corrective click rounds after the box")
    parser.add_argument("--repeats", type=int, default=3, help="timed volumes (the median is reported)")
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
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.folder or write_tiny_model_folder(Path(scratch) / "tiny")
        started = time.perf_counter()
        segmenter = NnInteractiveSegmenter(model_folder=folder, device=args.device)
        load_s = time.perf_counter() - started
        prepare, box, click = [], [], []
        for _ in range(args.repeats):
            started = time.perf_counter()
            session = segmenter.prepare(volume)
            prepare.append(time.perf_counter() - started)
            rounds = simulate(session, case.label, prompts, settings=ClickSettings(rounds=args.clicks))
            for state in rounds:
                seconds = state.segmentation.info["segment_s"]
                (box if state.round == 0 else click).append(seconds)
            session.close()
        described = segmenter.describe()
    device = str(segmenter.device)
    if segmenter.device.type == "cuda":
        device += f" ({torch.cuda.get_device_name(segmenter.device)})"
    figures = {
        "volume_zyx": list(volume.shape),
        "weights": described["weights"],
        "patch_size": described["patch_size"],
        "device": device,
        "threads": torch.get_num_threads(),
        "load_s": round(load_s, 3),
        "prepare_s": round(statistics.median(prepare), 3),
        "box_s": round(statistics.median(box), 3),
        "click_s": round(statistics.median(click), 3) if click else None,
        "volume_s": round(statistics.median(prepare) + statistics.median(box), 3),
        "repeats": args.repeats,
        "clicks": args.clicks,
    }
    print(f"volume {volume.shape} (z, y, x) on {device}, {figures['threads']} threads; {described['weights']}")
    print(f"patch {described['patch_size']}, key slice {prompts.key_slices[0]}, box {prompts.slices[0].box}")
    for key in ("load_s", "prepare_s", "box_s", "click_s", "volume_s"):
        print(f"  {key:<10} {figures[key]}")
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def _box_prompt(label: np.ndarray) -> VolumePrompts:
    """The ground-truth box on the slice where the structure is largest."""
    z = int(np.argmax(label.sum(axis=(1, 2))))
    ys, xs = np.nonzero(label[z])
    box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
    return VolumePrompts("phantom", "box-largest", 0, "gt", (SlicePrompt(z=z, box=box),))


if __name__ == "__main__":
    sys.exit(main())
