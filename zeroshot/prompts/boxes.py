"""Box prompts: the tight box of a slice's structure, jittered per side and shifted, in % of its size or in mm."""

from __future__ import annotations

from typing import Any

import numpy as np

from zeroshot.prompts.settings import BoxSettings

__all__ = ["jitter_box"]

#: Uniform draws each box consumes, whatever its settings, so that streams stay aligned across ablations (the
#: seventh, for ``outward_256px``, came last: the first six are those boxes drew before it existed).
DRAWS_PER_BOX = 7


def jitter_box(
    box: tuple[int, int, int, int],
    shape_yx: tuple[int, int],
    spacing_yx_mm: tuple[float, float],
    settings: BoxSettings,
    rng: np.random.Generator,
) -> tuple[tuple[int, int, int, int], dict[str, Any]]:
    """Move each side of an inclusive ``(x0, y0, x1, y1)`` box at random, then the whole box, and clip it.

    Each side moves outwards by ``a * u`` pixels, with ``u`` uniform in ``[-1, 1]`` (``both``) or ``[0, 1]``
    (``outward``) and ``a = jitter_percent / 100 * size + jitter_mm / spacing`` using the box's size and the pixel
    spacing along that side's axis (x sides: columns; y sides: rows). With ``outward_256px = n`` every side also
    moves outwards by ``int(k * X / 256)`` columns (x sides) or ``int(k * Y / 256)`` rows (y sides), one whole
    ``k = floor(w * (n + 1))`` for all four, ``w`` uniform in ``[0, 1)`` (MedSAM's and the CVPR 2025 challenge's
    perturbation). The box then moves by ``b * v`` along
    each axis, ``v`` uniform in ``[-1, 1]`` and ``b`` from ``shift_percent`` and ``shift_mm`` alike. Sides that
    cross are merged at their mean; the result is rounded to whole pixels and clipped to the slice. Exactly
    :data:`DRAWS_PER_BOX` numbers are drawn from ``rng`` (even at zero jitter), so a given seed moves the box of
    a 5 % and a 10 % strategy in the same directions.

    Parameters
    ----------
    box : (x0, y0, x1, y1) ints
        The tight box, inclusive pixel indices.
    shape_yx : (int, int)
        Slice shape (rows, columns).
    spacing_yx_mm : (float, float)
        Pixel spacing in mm along rows (y) and columns (x).
    settings : BoxSettings
    rng : numpy.random.Generator

    Returns
    -------
    box : (x0, y0, x1, y1) ints
        The box to use, inside the slice.
    info : dict
        ``tight_box``, ``side_offsets_px`` (outward moves of x0, y0, x1, y1 before rounding), ``shift_px``
        (x, y), ``clipped`` (whether the slice's edge cut the box) and, with ``outward_256px``, the
        ``outward_256px_drawn`` k, JSON-ready.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> jitter_box((2, 3, 5, 9), (12, 8), (1.0, 1.0), BoxSettings(), rng)[0]
    (2, 3, 5, 9)
    """
    x0, y0, x1, y1 = box
    height, width = shape_yx
    spacing_y, spacing_x = spacing_yx_mm
    size_x, size_y = x1 - x0 + 1, y1 - y0 + 1
    draws = rng.random(DRAWS_PER_BOX)
    sides = draws[:4] if settings.jitter_direction == "outward" else 2.0 * draws[:4] - 1.0
    shifts = 2.0 * draws[4:6] - 1.0
    amplitude_x = settings.jitter_percent / 100.0 * size_x + settings.jitter_mm / spacing_x
    amplitude_y = settings.jitter_percent / 100.0 * size_y + settings.jitter_mm / spacing_y
    offsets = sides * np.array([amplitude_x, amplitude_y, amplitude_x, amplitude_y])
    outward_256 = int(draws[6] * (settings.outward_256px + 1))
    outward_x, outward_y = int(outward_256 * width / 256), int(outward_256 * height / 256)
    offsets = offsets + np.array([outward_x, outward_y, outward_x, outward_y])
    shift_x = shifts[0] * (settings.shift_percent / 100.0 * size_x + settings.shift_mm / spacing_x)
    shift_y = shifts[1] * (settings.shift_percent / 100.0 * size_y + settings.shift_mm / spacing_y)
    lo_x, hi_x = _ordered(x0 - offsets[0] + shift_x, x1 + offsets[2] + shift_x)
    lo_y, hi_y = _ordered(y0 - offsets[1] + shift_y, y1 + offsets[3] + shift_y)
    rounded = [int(np.rint(v)) for v in (lo_x, lo_y, hi_x, hi_y)]
    limits = (width - 1, height - 1, width - 1, height - 1)
    used = tuple(min(max(v, 0), limit) for v, limit in zip(rounded, limits, strict=True))
    info = {
        "tight_box": [int(v) for v in box],
        "side_offsets_px": [_rounded(v) for v in offsets],
        "shift_px": [_rounded(shift_x), _rounded(shift_y)],
        "clipped": list(used) != rounded,
    }
    if settings.outward_256px:
        info["outward_256px_drawn"] = outward_256
    return used, info  # type: ignore[return-value]


def _rounded(value: float) -> float:
    """Three decimals for the record, and no ``-0.0`` (a zero amplitude times a negative draw)."""
    return round(float(value), 3) + 0.0


def _ordered(lo: float, hi: float) -> tuple[float, float]:
    """Two sides that crossed (inward jitter larger than half the box) meet at their mean."""
    if lo <= hi:
        return lo, hi
    mean = (lo + hi) / 2.0
    return mean, mean
