"""Time zeroshot.metrics.score_case against DeepMind surface-distance, MONAI and medpy, side by side in one run.

Every library computes what a results row needs (HD95, NSD at 2 mm where it has one, mean surface distance, Dice)
on the same synthetic cases:

- ``pancreas``: 256x256x48 at 1.5x1.5x5 mm (z, y, x order: 5, 1.5, 1.5), an elongated noisy organ and a shifted,
  reshaped prediction;
- ``pancreas+FP``: the same with a small false-positive island far away (the crop grows to span both);
- ``ct``: 512x512x96 at 0.75x0.75x2.5 mm, an organ of about 120x40x50 mm.

Run: ``.venv/bin/python benchmarks/metrics_speed.py [--repeats 7] [--skip-medpy]``. It checks that our values agree
with DeepMind's (1e-6 relative) and MONAI's sub-voxel NSD, prints times (median of repeats, ms), the ratios
against ours, and the peak memory (tracemalloc) of ours and DeepMind's, then exits non-zero if a value disagrees.
HD95 of MONAI and medpy use other definitions (voxel-centre edges; medpy pools both directions) and are shown, not
checked.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import tracemalloc
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from zeroshot.metrics import score_case


@dataclass(frozen=True)
class Case:
    name: str
    gt: np.ndarray
    pred: np.ndarray
    spacing_mm: tuple[float, float, float]


def organ(
    shape: tuple[int, int, int],
    spacing_mm: tuple[float, float, float],
    centre_mm: np.ndarray,
    radii_mm: np.ndarray,
    rng: np.random.Generator,
    roughness: float = 0.25,
) -> np.ndarray:
    """An ellipsoid with a smooth random boundary (a pancreas-like blob), drawn only inside its bounding box."""
    spacing = np.asarray(spacing_mm)
    lo = np.maximum(((centre_mm - 1.5 * radii_mm) / spacing).astype(int), 0)
    hi = np.minimum(((centre_mm + 1.5 * radii_mm) / spacing).astype(int) + 1, shape)
    grids = np.meshgrid(*(np.arange(a, b) * s for a, b, s in zip(lo, hi, spacing, strict=True)), indexing="ij")
    r2 = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre_mm, radii_mm, strict=True))
    noise = ndimage.gaussian_filter(rng.normal(size=r2.shape), sigma=(1.0, 4.0, 4.0))
    noise /= np.abs(noise).max()
    mask = np.zeros(shape, bool)
    mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = r2 + roughness * noise < 1.0
    return mask


def make_cases(seed: int = 0) -> list[Case]:
    rng = np.random.default_rng(seed)
    cases = []

    shape, spacing = (48, 256, 256), (5.0, 1.5, 1.5)
    centre, radii = np.array([120.0, 190.0, 200.0]), np.array([30.0, 20.0, 75.0])
    gt = organ(shape, spacing, centre, radii, rng)
    pred = organ(shape, spacing, centre + np.array([5.0, 3.0, -4.5]), radii * [0.9, 1.1, 0.95], rng)
    cases.append(Case("pancreas", gt, pred, spacing))
    with_fp = pred.copy()
    with_fp[5:7, 20:26, 20:26] = True  # a false-positive island far from the organ
    cases.append(Case("pancreas+FP", gt, with_fp, spacing))

    shape, spacing = (96, 512, 512), (2.5, 0.75, 0.75)
    centre, radii = np.array([120.0, 200.0, 180.0]), np.array([25.0, 20.0, 60.0])
    gt = organ(shape, spacing, centre, radii, rng)
    pred = organ(shape, spacing, centre + np.array([2.5, 1.5, -2.0]), radii * [1.05, 0.95, 1.02], rng)
    cases.append(Case("ct", gt, pred, spacing))
    return cases


# One function per library, each computing the metrics a results row needs, from scratch.
def ours(case: Case) -> dict[str, float]:
    m = score_case(case.gt, case.pred, case.spacing_mm, tolerances_mm=(2.0,))
    return {"hd95": m.hd95_mm, "hd": m.hd_mm, "nsd2": m.nsd_at(2.0), "masd": m.masd_mm, "dice": m.dice}


def deepmind(case: Case) -> dict[str, float]:
    import surface_distance as sd

    d = sd.compute_surface_distances(case.gt, case.pred, case.spacing_mm)
    return {
        "hd95": sd.compute_robust_hausdorff(d, 95),
        "hd": sd.compute_robust_hausdorff(d, 100),
        "nsd2": sd.compute_surface_dice_at_tolerance(d, 2.0),
        "masd": float(np.mean(sd.compute_average_surface_distance(d))),
        "dice": sd.compute_dice_coefficient(case.gt, case.pred),
    }


def monai(case: Case) -> dict[str, float]:
    import torch
    from monai.metrics import (
        compute_average_surface_distance,
        compute_dice,
        compute_hausdorff_distance,
        compute_surface_dice,
    )

    y_pred = torch.from_numpy(case.pred)[None, None]
    y = torch.from_numpy(case.gt)[None, None]
    spacing = list(case.spacing_mm)
    common = {"include_background": True, "spacing": spacing}
    return {
        "hd95": float(compute_hausdorff_distance(y_pred, y, percentile=95, **common)),
        "nsd2": float(compute_surface_dice(y_pred, y, [2.0], use_subvoxels=True, **common)),
        "assd": float(compute_average_surface_distance(y_pred, y, symmetric=True, **common)),
        "dice": float(compute_dice(y_pred, y)),
    }


def medpy(case: Case) -> dict[str, float]:
    from medpy.metric import binary

    return {
        "hd95": binary.hd95(case.pred, case.gt, voxelspacing=case.spacing_mm),
        "assd": binary.assd(case.pred, case.gt, voxelspacing=case.spacing_mm),
        "dice": binary.dc(case.pred, case.gt),
    }


def median_ms(
    fn: Callable[[Case], dict[str, float]], case: Case, repeats: int
) -> tuple[float, float, dict[str, float]]:
    """Median wall time and median CPU time of this process (ms), and the values.

    CPU time is what a case costs on an idle machine when the machine is shared (it counts every thread, so for a
    multi-threaded library it exceeds the wall time on an idle machine).
    """
    values = fn(case)  # warm-up: imports, lookup tables
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn(case)
        wall.append(1000.0 * (time.perf_counter() - start))
        cpu.append(1000.0 * (time.process_time() - start_cpu))
    return statistics.median(wall), statistics.median(cpu), values


def peak_mib(fn: Callable[[Case], dict[str, float]], case: Case) -> float:
    tracemalloc.start()
    fn(case)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats for ours and DeepMind (others fewer)")
    parser.add_argument("--skip-medpy", action="store_true", help="medpy takes seconds per call on the CT case")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")  # surface-distance 0.1 uses deprecated scipy namespaces
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    libraries: list[tuple[str, Callable[[Case], dict[str, float]], int]] = [
        ("ours", ours, args.repeats),
        ("surface-distance", deepmind, args.repeats),
        ("monai", monai, max(1, args.repeats // 3)),
    ]
    if not args.skip_medpy:
        libraries.append(("medpy", medpy, 1))

    print(f"cpus: {os.cpu_count()}, numpy {np.__version__}")
    ok = True
    for case in make_cases():
        box = np.argwhere(case.gt | case.pred)
        extent = tuple(int(n) for n in box.max(0) - box.min(0) + 1)
        print(
            f"\n== {case.name}: {case.gt.shape} at {case.spacing_mm} mm, union box {extent}, "
            f"gt {int(case.gt.sum())} / pred {int(case.pred.sum())} voxels"
        )
        results = {}
        for name, fn, repeats in libraries:
            results[name] = median_ms(fn, case, repeats)
        ref_ms, ref_cpu, ref = results["ours"]
        for name, (ms, cpu, values) in results.items():
            shown = ", ".join(f"{k} {v:.6g}" for k, v in values.items())
            print(f"  {name:17s} wall {ms:8.1f} ms  cpu {cpu:8.1f} ms  {shown}")
            if name != "ours":
                print(f"  {'':17s} ours / {name}: wall {ref_ms / ms:.3f}, cpu {ref_cpu / cpu:.3f}")
        dm = results["surface-distance"][2]
        for key in ("hd95", "hd", "nsd2", "masd", "dice"):
            if not np.isclose(ref[key], dm[key], rtol=1e-6, atol=1e-12):
                print(f"  MISMATCH vs surface-distance: {key} ours {ref[key]!r} theirs {dm[key]!r}")
                ok = False
        if not np.isclose(ref["nsd2"], results["monai"][2]["nsd2"], rtol=1e-6):
            print(f"  MISMATCH vs MONAI subvoxel NSD: ours {ref['nsd2']!r} MONAI {results['monai'][2]['nsd2']!r}")
            ok = False
        print(
            f"  peak memory (tracemalloc): ours {peak_mib(ours, case):.1f} MiB, "
            f"surface-distance {peak_mib(deepmind, case):.1f} MiB, "
            f"the two masks {2 * case.gt.nbytes / 2**20:.1f} MiB"
        )
    print("\nvalues agree with surface-distance (rtol 1e-6) and MONAI subvoxel NSD" if ok else "\nVALUES DISAGREE")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
