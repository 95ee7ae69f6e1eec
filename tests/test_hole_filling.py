"""SAM2's small-hole filling without its CUDA extension, against a brute-force flood fill and SAM2's own wrapper.

The oracle is a breadth-first flood fill written here (8-connected background components, their sizes), checked
on random masks and on the shapes that decide the bounded propagation: holes of 7, 8 and 9 pixels laid out as
lines (the longest geodesic path a component of that size can have), components that are one in 8-connectivity
but two in 4-connectivity, and components touching the border (SAM2 fills those too: the rule is size only).
"""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
import torch

from zeroshot.errors import SegmenterError
from zeroshot.segmenters.hole_filling import (
    HOLE_LOGIT,
    check_fill_hole_area,
    fill_small_holes,
    small_background,
)

NEIGHBOURS_8 = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def flood_fill_sizes(background: np.ndarray) -> np.ndarray:
    """Size of each pixel's 8-connected background component (0 on the foreground), by breadth-first search."""
    height, width = background.shape
    sizes = np.zeros((height, width), dtype=np.int64)
    seen = np.zeros((height, width), dtype=bool)
    for y in range(height):
        for x in range(width):
            if not background[y, x] or seen[y, x]:
                continue
            component, queue = [], deque([(y, x)])
            seen[y, x] = True
            while queue:
                cy, cx = queue.popleft()
                component.append((cy, cx))
                for dy, dx in NEIGHBOURS_8:
                    ny, nx = cy + dy, cx + dx
                    if 0 <= ny < height and 0 <= nx < width and background[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        queue.append((ny, nx))
            for cy, cx in component:
                sizes[cy, cx] = len(component)
    return sizes


def oracle_fill(logits: np.ndarray, max_area: int) -> np.ndarray:
    """SAM2's rule on one (H, W) image, through the flood fill: background components <= max_area get 0.1."""
    sizes = flood_fill_sizes(logits <= 0)
    return np.where((sizes > 0) & (sizes <= max_area), np.float32(HOLE_LOGIT), logits).astype(np.float32)


def line_hole(length: int, *, shape=(12, 14), diagonal: bool = False) -> np.ndarray:
    """Foreground logits 1 with a background line of ``length`` pixels (straight, or a diagonal staircase)."""
    logits = np.ones(shape, dtype=np.float32)
    for i in range(length):
        y, x = (1 + i, 1 + i) if diagonal else (5, 1 + i)
        logits[y, x] = -1.0
    return logits


@pytest.mark.parametrize("length", [7, 8, 9])
@pytest.mark.parametrize("diagonal", [False, True])
def test_line_holes_of_7_8_9_pixels(length, diagonal):
    """A line is the worst case for the bounded propagation (diameter = size - 1): 7 and 8 filled, 9 not."""
    logits = line_hole(length, diagonal=diagonal)
    filled = fill_small_holes(torch.from_numpy(logits), 8).numpy()
    np.testing.assert_array_equal(filled, oracle_fill(logits, 8))
    assert (filled == np.float32(HOLE_LOGIT)).sum() == (length if length <= 8 else 0)


def test_a_snake_of_9_pixels_is_not_filled_but_of_8_is():
    """A bent path: its far end sees labels that stopped changing only where the component is complete."""
    logits = np.ones((10, 10), dtype=np.float32)
    path = [(2, 2), (2, 3), (2, 4), (3, 5), (4, 4), (4, 3), (5, 2), (6, 3), (6, 4)]
    for y, x in path:
        logits[y, x] = -0.5
    assert fill_small_holes(torch.from_numpy(logits), 8).numpy().max() == 1.0  # 9 pixels: nothing filled
    np.testing.assert_array_equal(fill_small_holes(torch.from_numpy(logits), 9).numpy(), oracle_fill(logits, 9))
    logits[6, 4] = 1.0
    assert (fill_small_holes(torch.from_numpy(logits), 8).numpy() == np.float32(HOLE_LOGIT)).sum() == 8


def test_diagonal_neighbours_join_components_4_connectivity_would_split():
    """Two 4-pixel squares touching at one corner: two holes in 4-connectivity, one 8-pixel hole in SAM2's 8."""
    logits = np.ones((8, 8), dtype=np.float32)
    logits[1:3, 1:3] = -1.0
    logits[3:5, 3:5] = -1.0
    filled = fill_small_holes(torch.from_numpy(logits), 7).numpy()
    np.testing.assert_array_equal(filled, oracle_fill(logits, 7))
    assert (filled == np.float32(HOLE_LOGIT)).sum() == 0  # one component of 8 > 7 (4-connectivity: two of 4)
    filled = fill_small_holes(torch.from_numpy(logits), 8).numpy()
    assert (filled == np.float32(HOLE_LOGIT)).sum() == 8


@pytest.mark.parametrize(
    "corner", [(slice(0, 2), slice(0, 3)), (slice(-2, None), slice(-4, None)), (slice(0, 1), slice(3, 11))]
)
def test_holes_touching_the_border_are_filled_by_size(corner):
    logits = np.ones((9, 12), dtype=np.float32)
    logits[corner] = -2.0
    filled = fill_small_holes(torch.from_numpy(logits), 8).numpy()
    np.testing.assert_array_equal(filled, oracle_fill(logits, 8))
    assert (filled == np.float32(HOLE_LOGIT)).any() == ((logits <= 0).sum() <= 8)


@pytest.mark.parametrize("density", [0.1, 0.3, 0.5, 0.7, 0.9])
@pytest.mark.parametrize("max_area", [1, 3, 8])
def test_random_masks_equal_the_flood_fill(density, max_area):
    rng = np.random.default_rng(int(density * 100) + max_area)
    logits = rng.normal(size=(24, 13, 17)).astype(np.float32)
    logits[rng.random(logits.shape) < density] = 0.0  # exactly 0 is background (``<= 0``)
    logits[rng.random(logits.shape) < 0.02] = np.nan  # NaN is not background
    filled = fill_small_holes(torch.from_numpy(logits)[:, None], max_area)[:, 0].numpy()
    for image, got in zip(logits, filled, strict=True):
        np.testing.assert_array_equal(got, oracle_fill(image, max_area))


def test_smooth_random_masks_with_components_of_every_size_near_8():
    """Smoothed noise makes blobs of all sizes: components of 7, 8, 9 and 10 pixels, some on the border."""
    from scipy import ndimage

    rng = np.random.default_rng(0)
    logits = ndimage.gaussian_filter(rng.normal(size=(40, 48, 48)), (0, 1.2, 1.2)).astype(np.float32) - 0.15
    sizes = np.concatenate([flood_fill_sizes(image <= 0).ravel() for image in logits])
    assert all(np.count_nonzero(sizes == n) >= n for n in (7, 8, 9, 10))
    filled = fill_small_holes(torch.from_numpy(logits), 8).numpy()
    for image, got in zip(logits, filled, strict=True):
        np.testing.assert_array_equal(got, oracle_fill(image, 8))


def test_random_masks_equal_sam2s_own_function_with_a_flood_fill_labeller(monkeypatch):
    """SAM2's ``fill_holes_in_mask_scores`` with its CUDA labeller replaced by the flood fill gives the same."""
    import sam2.utils.misc as misc

    def labeller(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sizes = torch.stack([torch.from_numpy(flood_fill_sizes(m[0].numpy() > 0)) for m in mask])[:, None]
        return (sizes > 0).to(torch.int32), sizes.to(torch.int32)

    monkeypatch.setattr(misc, "get_connected_components", labeller)
    rng = np.random.default_rng(5)
    logits = torch.from_numpy(rng.normal(0.5, 1.0, size=(6, 1, 32, 32)).astype(np.float32))
    expected = misc.fill_holes_in_mask_scores(logits, 8)
    assert not torch.equal(expected, logits)  # the case has holes to fill
    assert torch.equal(fill_small_holes(logits, 8), expected)


def test_chunks_and_leading_dimensions_do_not_change_the_result(monkeypatch):
    import zeroshot.segmenters.hole_filling as module

    rng = np.random.default_rng(2)
    background = torch.from_numpy(rng.random((3, 4, 11, 9)) < 0.4)
    whole = small_background(background, 8)
    monkeypatch.setattr(module, "_CHUNK", 5)
    assert torch.equal(small_background(background, 8), whole)
    assert torch.equal(small_background(background.reshape(12, 11, 9), 8).reshape(whole.shape), whole)


def test_no_holes_and_off():
    logits = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert torch.equal(fill_small_holes(logits, 8), logits)
    everything = -torch.ones(3, 3)  # one 9-pixel component: too large for 8
    assert torch.equal(fill_small_holes(everything, 8), everything)
    assert fill_small_holes(everything, 0) is everything
    assert fill_small_holes(everything.double(), 9).dtype == torch.float64


def test_invalid_areas_raise():
    assert check_fill_hole_area(8) == 8 and check_fill_hole_area(0.0) == 0
    for bad in (-1, 2.5, "8", True):
        with pytest.raises(SegmenterError, match="fill_hole_area must be a whole number of low-resolution pixels"):
            check_fill_hole_area(bad)
    with pytest.raises(SegmenterError, match="max_area must be at least 1, got 0"):
        small_background(torch.zeros(2, 2, dtype=torch.bool), 0)
    with pytest.raises(SegmenterError, match="too large to label"):
        small_background(torch.zeros(4096, 4096, dtype=torch.bool), 8)


def test_docstring_examples_run():
    import doctest

    from zeroshot.segmenters import hole_filling

    result = doctest.testmod(hole_filling)
    assert result.attempted >= 3 and result.failed == 0


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_equals_cpu():
    rng = np.random.default_rng(9)
    logits = torch.from_numpy(rng.normal(0.3, 1.0, size=(64, 1, 128, 128)).astype(np.float32))
    on_cpu = fill_small_holes(logits, 8)
    on_cuda = fill_small_holes(logits.cuda(), 8)
    assert on_cuda.device.type == "cuda" and torch.equal(on_cuda.cpu(), on_cpu)
    assert not torch.equal(on_cpu, logits)
