"""Time ``zeroshot compare`` on fabricated runs of several sizes, in this checkout and (optionally) another one.

Each run is written by the run store (``benchmarks/run_store_speed.py``'s fabricated ablation rows: 2 models x 15
strategies x 3 seeds per case, 60 slices each) and its tables; ``compare`` then reads ``results.parquet`` (and
``slices.parquet``) and writes every table with the default 10,000 bootstrap resamples. ``--checkout`` times the
same command with another checkout's code (``PYTHONPATH``), e.g. ``main`` before the store, on the same files:
the tables are identical in both layouts, so the comparison is like for like.

Every job is a fresh interpreter, timed three ways: ``compare s`` from the call of ``compare_runs`` to its return
(imports done), ``CPU s`` the processor time of that call (every thread; less sensitive than wall time to other jobs
on the machine, though spinning BLAS threads inflate it), ``process s`` from the interpreter's start to its exit
(imports included), as a user waits for the command. ``--repeat`` runs the jobs that many rounds, interleaved so
that a busy machine slows every job alike, and prints the fastest and the median round. Where two jobs ran the
same size, their output folders are compared file by file: the same bytes mean the same work was done.

Run: ``.venv/bin/python benchmarks/compare_speed.py [--sizes 10000 100000] [--checkout /path/to/main 10000]
[--repeat 5]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TIME_ONE = """
import sys, time
import zeroshot
from zeroshot.compare import compare_runs
start, cpu = time.perf_counter(), time.process_time()
compare_runs([sys.argv[1]], sys.argv[2])
print(time.perf_counter() - start, time.process_time() - cpu, zeroshot.__file__)
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


def time_compare(checkout: Path, run: Path, out: Path) -> tuple[float, float, float]:
    """Seconds in ``compare_runs`` (wall and CPU, every thread) and of the whole process, in a fresh interpreter."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    # ``python -c`` puts the working directory before PYTHONPATH on sys.path: run in the checkout, or the
    # ``zeroshot`` of whatever folder the benchmark was started from is the one timed.
    done = subprocess.run(
        [sys.executable, "-c", TIME_ONE, str(run), str(out)],
        env=env, cwd=checkout, capture_output=True, text=True, check=True,
    )  # fmt: skip
    process = time.perf_counter() - start
    inner, cpu, package = done.stdout.strip().splitlines()[-1].split()
    if not Path(package).resolve().is_relative_to(checkout.resolve()):
        raise RuntimeError(f"timed the zeroshot of {package}, not of {checkout}")
    return float(inner), float(cpu), process


def same_files(first: Path, second: Path) -> bool:
    """Whether two output folders hold the same files with the same bytes."""
    names = sorted(p.name for p in first.iterdir())
    if names != sorted(p.name for p in second.iterdir()):
        return False
    return all((first / name).read_bytes() == (second / name).read_bytes() for name in names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--checkout", nargs=2, action="append", default=[], metavar=("PATH", "ROWS"),
                        help="also time this checkout's compare on ROWS rows (e.g. main before the store)")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=1, help="rounds of every job, interleaved (default 1)")
    args = parser.parse_args(argv)
    here = HERE.parent
    base = Path(tempfile.mkdtemp(prefix="compare-speed-"))
    try:
        sizes = sorted({*args.sizes, *(int(rows) for _, rows in args.checkout)})
        runs = {rows: write_run(base / f"run-{rows}", rows) for rows in sizes}
        jobs = [(here, rows) for rows in args.sizes] + [(Path(path), int(rows)) for path, rows in args.checkout]
        seconds: list[list[tuple[float, float, float]]] = [[] for _ in jobs]
        for _ in range(args.repeat):
            for index, (checkout, rows) in enumerate(jobs):
                seconds[index].append(time_compare(checkout, runs[rows], base / f"out-{index}"))
        print(f"{'checkout':<32}{'rows':>8}{'compare s':>16}{'CPU s':>16}{'process s':>16}   (fastest / median)")
        for (checkout, rows), times in zip(jobs, seconds, strict=True):
            cells = "".join(
                f"{min(column):>9.2f} /{statistics.median(column):>5.2f}" for column in zip(*times, strict=True)
            )
            print(f"{checkout!s:<32}{rows:>8}{cells}")
        for i, j in itertools.combinations(range(len(jobs)), 2):
            if jobs[i][1] == jobs[j][1]:
                same = same_files(base / f"out-{i}", base / f"out-{j}")
                print(
                    f"outputs at {jobs[i][1]} rows, {jobs[i][0]} and {jobs[j][0]}: {'identical' if same else 'DIFFER'}"
                )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps({"cpus": os.cpu_count(), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
