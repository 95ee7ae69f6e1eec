"""zeroshot.metrics against independent implementations on randomised cases.

References: DeepMind's algorithm as published on PyPI (``surface-distance`` 0.1; called only with two non-empty
masks, its empty-mask paths crash under NumPy 2) and MONAI's surface Dice with ``use_subvoxels=True``. The cases
cover random blobs, anisotropic spacing, objects touching the image border, one-voxel and thin objects, distant
false positives and two-blob objects.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from scipy import ndimage

from zeroshot.metrics import _surface, score_case, surface_distances, surfel_area_table

sd = pytest.importorskip("surface_distance")
lookup_tables = pytest.importorskip("surface_distance.lookup_tables")

RTOL = 1e-6
TOLERANCES_MM = (1.0, 2.0, 3.0)
N_PER_KIND = 30  # 7 kinds: 210 cases


def random_spacing(rng: np.random.Generator) -> tuple[float, float, float]:
    """Anisotropic spacing: thick slices, unequal in-plane sizes, values that are not round in binary."""
    return float(rng.uniform(0.5, 6.0)), float(rng.uniform(0.3, 2.0)), float(rng.uniform(0.3, 2.0))


def random_shape(rng: np.random.Generator) -> tuple[int, int, int]:
    return int(rng.integers(6, 16)), int(rng.integers(10, 26)), int(rng.integers(10, 26))


def blob(rng: np.random.Generator, shape: tuple[int, ...], threshold: float = 0.3) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.normal(size=shape), sigma=rng.uniform(1.0, 2.5))
    return field > threshold * field.std()


def kind_blobs(rng, shape):
    return blob(rng, shape), blob(rng, shape)


def kind_overlapping(rng, shape):
    gt = blob(rng, shape)
    pred = ndimage.binary_dilation(gt, iterations=int(rng.integers(1, 3))) if rng.random() < 0.5 else gt.copy()
    return gt, np.roll(pred, tuple(int(s) for s in rng.integers(-2, 3, size=3)), axis=(0, 1, 2))


def kind_touching_border(rng, shape):
    gt, pred = blob(rng, shape, 0.0), blob(rng, shape, 0.0)
    gt[0], pred[:, -1] = True, True  # whole faces of the image belong to the objects
    return gt, pred


def kind_one_voxel(rng, shape):
    gt, pred = np.zeros(shape, bool), np.zeros(shape, bool)
    gt[tuple(int(rng.integers(0, n)) for n in shape)] = True
    if rng.random() < 0.5:
        pred[tuple(int(rng.integers(0, n)) for n in shape)] = True
    else:
        pred = blob(rng, shape)
    return gt, pred


def kind_thin(rng, shape):
    gt, pred = np.zeros(shape, bool), np.zeros(shape, bool)
    axis = int(rng.integers(0, 3))
    index = [slice(None)] * 3
    index[axis] = int(rng.integers(0, shape[axis]))
    gt[tuple(index)] = rng.random(gt[tuple(index)].shape) > 0.3  # a one-voxel-thick plate with holes
    z, y = int(rng.integers(0, shape[0])), int(rng.integers(0, shape[1]))
    pred[z, y, :] = True  # a one-voxel line
    pred[tuple(index)] |= rng.random(pred[tuple(index)].shape) > 0.6
    return gt, pred


def kind_distant_false_positive(rng, shape):
    gt = np.zeros(shape, bool)
    gt[: shape[0] // 2, : shape[1] // 2, : shape[2] // 2] = blob(rng, (shape[0] // 2, shape[1] // 2, shape[2] // 2))
    gt[0, 0, 0] = True
    pred = ndimage.binary_erosion(gt) | gt & (rng.random(shape) > 0.2)
    pred[-2:, -3:, -3:] = True  # an island at the far corner
    return gt, pred


def kind_two_blobs(rng, shape):
    gt, pred = np.zeros(shape, bool), np.zeros(shape, bool)
    half = shape[2] // 2
    gt[:, :, :half], gt[:, :, half + 1 :] = blob(rng, (*shape[:2], half)), blob(rng, (*shape[:2], shape[2] - half - 1))
    pred[:, :, :half] = blob(rng, (*shape[:2], half))
    return gt, pred | (np.roll(gt, 1, axis=1) & (rng.random(shape) > 0.5))


KINDS: dict[str, Callable] = {
    "blobs": kind_blobs,
    "overlapping": kind_overlapping,
    "touching_border": kind_touching_border,
    "one_voxel": kind_one_voxel,
    "thin": kind_thin,
    "distant_false_positive": kind_distant_false_positive,
    "two_blobs": kind_two_blobs,
}


def cases(seed: int = 2024) -> Iterator[tuple[str, np.ndarray, np.ndarray, tuple[float, float, float]]]:
    rng = np.random.default_rng(seed)
    for name, make in KINDS.items():
        made = 0
        while made < N_PER_KIND:
            gt, pred = make(rng, random_shape(rng))
            if gt.any() and pred.any():  # surface-distance 0.1 crashes on empty masks under NumPy 2
                made += 1
                yield name, gt, pred, random_spacing(rng)


def reference(gt: np.ndarray, pred: np.ndarray, spacing: tuple[float, float, float]) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # scipy.ndimage.filters / .morphology namespaces
        d = sd.compute_surface_distances(gt, pred, spacing)
    forward = np.sum(d["distances_gt_to_pred"] * d["surfel_areas_gt"])
    backward = np.sum(d["distances_pred_to_gt"] * d["surfel_areas_pred"])
    area_gt, area_pred = np.sum(d["surfel_areas_gt"]), np.sum(d["surfel_areas_pred"])
    values = {
        "dice": sd.compute_dice_coefficient(gt, pred),
        "hd95_mm": sd.compute_robust_hausdorff(d, 95),
        "hd_mm": sd.compute_robust_hausdorff(d, 100),
        "masd_mm": float(np.mean(sd.compute_average_surface_distance(d))),
        "assd_mm": (forward + backward) / (area_gt + area_pred),
    }
    for t in TOLERANCES_MM:
        values[f"nsd_{t:g}mm"] = sd.compute_surface_dice_at_tolerance(d, t)
    return values, d


ALL_CASES = list(cases())


def test_the_randomised_set_is_large_and_varied() -> None:
    assert len(ALL_CASES) >= 200
    assert {name for name, *_ in ALL_CASES} == set(KINDS)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (5.0, 1.5, 1.5), (0.7, 2.3, 1.1), (3.3, 0.4, 0.9)])
def test_surfel_areas_match_deepminds_lookup_table(spacing: tuple[float, float, float]) -> None:
    theirs = lookup_tables.create_table_neighbour_code_to_surface_area(spacing)
    np.testing.assert_allclose(surfel_area_table(spacing), theirs, rtol=1e-12, atol=0)


def test_every_metric_matches_surface_distance_on_randomised_cases() -> None:
    mismatches = []
    for i, (name, gt, pred, spacing) in enumerate(ALL_CASES):
        ours = score_case(gt, pred, spacing, tolerances_mm=TOLERANCES_MM).as_row()
        theirs, _ = reference(gt, pred, spacing)
        for key, value in theirs.items():
            if not np.isclose(ours[key], value, rtol=RTOL, atol=1e-12):
                mismatches.append(f"case {i} ({name}, spacing {spacing}): {key} ours {ours[key]!r} theirs {value!r}")
    assert not mismatches, "\n".join(mismatches[:20])


@pytest.mark.parametrize("crossover", [None, 0, 10**9], ids=["auto", "k-d tree", "distance transform"])
def test_surface_distances_match_surface_distance_surfel_by_surfel(crossover, monkeypatch) -> None:
    if crossover is not None:
        monkeypatch.setattr(_surface, "TREE_CROSSOVER", crossover)
    for name, gt, pred, spacing in ALL_CASES[::3]:
        ours = surface_distances(gt, pred, spacing)
        _, theirs = reference(gt, pred, spacing)
        for mine, key_d, key_a in (
            (ours.gt_to_pred, "distances_gt_to_pred", "surfel_areas_gt"),
            (ours.pred_to_gt, "distances_pred_to_gt", "surfel_areas_pred"),
        ):
            np.testing.assert_allclose(mine.distances_mm, theirs[key_d], rtol=1e-12, atol=1e-12, err_msg=name)
            np.testing.assert_allclose(mine.areas_mm2, theirs[key_a], rtol=1e-12, atol=0, err_msg=name)


def test_nsd_matches_monai_subvoxel_surface_dice() -> None:
    torch = pytest.importorskip("torch")
    monai_metrics = pytest.importorskip("monai.metrics")
    for name, gt, pred, spacing in ALL_CASES[::10]:
        ours = score_case(gt, pred, spacing, tolerances_mm=(2.0,)).nsd_at(2.0)
        theirs = monai_metrics.compute_surface_dice(
            torch.from_numpy(pred)[None, None],
            torch.from_numpy(gt)[None, None],
            [2.0],
            include_background=True,
            spacing=list(spacing),
            use_subvoxels=True,
        )
        assert ours == pytest.approx(float(theirs), rel=RTOL, abs=1e-7), name


def test_monai_default_hd95_uses_another_definition() -> None:
    # Recorded disagreement: MONAI measures between voxel-centre edges and interpolates its percentile, so its HD95
    # is not ours (nor DeepMind's). If this starts to pass as equal, the note in DESIGN.md needs revisiting.
    torch = pytest.importorskip("torch")
    monai_metrics = pytest.importorskip("monai.metrics")
    _, gt, pred, spacing = ALL_CASES[0]
    ours = score_case(gt, pred, spacing).hd95_mm
    theirs = float(
        monai_metrics.compute_hausdorff_distance(
            torch.from_numpy(pred)[None, None],
            torch.from_numpy(gt)[None, None],
            include_background=True,
            percentile=95,
            spacing=list(spacing),
        )
    )
    assert theirs != pytest.approx(ours, rel=1e-3)
