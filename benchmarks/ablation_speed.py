"""What an ablation saves by running K prompt strategies in one run instead of K separate runs.

One run loads the model once and prepares each case once (one image-encoder pass per case) for all K strategies;
K runs pay both K times. The script times both on a phantom dataset and counts model builds, volume preparations
and image-encoder slice passes (the counts are exact; the times depend on the machine and its load).

    .venv/bin/python benchmarks/ablation_speed.py                  # random SAM2.1-tiny at 128 px on the CPU
    .venv/bin/python benchmarks/ablation_speed.py --model grabcut  # a weight-free model

Random weights measure the machinery's cost, never accuracy.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zeroshot.phantom import write_phantom_dataset
from zeroshot.runner import EvalConfig, run_eval
from zeroshot.segmenters.registry import build_segmenter

STRATEGIES = ("box-mid", "box-mid-jitter10", "box-largest", "box-3slices")


@dataclass
class Counts:
    builds: int = 0
    prepares: int = 0
    encoded_slices: int = 0
    prepare_seconds: float = 0.0
    segment_seconds: float = 0.0
    segmenters: list[Any] = field(default_factory=list)

    def build(self, name: str, device: str) -> Any:
        self.builds += 1
        segmenter = build_segmenter(name, device=device)
        self.segmenters.append(segmenter)
        counts = self

        class Counting:
            def __init__(self) -> None:
                self.name = segmenter.name

            def prepare(self, volume: Any) -> Any:
                counts.prepares += 1
                return segmenter.prepare(volume)

            def describe(self) -> Any:
                return segmenter.describe()

        return Counting()

    def finish(self) -> None:
        self.encoded_slices = sum(getattr(s, "encoded_slices", 0) for s in self.segmenters)


def timed_run(data: Path, out: Path, model: str, strategies: tuple[str, ...], args: argparse.Namespace, counts: Counts):
    config = EvalConfig(
        data=data,
        out=out,
        models=(model,),
        strategies=strategies,
        seeds=(0,),
        sequences=(args.sequence,),
        device=args.device,
        workers=0,
    )
    start = time.perf_counter()
    summary = run_eval(config, progress=False, build=lambda name: counts.build(name, args.device))
    seconds = time.perf_counter() - start
    results = summary.results
    # seconds_prepare is repeated on every row of a session: count it once per case.
    prepare = results.drop_duplicates(["sequence", "case_id"])["seconds_prepare"].sum()
    counts.prepare_seconds += float(prepare)
    counts.segment_seconds += float(results["seconds_segment"].sum())
    return seconds, summary.rows_computed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="random:sam2.1_hiera_t@128")
    parser.add_argument("--cases", type=int, default=2, help="phantom subjects (default 2)")
    parser.add_argument("--sequence", default="T2")
    parser.add_argument("--strategy", action="append", help=f"strategies (default {', '.join(STRATEGIES)})")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    args = parser.parse_args()
    strategies = tuple(args.strategy or STRATEGIES)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        data = write_phantom_dataset(work / "data", cases=args.cases, seed=0)
        # Warm up (imports, Hydra, first kernels) so that neither arm pays it.
        timed_run(data, work / "warm-up", args.model, strategies[:1], args, Counts())
        one = Counts()
        one_time, one_rows = timed_run(data, work / "one-run", args.model, strategies, args, one)
        one.finish()
        separate = Counts()
        separate_time = 0.0
        separate_rows = 0
        for strategy in strategies:
            seconds, rows = timed_run(data, work / f"run-{strategy}", args.model, (strategy,), args, separate)
            separate_time += seconds
            separate_rows += rows
        separate.finish()
    k = len(strategies)
    print(f"model {args.model}, {args.cases} case(s) of {args.sequence}, K = {k} strategies, device {args.device}")
    header = ("", "rows", "builds", "prepares", "encoded slices", "prepare s", "segment s", "total s")
    print(f"{header[0]:<22}" + "".join(f"{h:>15}" for h in header[1:]))
    for label, rows, c, total in (
        ("one run, K strategies", one_rows, one, one_time),
        ("K separate runs", separate_rows, separate, separate_time),
    ):
        values = (rows, c.builds, c.prepares, c.encoded_slices, f"{c.prepare_seconds:.1f}", f"{c.segment_seconds:.1f}")
        print(f"{label:<22}" + "".join(f"{v:>15}" for v in values) + f"{total:>15.1f}")
    print(f"speed-up: {separate_time / one_time:.2f}x")


if __name__ == "__main__":
    main()
