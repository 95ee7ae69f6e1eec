"""Time prompt generation per case: every shipped strategy on phantom labels (default 160 x 160 x 32).

Prompts are computed once per case and strategy and fed to every model, so they must cost next to nothing next
to a model's forward pass. Box and point strategies are expected to take at most 20 ms per phantom-sized case.

    .venv/bin/python benchmarks/prompt_speed.py
    .venv/bin/python benchmarks/prompt_speed.py --cases 8 --shape 64 448 448 --strategy box-mid points-3pos-3neg

Prints per strategy the median and the worst per-case time of ``make_prompts`` (best of ``--repeats`` runs per
case, so a busy machine inflates neither) and of ``prompts_to_json``, and whether it is within the budget.
Exit status 1 if a box or point strategy exceeds ``--budget-ms``.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from zeroshot.phantom import make_phantom_case
from zeroshot.prompts import load_strategy, make_prompts, prompts_to_json

DEFAULT_STRATEGIES = (
    "box-mid",
    "box-largest",
    "box-mid-jitter10",
    "box-3slices",
    "point-center",
    "points-3pos-3neg",
    "box-point-mid",
    "mask-mid",
    "box-every-slice",
    "box-mid-degraded",
)


def best_of(repeats: int, function) -> tuple[float, object]:
    """Smallest wall time in seconds over ``repeats`` calls, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=6, help="phantom subjects (default 6)")
    parser.add_argument("--shape", type=int, nargs=3, default=(32, 160, 160), metavar=("Z", "Y", "X"))
    parser.add_argument("--repeats", type=int, default=5, help="runs per case; the fastest counts (default 5)")
    parser.add_argument("--strategy", nargs="+", default=DEFAULT_STRATEGIES, help="strategy names or YAML files")
    parser.add_argument("--budget-ms", type=float, default=20.0, help="budget for box and point strategies")
    args = parser.parse_args()

    cases = [make_phantom_case(0, index=i, shape=tuple(args.shape)) for i in range(args.cases)]
    spacings = sorted({c.spacing_mm for c in cases})
    print(f"{args.cases} phantom cases of shape {tuple(args.shape)} (z, y, x); spacings (mm): {spacings}")
    print(f"{'strategy':<20} {'slices':>6} {'median ms':>10} {'worst ms':>9} {'json ms':>8}  budget")
    over = []
    for name in args.strategy:
        strategy = load_strategy(name)
        times, json_times, slices = [], [], []
        for case in cases:
            volume = case.volumes["T2"]

            def make(case=case, volume=volume, strategy=strategy):
                return make_prompts(strategy, case_id=case.case_id, volume=volume, source_mask=case.label, seed=0)

            seconds, prompts = best_of(args.repeats, make)
            times.append(seconds)
            json_times.append(best_of(args.repeats, lambda prompts=prompts: prompts_to_json(prompts))[0])
            slices.append(len(prompts.slices))
        median_ms, worst_ms = 1000 * float(np.median(times)), 1000 * max(times)
        budgeted = strategy.prompt_type in ("box", "points", "box+points") and strategy.source.kind == "gt"
        verdict = "-"
        if budgeted:
            verdict = "ok" if worst_ms <= args.budget_ms else f"OVER {args.budget_ms:g} ms"
            if worst_ms > args.budget_ms:
                over.append(name)
        print(
            f"{strategy.name:<20} {np.median(slices):>6g} {median_ms:>10.2f} {worst_ms:>9.2f} "
            f"{1000 * float(np.median(json_times)):>8.2f}  {verdict}"
        )
    if over:
        print(f"over budget: {', '.join(over)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
