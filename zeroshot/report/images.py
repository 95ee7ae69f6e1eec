"""Slice images of one case entry: the image with ground truth, prediction and prompt drawn, as small PNGs.

Each image is a crop around everything drawn (the structure, the prediction, the prompt boxes) with a margin, in
the array's own orientation (as the overlays figure shows it). Small crops are enlarged by a whole factor (nearest
neighbour: each voxel stays a sharp square) so that a one-pixel contour is visible; crops wider than
:data:`MAX_SIDE_PX` are reduced. The PNG is a palette image (:data:`GRAY_LEVELS` gray levels plus the overlay
colours), a third of the bytes of RGB, and is encoded by Pillow without timestamps or metadata, so the same arrays
give the same bytes.

Colours are the figures' (:mod:`zeroshot.figures.style`): ground truth green, drawn two pixels wide underneath so it
shows where the prediction follows it exactly; prediction orange, one pixel; prompts sky blue (dashed box, ``+`` a
positive point or click, ``x`` a negative one).

The per-slice Dice along z is drawn as inline SVG (a few hundred bytes, no image file).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from zeroshot.figures.style import GT_COLOR, PRED_COLOR, PROMPT_COLOR
from zeroshot.report.sources import PromptMarks

__all__ = [
    "GRAY_LEVELS",
    "MAX_SIDE_PX",
    "TARGET_SIDE_PX",
    "Crop",
    "dice_along_z_svg",
    "entry_crop",
    "intensity_window",
    "slice_png",
]

#: Crops are enlarged by a whole factor (at most 4) towards this longer side.
TARGET_SIDE_PX = 192
#: Crops with a longer side are reduced to it.
MAX_SIDE_PX = 256
CROP_MARGIN_PX = 12
#: Gray levels of the images (palette indices 0..63; the overlay colours follow). 64 levels show MR anatomy without
#: visible banding, and cost a quarter fewer bytes than 252 on noisy slices (PNG spends its bytes on the noise).
GRAY_LEVELS = 64
_GT, _PRED, _PROMPT = GRAY_LEVELS, GRAY_LEVELS + 1, GRAY_LEVELS + 2


def _rgb(hex_colour: str) -> list[int]:
    return [int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)]


_PALETTE = [
    *(v for level in np.linspace(0, 255, GRAY_LEVELS).round().astype(int) for v in (level, level, level)),
    *_rgb(GT_COLOR),
    *_rgb(PRED_COLOR),
    *_rgb(PROMPT_COLOR),
    0,
    0,
    0,
]


@dataclass(frozen=True)
class Crop:
    """The in-plane window of a case entry's images and the scale they are shown at.

    Attributes
    ----------
    rows, cols : slice
        The crop, in slice pixels ``(y, x)``.
    scale : float
        Display pixels per slice pixel (a whole number when enlarging).
    """

    rows: slice
    cols: slice
    scale: float

    @property
    def shape(self) -> tuple[int, int]:
        """Size of the crop in slice pixels ``(height, width)``."""
        return self.rows.stop - self.rows.start, self.cols.stop - self.cols.start

    @property
    def display_shape(self) -> tuple[int, int]:
        """Size of the image written, in pixels ``(height, width)``."""
        height, width = self.shape
        return max(1, round(height * self.scale)), max(1, round(width * self.scale))


def entry_crop(slice_shape: tuple[int, int], masks: Sequence[np.ndarray], marks: Sequence[PromptMarks]) -> Crop:
    """The crop around what a case entry draws: masks (``(Z, Y, X)`` or ``(Y, X)`` bool) and prompt marks.

    Nothing to draw (both masks empty, no prompt) gives the whole slice.
    """
    height, width = slice_shape
    ys: list[int] = []
    xs: list[int] = []
    for mask in masks:
        if mask is None:
            continue
        plane = mask.any(axis=0) if mask.ndim == 3 else mask
        rows, cols = np.nonzero(plane.any(axis=1))[0], np.nonzero(plane.any(axis=0))[0]
        if rows.size:
            ys += [int(rows[0]), int(rows[-1])]
            xs += [int(cols[0]), int(cols[-1])]
    for mark in marks:
        if mark.box is not None:
            xs += [mark.box[0], mark.box[2]]
            ys += [mark.box[1], mark.box[3]]
        for x, y in mark.points:
            xs.append(x)
            ys.append(y)
    if ys:
        rows = slice(max(0, min(ys) - CROP_MARGIN_PX), min(height, max(ys) + CROP_MARGIN_PX + 1))
        cols = slice(max(0, min(xs) - CROP_MARGIN_PX), min(width, max(xs) + CROP_MARGIN_PX + 1))
    else:
        rows, cols = slice(0, height), slice(0, width)
    longer = max(rows.stop - rows.start, cols.stop - cols.start)
    scale = MAX_SIDE_PX / longer if longer > MAX_SIDE_PX else float(max(1, min(4, TARGET_SIDE_PX // longer)))
    return Crop(rows, cols, scale)


def intensity_window(image: np.ndarray) -> tuple[float, float]:
    """The gray window of a volume: its 0.5 and 99.5 percentiles (the figures' window), one for all its slices."""
    finite = image[np.isfinite(image)]
    if not finite.size:
        return 0.0, 1.0
    low, high = np.percentile(finite, [0.5, 99.5])
    return float(low), float(max(high, low + 1e-6))


def _resize(plane: np.ndarray, crop: Crop, *, nearest: bool) -> np.ndarray:
    height, width = crop.display_shape
    if crop.scale >= 1:  # enlarge by a whole factor: repeat each pixel
        factor = int(crop.scale)
        return np.repeat(np.repeat(plane, factor, axis=0), factor, axis=1)
    resample = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
    if plane.dtype == bool:
        return np.asarray(Image.fromarray(plane.astype(np.uint8) * 255).resize((width, height), resample)) > 127
    return np.asarray(Image.fromarray(plane.astype(np.float32), mode="F").resize((width, height), resample))


def _outline(mask: np.ndarray, *, width: int) -> np.ndarray:
    inner = mask & ~ndimage.binary_erosion(mask)
    return inner | (ndimage.binary_dilation(mask) & ~mask) if width > 1 else inner


def _draw_marks(canvas: np.ndarray, marks: Sequence[PromptMarks], crop: Crop) -> None:
    height, width = canvas.shape

    def to_display(x: float, y: float) -> tuple[int, int]:
        return (
            math.floor((x - crop.cols.start + 0.5) * crop.scale),
            math.floor((y - crop.rows.start + 0.5) * crop.scale),
        )

    def put(x: int, y: int) -> None:
        if 0 <= x < width and 0 <= y < height:
            canvas[y, x] = _PROMPT

    for mark in marks:
        if mark.box is not None:  # just outside its inclusive pixels: the outlines inside it stay visible
            x0, y0 = to_display(mark.box[0] - 0.5, mark.box[1] - 0.5)
            x1, y1 = to_display(mark.box[2] + 0.5, mark.box[3] + 0.5)
            x0, y0 = x0 - 1, y0 - 1
            for x in range(x0, x1 + 1):
                if (x - x0) % 6 < 4:  # dashed, as the figures draw the box
                    put(x, y0)
                    put(x, y1)
            for y in range(y0, y1 + 1):
                if (y - y0) % 6 < 4:
                    put(x0, y)
                    put(x1, y)
        for (x, y), label in zip(mark.points, mark.labels, strict=False):
            cx, cy = to_display(x, y)
            for d in range(-3, 4):
                if label == 1:
                    put(cx + d, cy)
                    put(cx, cy + d)
                else:
                    put(cx + d, cy + d)
                    put(cx + d, cy - d)


def slice_png(
    image: np.ndarray,
    gt: np.ndarray,
    prediction: np.ndarray | None,
    marks: Sequence[PromptMarks],
    crop: Crop,
    window: tuple[float, float],
) -> bytes:
    """One slice as PNG bytes: gray image, ground-truth and predicted outlines, prompt marks.

    Parameters
    ----------
    image : (Y, X) float array
    gt : (Y, X) bool array
    prediction : (Y, X) bool array or None
        ``None``: nothing predicted is drawn (the prediction was not saved).
    marks : sequence of PromptMarks
        The marks of this slice.
    crop : Crop
    window : (float, float)
        Intensities drawn black and white.
    """
    low, high = window
    plane = _resize(image[crop.rows, crop.cols].astype(np.float32), crop, nearest=False)
    gray = np.clip((plane - low) / (high - low), 0.0, 1.0)
    canvas = np.rint(gray * (GRAY_LEVELS - 1)).astype(np.uint8)
    canvas[_outline(_resize(gt[crop.rows, crop.cols], crop, nearest=True), width=2)] = _GT
    if prediction is not None:
        canvas[_outline(_resize(prediction[crop.rows, crop.cols], crop, nearest=True), width=1)] = _PRED
    _draw_marks(canvas, marks, crop)
    picture = Image.fromarray(canvas, mode="P")
    picture.putpalette(_PALETTE)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def dice_along_z_svg(
    dice_by_z: Sequence[tuple[int, float]],
    *,
    depth: int,
    key_slices: Sequence[int],
    shown: Sequence[int],
    width: int = 260,
    height: int = 64,
) -> str:
    """The per-slice Dice along z as an inline SVG: a line over the slices where it is defined.

    Slices where Dice is undefined (both masks empty) break the line. Key slices are marked by dashed vertical
    lines, the slices shown as images by ticks at the bottom.
    """
    pad = 4
    plot_w, plot_h = width - 2 * pad, height - 2 * pad - 6

    def x_of(z: float) -> float:
        return pad + (z + 0.5) * plot_w / max(depth, 1)

    def y_of(value: float) -> float:
        return pad + (1.0 - value) * plot_h

    parts = [
        f'<svg class="dicez" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">',
        f"<title>Dice per slice along z (0 to 1; {depth} slices)</title>",
        f'<rect x="{pad}" y="{pad}" width="{plot_w}" height="{plot_h}" class="frame"/>',
    ]
    for z in sorted(set(key_slices)):
        parts.append(f'<line x1="{x_of(z):.1f}" y1="{pad}" x2="{x_of(z):.1f}" y2="{pad + plot_h}" class="key"/>')
    for z in sorted(set(shown)):
        x = x_of(z)
        parts.append(f'<line x1="{x:.1f}" y1="{pad + plot_h + 1}" x2="{x:.1f}" y2="{height - 1}" class="shown"/>')
    run: list[str] = []
    for z, value in [*sorted(dice_by_z), (depth + 1, float("nan"))]:
        if math.isfinite(value):
            run.append(f"{x_of(z):.1f},{y_of(value):.1f}")
            continue
        if len(run) == 1:
            x, y = run[0].split(",")
            parts.append(f'<circle cx="{x}" cy="{y}" r="1.5" class="dice"/>')
        elif run:
            parts.append(f'<polyline points="{" ".join(run)}" class="dice"/>')
        run = []
    parts.append("</svg>")
    return "".join(parts)
