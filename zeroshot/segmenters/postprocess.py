"""Mask post-processing of the final 3D mask, on the CPU with SciPy: identical whatever device produced the mask.

These steps act on the thresholded mask at the input grid, after propagation. SAM2's own small-hole filling on
its low-resolution logits, inside propagation, is another step (:mod:`zeroshot.segmenters.hole_filling`).

:class:`PostProcessing` names the steps a mask still needs as a value, so that they can run elsewhere than where
the mask was made: ``zeroshot eval`` has a video session return the thresholded mask with its pending
post-processing (``Segmentation.postprocessing``) and applies it in its scoring workers, off the model's thread.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

__all__ = [
    "PostProcessed",
    "PostProcessing",
    "clear_outside_z_extent",
    "fill_holes_per_slice",
    "keep_largest_component",
    "postprocess_mask",
]

#: 26-connectivity in 3D (faces, edges and corners), as ``skimage.measure.label``'s default that MedSAM2 uses.
_FULL_3D = np.ones((3, 3, 3), dtype=bool)


def keep_largest_component(mask: np.ndarray) -> np.ndarray:
    """Keep the largest 26-connected component of a 3D mask.

    Parameters
    ----------
    mask : (Z, Y, X) bool array

    Returns
    -------
    (Z, Y, X) bool array
        An empty mask stays empty. Of components with equal size the first in raster order (lowest ``z``, then
        ``y``, then ``x`` of its first voxel) is kept, so the result is deterministic.

    Examples
    --------
    >>> m = np.zeros((1, 1, 6), dtype=bool); m[0, 0, [0, 2, 3]] = True
    >>> keep_largest_component(m).astype(int).tolist()
    [[[0, 0, 1, 1, 0, 0]]]
    """
    labels, count = ndimage.label(mask, structure=_FULL_3D)
    if count <= 1:
        return mask.astype(bool, copy=True)
    sizes = np.bincount(labels.ravel())[1:]
    return labels == int(np.argmax(sizes)) + 1


def fill_holes_per_slice(mask: np.ndarray) -> np.ndarray:
    """Fill the holes of each axial slice (background regions not connected to the slice border).

    Parameters
    ----------
    mask : (Z, Y, X) bool array

    Returns
    -------
    (Z, Y, X) bool array
    """
    out = np.empty_like(mask, dtype=bool)
    for z in range(mask.shape[0]):
        out[z] = ndimage.binary_fill_holes(mask[z])
    return out


def postprocess_mask(
    mask: np.ndarray, *, fill_enclosed_holes: bool = False, largest_component: bool = False
) -> np.ndarray:
    """Apply the optional post-processing steps in a fixed order: enclosed-hole filling, then largest component.

    Parameters
    ----------
    mask : (Z, Y, X) bool array
    fill_enclosed_holes : bool
        Fill every enclosed hole, whatever its size, slice by slice (:func:`fill_holes_per_slice`).
    largest_component : bool
        Keep the largest 26-connected 3D component (:func:`keep_largest_component`), as MedSAM2 does.

    Returns
    -------
    (Z, Y, X) bool array
        A new array; ``mask`` is not modified.
    """
    out = mask.astype(bool, copy=True)
    if fill_enclosed_holes:
        out = fill_holes_per_slice(out)
    if largest_component:
        out = keep_largest_component(out)
    return out


def clear_outside_z_extent(mask: np.ndarray, z_min: int, z_max: int) -> tuple[np.ndarray, int]:
    """``mask`` with every slice outside ``[z_min, z_max]`` (inclusive) cleared, and how many voxels that cleared.

    Parameters
    ----------
    mask : (Z, Y, X) array
    z_min, z_max : int
        The slab kept; ``0 <= z_min <= z_max < Z`` (checked by the caller, which knows the case).

    Returns
    -------
    ((Z, Y, X) array, int)
        A new array (``mask`` is not modified) and the count of non-zero voxels cleared.
    """
    outside = np.ones(mask.shape[0], bool)
    outside[z_min : z_max + 1] = False
    out = mask.copy()
    cleared = int(np.count_nonzero(out[outside]))
    out[outside] = False
    return out, cleared


@dataclass(frozen=True)
class PostProcessed:
    """A post-processed mask and what its steps record.

    Attributes
    ----------
    mask : (Z, Y, X) bool array
    z_extent_voxels_cleared : int or None
        Voxels cleared outside the z-extent (``None`` when there is none).
    """

    mask: np.ndarray
    z_extent_voxels_cleared: int | None = None

    def info(self) -> dict[str, int]:
        """The entries the steps add to a segmentation's ``info`` (none without a z-extent)."""
        if self.z_extent_voxels_cleared is None:
            return {}
        return {"z_extent_voxels_cleared": self.z_extent_voxels_cleared}


@dataclass(frozen=True)
class PostProcessing:
    """The CPU post-processing a thresholded mask still needs, as a value that can travel to a worker process.

    :meth:`apply` runs the steps in a fixed order: enclosed-hole filling, the largest 3D component (both as
    :func:`postprocess_mask`), then clearing outside a z-extent (the runner's z-extent prompts,
    :mod:`zeroshot.runner.zextent`). The order matters: the largest component is chosen in the whole volume
    before the slab is cut, so a deferred mask ends exactly as one post-processed where it was made.

    Attributes
    ----------
    fill_enclosed_holes, largest_component : bool
    z_extent : (int, int) or None
        ``(z_min, z_max)``, inclusive, already validated against the volume.

    Examples
    --------
    >>> m = np.zeros((3, 1, 4), dtype=bool); m[0, 0, :2] = m[2, 0, :] = True
    >>> done = PostProcessing(largest_component=True, z_extent=(0, 1)).apply(m)
    >>> int(done.mask.sum()), done.z_extent_voxels_cleared
    (0, 4)
    """

    fill_enclosed_holes: bool = False
    largest_component: bool = False
    z_extent: tuple[int, int] | None = None

    @property
    def does_anything(self) -> bool:
        """Whether any step is on (an empty post-processing need not be deferred or applied)."""
        return self.fill_enclosed_holes or self.largest_component or self.z_extent is not None

    def within(self, z_min: int, z_max: int) -> PostProcessing:
        """The same steps, then every slice outside ``[z_min, z_max]`` cleared."""
        return replace(self, z_extent=(int(z_min), int(z_max)))

    def apply(self, mask: np.ndarray) -> PostProcessed:
        """Post-process ``mask`` ((Z, Y, X) bool; not modified)."""
        out = postprocess_mask(
            mask, fill_enclosed_holes=self.fill_enclosed_holes, largest_component=self.largest_component
        )
        if self.z_extent is None:
            return PostProcessed(out)
        out, cleared = clear_outside_z_extent(out, *self.z_extent)
        return PostProcessed(out, cleared)
