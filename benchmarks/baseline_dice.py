"""Dice of the weight-free baselines (grabcut, box-fill) on phantom cases, per sequence, from box-mid prompts.

The numbers are the floor a foundation model must clear on the phantom: box-fill is what the prompt gives alone,
grabcut what a classical method makes of the prompt plus the image. They describe the synthetic phantom, not
real scans.

    .venv/bin/python benchmarks/baseline_dice.py --cases 8 --seed 0
    .venv/bin/python benchmarks/baseline_dice.py --cases 4 --size realistic --strategy box-3slices

Prints one line per case and sequence, then per-sequence mean (and standard deviation) of Dice and NSD@2 mm.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from zeroshot.datasets import SEQUENCES
from zeroshot.metrics import score_case
from zeroshot.phantom import make_phantom_case
from zeroshot.prompts import load_strategy, make_prompts
from zeroshot.segmenters.boxfill import BoxFillSegmenter
from zeroshot.segmenters.grabcut import GrabCutSegmenter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=8, help="number of phantom subjects (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="phantom dataset seed and prompt seed (default 0)")
    parser.add_argument("--size", choices=("small", "realistic"), default="small", help="phantom size preset")
    parser.add_argument("--strategy", default="box-mid", help="prompt strategy name or YAML (default box-mid)")
    parser.add_argument("--csv", default=None, help="also write the per-case rows to this CSV file")
    args = parser.parse_args()

    strategy = load_strategy(args.strategy)
    segmenters = {
        "box-fill": BoxFillSegmenter(),
        "box-fill-interp": BoxFillSegmenter(interpolate_between_key_slices=True),
        "grabcut": GrabCutSegmenter(),
    }
    rows = []
    for index in range(args.cases):
        case = make_phantom_case(args.seed, index=index, size=args.size)
        for sequence in SEQUENCES:
            volume = case.volumes[sequence]
            prompts = make_prompts(
                strategy, case_id=case.case_id, volume=volume, source_mask=case.label, seed=args.seed
            )
            for name, segmenter in segmenters.items():
                started = time.perf_counter()
                result = segmenter.prepare(volume).segment(prompts)
                seconds = time.perf_counter() - started
                metrics = score_case(case.label, result.mask, volume.spacing_mm).as_row()
                rows.append(
                    {
                        "case_id": case.case_id,
                        "center": case.center.name,
                        "sequence": sequence,
                        "model": name,
                        "dice": metrics["dice"],
                        "nsd_2mm": metrics["nsd_2mm"],
                        "seconds": seconds,
                        "slices": volume.num_slices,
                    }
                )
                print(
                    f"{case.case_id} {sequence:3s} {name:15s} dice {metrics['dice']:.3f} "
                    f"nsd_2mm {metrics['nsd_2mm']:.3f} ({seconds:.2f} s)",
                    flush=True,
                )
    table = pd.DataFrame(rows)
    if args.csv:
        table.to_csv(args.csv, index=False)
    print(f"\nphantom seed {args.seed}, size {args.size}, strategy {strategy.name}, {args.cases} cases")
    for column in ("dice", "nsd_2mm", "seconds"):
        summary = table.pivot_table(
            index="model", columns="sequence", values=column, aggfunc=["mean", "std"], sort=False
        )
        summary = summary.reindex(columns=list(SEQUENCES), level="sequence")
        print(f"\n{column} (mean, sd over cases)")
        with pd.option_context("display.float_format", lambda v: f"{v:.3f}", "display.width", 120):
            print(summary)
    if np.isnan(table["dice"]).any():
        print("note: NaN Dice means both masks were empty (see zeroshot.metrics)")


if __name__ == "__main__":
    main()
