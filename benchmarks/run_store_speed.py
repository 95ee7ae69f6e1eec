"""Time the run store against the layout before it (one JSON file per row), side by side in one run.

Fabricated rows shaped like real ones (34 result columns, a 60-slice table with the structure on 15 slices, a small
segmentation info), grouped like an ablation: each case has 2 models x 15 strategies x 3 seeds = 90 rows and 45
prompt sets. For each size and layout it prints:

- rows/s written: appending every prompt set and row, as ``zeroshot eval`` does, until the run is closed (the store's
  time includes the fsync per case and rolling segments into Parquet parts; the old layout's is one fsync'd file per
  row and prompt set); making up the records is not timed;
- resume planning: listing the rows present and planning every case x model x strategy x seed of the selection (what
  a resumed ``zeroshot eval`` does before its first case; the store reads only the identity columns);
- table build: ``results.csv``, ``results.parquet``, ``failures.csv``, ``slices.parquet`` written from the rows;
- bytes on disk and files, for rows and prompts (the store, or ``rows/`` and ``prompts/``) and with the tables;
- the machine's load average (1 minute) when the size was done: on a shared machine, times of one run compare.

Sizes above ``--old-max`` rows are run for the store only (the old layout writes ~500 rows/s). With ``--project`` the
1M-row figures are projected from a straight line through the two largest measured sizes (each quantity is linear in
the row count: O(1) per row), and printed as projections.

Run: ``.venv/bin/python benchmarks/run_store_speed.py [--sizes 10000 100000] [--old-max 10000] [--project 1000000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from zeroshot.datasets import Case
from zeroshot.runner.evaluate import plan_jobs
from zeroshot.runner.rundir import RunDir, read_json, write_atomic, write_json
from zeroshot.runner.tables import write_tables
from zeroshot.store import KeySet, PromptKey, RowKey, RowRecord, RunStore
from zeroshot.store.paths import legacy_key, legacy_prompt_path, legacy_row_path
from zeroshot.store.schema import IDENTITY_COLUMNS, SLICE_COLUMNS

MODELS = ("sam2.1_hiera_t", "medsam2")
STRATEGIES = tuple(f"strategy-{i:02d}" for i in range(15))
SEEDS = (0, 1, 2)
SEQUENCES = ("T1", "T2", "OOP")
SLICES = 60


@dataclass(frozen=True)
class Measure:
    layout: str
    rows: int
    write_s: float
    plan_s: float
    tables_s: float
    store_bytes: int
    store_files: int
    total_bytes: int
    load: float = float("nan")
    projected: bool = False

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.write_s


def fabricated_cases(rows: int) -> list[Case]:
    per_case = len(MODELS) * len(STRATEGIES) * len(SEEDS)
    count = -(-rows // per_case)
    return [
        Case(f"case_{i:06d}", SEQUENCES[i % 3], f"center-{i % 8}", "test", Path(f"{i}.nii.gz"), None)
        for i in range(count)
    ]


def fabricated_run(rows: int):
    """Yield ``("prompts", PromptKey, text)`` and ``("row", RowRecord)`` in the order a run writes them."""
    rng = np.random.default_rng(0)
    z = np.arange(SLICES)
    made = 0
    for case in fabricated_cases(rows):
        for strategy in STRATEGIES:
            for seed in SEEDS:
                key = PromptKey(case.sequence, case.case_id, strategy, seed)
                box = [int(v) for v in rng.integers(20, 200, 4)]
                prompts = {"case_id": case.case_id, "strategy": strategy, "seed": seed, "source": "gt",
                           "oracle": {"gt_prompt": True}, "slices": [{"z": 30, "box": box}],
                           "details": {"slices": [{"box_coverage": 1.0}]}}  # fmt: skip
                yield "prompts", key, json.dumps(prompts)
        for model in MODELS:
            for strategy in STRATEGIES:
                for seed in SEEDS:
                    if made == rows:
                        return
                    made += 1
                    yield "row", _record(RowKey(case.sequence, case.case_id, model, strategy, seed), case, rng, z)


def _record(key: RowKey, case: Case, rng: np.random.Generator, z: np.ndarray) -> RowRecord:
    failed = rng.random() < 0.01
    metrics = rng.random(10)
    row = {
        "case_id": key.case_id, "sequence": key.sequence, "center": case.center, "split": case.split,
        "model": key.model, "strategy": key.strategy, "seed": key.seed,
        "dice": float("nan") if failed else float(metrics[0]), "iou": float(metrics[1]),
        "vol_gt_ml": float(metrics[2] * 80), "vol_pred_ml": float(metrics[3] * 80), "rel_vol_err": float(metrics[4]),
        "hd95_mm": float(metrics[5] * 30), "hd_mm": float(metrics[6] * 60), "assd_mm": float(metrics[7] * 5),
        "masd_mm": float(metrics[8] * 5), "nsd_2mm": float(metrics[9]), "d_max_mm": 512.3,
        "empty_gt": False, "empty_pred": False, "failed": failed,
        "error": "SegmenterError: CUDA out of memory" if failed else "",
        "oracle_gt_prompt": True, "oracle_gt_z_range": False, "oracle_gt_roi_crop": False,
        "prompt_source": "gt", "key_slices": "30", "box_coverage": 1.0, "offloaded": False, "prediction": "",
        "seconds_read": float(rng.random()), "seconds_prepare": float(rng.random()),
        "seconds_segment": float(rng.random()),
    }  # fmt: skip
    if failed:
        return RowRecord(key, row, {}, {"error": "oom"})
    area = np.where((z >= 22) & (z < 37), rng.integers(40, 900, SLICES), 0)
    pred = (area * rng.uniform(0.7, 1.1, SLICES)).astype(int)
    dist = np.abs(z - 30)
    slices = {  # arrays, as zeroshot.runner.scoring.slice_table gives them
        "z": z, "dist_slices": dist, "dist_mm": dist * 2.5, "gt_area_px": area, "pred_area_px": pred,
        "gt_area_mm2": area * 0.64, "pred_area_mm2": pred * 0.64,
        "slice_dice": np.where(area + pred > 0, rng.random(SLICES), np.nan),
    }  # fmt: skip
    return RowRecord(key, row, slices, {"encoder_slices_total": SLICES, "passes": ["forward", "backward"]})


def plan_all(done, cases: list[Case]) -> int:
    """Plan every model of the selection as ``zeroshot eval`` does; return the rows left to make."""
    return sum(len(job.keys) for m in MODELS for job in plan_jobs(cases, m, STRATEGIES, SEEDS, done))


def measure_store(root: Path, rows: int) -> Measure:
    cases = fabricated_cases(rows)
    store, write_s = RunStore(root), 0.0
    for kind, *item in fabricated_run(rows):  # only the writing is timed, not making up the rows
        start = time.perf_counter()
        if kind == "row":
            store.append_row(item[0])
        else:
            store.append_prompts(*item)
        write_s += time.perf_counter() - start
    start = time.perf_counter()
    store.close()
    write_s += time.perf_counter() - start
    start = time.perf_counter()
    left = plan_all(RunStore(root).done_keys(), cases)
    plan_s = time.perf_counter() - start
    assert left == len(cases) * 90 - rows, left
    start = time.perf_counter()
    tables = write_tables(RunDir(root))
    tables_s = time.perf_counter() - start
    assert len(tables.results) == rows
    return Measure("store", rows, write_s, plan_s, tables_s, _bytes(root / "store"), _files(root / "store"),
                   _bytes(root), os.getloadavg()[0])  # fmt: skip


def measure_old(root: Path, rows: int) -> Measure:
    """The layout before the store, written and read as ``main`` at ec25cbd did (one fsync'd JSON file each)."""
    cases = fabricated_cases(rows)
    write_s = 0.0
    for kind, *item in fabricated_run(rows):
        start = time.perf_counter()
        if kind == "row":
            record = item[0]
            document = {"row": dict(record.row), "slices": dict(record.slices), "info": dict(record.info)}
            write_json(legacy_row_path(root, record.key), document)
        else:
            write_atomic(legacy_prompt_path(root, item[0]), item[1])
        write_s += time.perf_counter() - start
    start = time.perf_counter()
    found = sorted((key, p) for p in (root / "rows").rglob("*.json") if (key := legacy_key(root, p)) is not None)
    done = KeySet(key.astuple() for key, _ in found)
    left = plan_all(done, cases)
    plan_s = time.perf_counter() - start
    assert left == len(cases) * 90 - rows, left
    start = time.perf_counter()
    results, slices = _old_tables([p for _, p in found])
    results.to_csv(root / "results.csv", index=False)
    results.loc[results["failed"]].to_csv(root / "failures.csv", index=False)
    results.to_parquet(root / "results.parquet", index=False)
    slices.to_parquet(root / "slices.parquet", index=False)
    tables_s = time.perf_counter() - start
    held = [root / "rows", root / "prompts"]
    return Measure("old", rows, write_s, plan_s, tables_s, sum(map(_bytes, held)), sum(map(_files, held)),
                   _bytes(root), os.getloadavg()[0])  # fmt: skip


def _old_tables(paths: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, columns = [], {name: [] for name in (*IDENTITY_COLUMNS, *SLICE_COLUMNS)}
    for path in paths:
        record = read_json(path)
        rows.append(record["row"])
        count = len((record.get("slices") or {}).get("z", ()))
        for name in IDENTITY_COLUMNS:
            columns[name].extend([record["row"][name]] * count)
        for name in SLICE_COLUMNS:
            columns[name].extend(record["slices"][name] if count else [])
    results = pd.DataFrame(rows)
    results["failed"] = results["failed"].astype(bool)
    return results, pd.DataFrame(columns)


def _bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def _files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def project(a: Measure, b: Measure, rows: int) -> Measure:
    """``rows`` on the straight line through ``a`` and ``b`` (times and bytes; files as measured per row rate)."""

    def line(x: float, y: float) -> float:
        return y + (x - y) / (a.rows - b.rows) * (rows - b.rows) if a.rows != b.rows else y * rows / b.rows

    return Measure(b.layout, rows, line(a.write_s, b.write_s), line(a.plan_s, b.plan_s), line(a.tables_s, b.tables_s),
                   int(line(a.store_bytes, b.store_bytes)), round(line(a.store_files, b.store_files)),
                   int(line(a.total_bytes, b.total_bytes)), projected=True)  # fmt: skip


def print_table(measures: list[Measure]) -> None:
    print(f"{'layout':<7}{'rows':>9}{'rows/s':>10}{'write s':>9}{'plan s':>8}{'tables s':>10}"
          f"{'rows+prompts':>14}{'files':>8}{'with tables':>13}{'load':>6}")  # fmt: skip
    for m in measures:
        mark = "  (projected)" if m.projected else ""
        print(f"{m.layout:<7}{m.rows:>9}{m.rows_per_s:>10.0f}{m.write_s:>9.1f}{m.plan_s:>8.2f}{m.tables_s:>10.1f}"
              f"{m.store_bytes / 1e6:>11.1f} MB{m.store_files:>8}{m.total_bytes / 1e6:>10.1f} MB"
              f"{m.load:>6.1f}{mark}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--old-max", type=int, default=10_000, help="largest size also run in the old layout")
    parser.add_argument("--project", type=int, nargs="*", default=[1_000_000], help="sizes to project")
    parser.add_argument("--tmp", type=Path, default=None, help="folder for the runs (default: a temporary one)")
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="run-store-", dir=args.tmp))
    measures: list[Measure] = []
    try:
        for rows in args.sizes:
            if rows <= args.old_max:
                measures.append(measure_old(base / f"old-{rows}", rows))
                shutil.rmtree(base / f"old-{rows}")
            measures.append(measure_store(base / f"store-{rows}", rows))
            shutil.rmtree(base / f"store-{rows}")
            print_table(measures[-2:] if rows <= args.old_max else measures[-1:])
            sys.stdout.flush()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    store = [m for m in measures if m.layout == "store"]
    largest = max(m.rows for m in store)
    for rows in args.project:
        if rows > largest and len(store) >= 2:
            measures.append(project(store[-2], store[-1], rows))
    print(f"\nAll sizes ({os.cpu_count()} CPUs; the old layout only up to {args.old_max} rows):")
    print_table(sorted(measures, key=lambda m: (m.rows, m.layout)))
    old = [m for m in measures if m.layout == "old"]
    if old:
        same = next((m for m in store if m.rows == old[-1].rows), None)
        if same is not None:
            print(f"\nwrite rate, store / old at {same.rows} rows: {same.rows_per_s / old[-1].rows_per_s:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
