"""Time ``zeroshot compare`` on fabricated runs of several sizes, in this checkout and (optionally) another one.

Each run is written by the run store (``benchmarks/run_store_speed.py``'s fabricated ablation rows: 2 models x 15
strategies x 3 seeds per case, 60 slices each) and its tables; ``compare`` then reads ``results.parquet`` (and
``slices.parquet``) and writes every table with the default 10,000 bootstrap resamples. ``--checkout`` times the
same command with another checkout's code (``PYTHONPATH``), e.g. ``main`` before the store, on the same files:
the tables are identical in both layouts, so the comparison is like for like.

Run: ``.venv/bin/python benchmarks/compare_speed.py [--sizes 10000 100000] [--checkout /path/to/main 10000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TIME_ONE = """
import sys, time
from zeroshot.compare import compare_runs
start = time.perf_counter()
compare_runs([sys.argv[1]], sys.argv[2])
print(time.perf_counter() - start)
"""


def write_run(root: Path, rows: int) -> Path:
    """A run directory of ``rows`` fabricated rows with its tables and a run.json."""
    sys.path.insert(0, str(HERE))
    from run_store_speed import fabricated_run

    from zeroshot.runner.rundir import RunDir, write_json
    from zeroshot.runner.tables import write_tables
    from zeroshot.store import RunStore

    store = RunStore(root)
    for kind, *item in fabricated_run(rows):
        if kind == "row":
            store.append_row(item[0])
        else:
            store.append_prompts(*item)
    store.close()
    write_tables(RunDir(root))
    write_json(root / "run.json", {
        "format": 1, "tool": "zeroshot",
        "identity": {"fixed": {"label": 1, "tolerances_mm": [2.0], "image_size": None}, "cases": {}, "models": {},
                     "strategies": {}, "seeds": [0, 1, 2]},
        "invocations": [{"selection": {"data": "/data/crosspan", "layout": None}}],
    })  # fmt: skip
    return root


def time_compare(checkout: Path, run: Path, out: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    done = subprocess.run(
        [sys.executable, "-c", TIME_ONE, str(run), str(out)], env=env, capture_output=True, text=True, check=True
    )
    return float(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--checkout", nargs=2, action="append", default=[], metavar=("PATH", "ROWS"),
                        help="also time this checkout's compare on ROWS rows (e.g. main before the store)")  # fmt: skip
    args = parser.parse_args(argv)
    here = HERE.parent
    base = Path(tempfile.mkdtemp(prefix="compare-speed-"))
    try:
        sizes = sorted({*args.sizes, *(int(rows) for _, rows in args.checkout)})
        runs = {rows: write_run(base / f"run-{rows}", rows) for rows in sizes}
        jobs = [(here, rows) for rows in args.sizes] + [(Path(path), int(rows)) for path, rows in args.checkout]
        print(f"{'checkout':<40}{'rows':>9}{'compare s':>11}")
        for index, (checkout, rows) in enumerate(jobs):
            seconds = time_compare(checkout, runs[rows], base / f"out-{index}")
            print(f"{checkout!s:<40}{rows:>9}{seconds:>11.1f}")
            sys.stdout.flush()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps({"cpus": os.cpu_count(), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
