"""SAM2's small-hole filling (``fill_hole_area``), computed with torch operations on the logits' own device.

SAM2's video predictor, as built by ``build_sam2_video_predictor`` (and MedSAM2's
``build_sam2_video_predictor_npz``), fills small holes in its low-resolution (``S/4``) mask logits: every
8-connected component of background pixels (logit ``<= 0``) of at most ``fill_hole_area = 8`` pixels gets the
logit 0.1 (``sam2/utils/misc.py``, ``fill_holes_in_mask_scores``). Components touching the image border count
too: the rule is about size, not enclosure. SAM2 labels the components with a compiled CUDA extension
(``sam2._C``); without it (any pip build with ``SAM2_BUILD_CUDA=0``, every CPU) it warns and skips the step, so
the authors' GPU runs and everyone's CPU runs differ.

:func:`fill_small_holes` computes the same result without the extension, identical on every device, and without
a data-dependent loop, so a GPU never waits for the host:

1. every background pixel starts with its own index as a label (foreground pixels hold a value above all labels);
2. ``max_area - 1`` times, each background pixel takes the smallest label among itself and its 8 neighbours in
   the background (a 3 x 3 min-pool restricted to the background). A component of ``n <= max_area`` pixels has
   a geodesic diameter of at most ``n - 1`` steps, so afterwards all its pixels hold its smallest index;
3. a label region is *closed* when none of its pixels has a background neighbour with another label; a closed
   region is a whole component (labels only travel inside components). Per label, the pixels holding it and
   those of them with another label next door are counted (``index_add_``, no host synchronisation);
4. a background pixel is a hole exactly when its label region is closed and holds at most ``max_area`` pixels.
   A larger component either has not converged (some region is open) or is closed and too big.

Backend-neutral: torch only, no model code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from zeroshot.errors import SegmenterError

__all__ = ["HOLE_LOGIT", "OFFICIAL_FILL_HOLE_AREA", "check_fill_hole_area", "fill_small_holes", "small_background"]

#: The area SAM2's and MedSAM2's predictor builders set (``++model.fill_hole_area=8``), in low-resolution pixels.
OFFICIAL_FILL_HOLE_AREA = 8
#: The logit SAM2 gives a filled hole (``torch.where(is_hole, 0.1, mask)``): just above the threshold 0.
HOLE_LOGIT = 0.1
#: Images labelled in one batch: bounds the ``(N * H * W)`` index tensors (128 x 128 logits: 32 MiB of indices).
_CHUNK = 256


def check_fill_hole_area(area: int) -> int:
    """Return ``area`` as an int if it is a whole number >= 0 (0 turns hole filling off).

    Raises
    ------
    SegmenterError
        For a negative, fractional or non-numeric area.
    """
    if isinstance(area, bool) or not isinstance(area, int | float) or int(area) != area or area < 0:
        raise SegmenterError(
            f"fill_hole_area must be a whole number of low-resolution pixels >= 0 (SAM2 uses 8, 0 is off); got {area!r}"
        )
    return int(area)


def small_background(background: torch.Tensor, max_area: int) -> torch.Tensor:
    """Background pixels whose 8-connected background component has at most ``max_area`` pixels.

    Parameters
    ----------
    background : (..., H, W) bool tensor
        Any leading dimensions; each ``(H, W)`` image is labelled on its own.
    max_area : int
        At least 1.

    Returns
    -------
    (..., H, W) bool tensor
        On the input's device.

    Examples
    --------
    >>> bg = torch.zeros(4, 5, dtype=torch.bool)
    >>> bg[0, 0] = bg[2, 1] = bg[3, 2] = bg[1, 4] = True  # a 1-pixel corner, a diagonal pair, an edge pixel
    >>> small_background(bg, 1).int().tolist()
    [[1, 0, 0, 0, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]
    >>> small_background(bg, 2).int().tolist()
    [[1, 0, 0, 0, 0], [0, 0, 0, 0, 1], [0, 1, 0, 0, 0], [0, 0, 1, 0, 0]]
    """
    if max_area < 1:
        raise SegmenterError(f"max_area must be at least 1, got {max_area}")
    shape = background.shape
    height, width = int(shape[-2]), int(shape[-1])
    if height * width >= 2**24:  # labels are float32 (what max-pooling takes on every device): exact below 2**24
        raise SegmenterError(f"images of {height} x {width} pixels are too large to label (at most 2**24 pixels)")
    flat = background.reshape(-1, 1, height, width)
    out = torch.empty_like(flat)
    for start in range(0, flat.shape[0], _CHUNK):
        out[start : start + _CHUNK] = _small_components(flat[start : start + _CHUNK], max_area)
    return out.reshape(shape)


def fill_small_holes(logits: torch.Tensor, max_area: int = OFFICIAL_FILL_HOLE_AREA) -> torch.Tensor:
    """SAM2's ``fill_holes_in_mask_scores``: background components of ``<= max_area`` pixels get logit 0.1.

    Parameters
    ----------
    logits : (..., H, W) float tensor
        Mask logits (SAM2: ``(N, 1, S/4, S/4)``); background is ``logits <= 0`` (NaN is not background).
    max_area : int
        Largest component filled, in pixels of ``logits``; 0 returns ``logits`` unchanged.

    Returns
    -------
    (..., H, W) tensor
        A new tensor of the input's dtype and device (``logits`` itself when ``max_area`` is 0).
    """
    if max_area == 0:
        return logits
    holes = small_background(logits <= 0, max_area)
    return torch.where(holes, torch.tensor(HOLE_LOGIT, dtype=logits.dtype, device=logits.device), logits)


def _small_components(background: torch.Tensor, max_area: int) -> torch.Tensor:
    """:func:`small_background` of ``(B, 1, H, W)`` images (see the module docstring for the steps)."""
    batch, _, height, width = background.shape
    pixels = height * width
    device = background.device
    index = torch.arange(pixels, dtype=torch.float32, device=device).reshape(1, 1, height, width)
    above = torch.tensor(float(pixels), device=device)  # larger than every label
    below = torch.tensor(-1.0, device=device)  # smaller than every label
    labels = torch.where(background, index, above)
    for _ in range(max_area - 1):
        labels = torch.where(background, -F.max_pool2d(-labels, 3, stride=1, padding=1), above)
    lowest_near = -F.max_pool2d(-labels, 3, stride=1, padding=1)  # foreground neighbours hold `above`
    highest_near = F.max_pool2d(torch.where(background, labels, below), 3, stride=1, padding=1)
    leaks = background & ((lowest_near != labels) | (highest_near != labels))
    # One bin per (image, label); foreground pixels go to a last, unused bin.
    offsets = (torch.arange(batch, device=device) * pixels).reshape(batch, 1, 1, 1)
    bins = torch.where(background, labels.long() + offsets, batch * pixels).reshape(-1)
    area = torch.zeros(batch * pixels + 1, dtype=torch.int32, device=device)
    area.index_add_(0, bins, torch.ones_like(bins, dtype=torch.int32))
    leaking = torch.zeros_like(area).index_add_(0, bins, leaks.reshape(-1).to(torch.int32))
    closed_and_small = (leaking == 0) & (area <= max_area)
    return background & closed_and_small[bins].reshape(background.shape)
