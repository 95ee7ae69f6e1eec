"""Volumes: NIfTI in, a canonical ``(z, y, x)`` array with spacing in mm, and masks written back to overlay the input.

The canonical orientation is LPS voxel order read as ``(z, y, x)``: x increases towards the patient's left, y
towards posterior, z towards superior. Shown with ``imshow`` (row 0 at the top) a slice is in the radiological
convention (anterior up, patient's right on the image's left). Reorientation only permutes and flips axes (the
closest orthogonal orientation, as nibabel's ``io_orientation`` picks it), so it is exact and writing a mask
back is its exact inverse, whatever the input's orientation, obliquity or voxel size.
"""

from __future__ import annotations

import dataclasses
import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel import orientations as ornt

from zeroshot.atomic import write_atomic
from zeroshot.errors import VolumeError, plain
from zeroshot.structure import check_label_value, describe_values

__all__ = [
    "CANONICAL_AXCODES",
    "Geometry",
    "Volume",
    "grid_difference",
    "label_mask",
    "read_header",
    "read_label",
    "read_label_values",
    "read_volume",
    "save_nifti",
    "volume_from_array",
    "write_mask",
]

#: Axis codes of the canonical voxel order (i, j, k); the array is stored transposed as (k, j, i) = (z, y, x).
CANONICAL_AXCODES = ("L", "P", "S")

#: Largest difference allowed between an image's and its label's affines, in mm (translations) or
#: direction-cosine units; scanners and converters round headers differently.
AFFINE_TOLERANCE = 1e-3

#: Largest distance of a label file's value from a whole number that is still read as that number (labels stored
#: as floats carry rounding noise); a file with values further off (6.6, 7.4) is not a label map and is refused.
LABEL_VALUE_TOLERANCE = 1e-3

CANONICAL_AXCODES_ORNT = ornt.axcodes2ornt(CANONICAL_AXCODES)


@dataclass(frozen=True, eq=False)
class Geometry:
    """What is needed to write a canonical ``(z, y, x)`` array back onto the original voxel grid.

    Attributes
    ----------
    affine : (4, 4) float array
        Voxel-to-world (RAS+ mm) affine of the original file.
    shape : tuple of int
        Spatial shape of the original file's array (its i, j, k order).
    orientation : (3, 2) array
        nibabel orientation array of the file's voxel axes (closest orthogonal orientation of ``affine``).
    header : nibabel.Nifti1Header or None
        Header of the original file (qform/sform codes, units) reused when writing results.
    """

    affine: np.ndarray
    shape: tuple[int, int, int]
    orientation: np.ndarray
    header: nib.Nifti1Header | None = None

    @property
    def to_canonical(self) -> np.ndarray:
        """Orientation transform from the file's voxel order to ``CANONICAL_AXCODES``."""
        return ornt.ornt_transform(self.orientation, CANONICAL_AXCODES_ORNT)

    def to_file_order(self, canonical: np.ndarray) -> np.ndarray:
        """Return a ``(z, y, x)`` canonical array re-ordered onto the original file's voxel grid."""
        lps = np.transpose(canonical, (2, 1, 0))
        back = ornt.ornt_transform(CANONICAL_AXCODES_ORNT, self.orientation)
        out = ornt.apply_orientation(lps, back)
        if out.shape != self.shape:
            raise VolumeError(f"array of shape {canonical.shape} does not fit the original grid {self.shape}")
        return np.ascontiguousarray(out)

    @property
    def canonical_affine(self) -> np.ndarray:
        """Voxel-to-world affine of the canonical array, indexed ``(i, j, k) = (x, y, z)``."""
        inv = ornt.inv_ornt_aff(self.to_canonical, self.shape)
        return self.affine @ inv


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D scan as the toolkit uses it.

    Attributes
    ----------
    array : (Z, Y, X) float32 array
        Intensities, z the slice axis (canonical orientation, see the module docstring).
    spacing_mm : tuple of 3 floats
        Voxel size in mm in array-axis order ``(z, y, x)``.
    geometry : Geometry or None
        How to write results back onto the source file's grid; ``None`` for arrays not read from a file.
    source : Path or None
        The file the volume was read from.
    """

    array: np.ndarray
    spacing_mm: tuple[float, float, float]
    geometry: Geometry | None = None
    source: Path | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(Z, Y, X)`` shape of the array."""
        return tuple(int(s) for s in self.array.shape)  # type: ignore[return-value]

    @property
    def num_slices(self) -> int:
        """Number of slices along z."""
        return int(self.array.shape[0])

    @property
    def diagonal_mm(self) -> float:
        """Physical length of the volume's diagonal in mm (the D_max that penalises missed organs)."""
        return float(np.linalg.norm(np.asarray(self.shape) * np.asarray(self.spacing_mm)))

    def fingerprint(self) -> str:
        """A short checksum of the intensities and spacing, to detect a changed input between runs."""
        crc = zlib.crc32(np.ascontiguousarray(self.array).tobytes())
        crc = zlib.crc32(np.asarray(self.spacing_mm, dtype=np.float64).tobytes(), crc)
        return f"{crc:08x}"

    def with_array(self, array: np.ndarray) -> Volume:
        """Return a copy holding ``array`` (same shape) instead of the intensities."""
        if array.shape != self.array.shape:
            raise VolumeError(f"new array has shape {array.shape}, the volume has {self.array.shape}")
        return dataclasses.replace(self, array=array)


def volume_from_array(array: np.ndarray, spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> Volume:
    """Wrap a ``(z, y, x)`` array that did not come from a file (tests, phantoms before writing).

    Examples
    --------
    >>> v = volume_from_array(np.zeros((4, 8, 6)), (3.0, 1.5, 1.5))
    >>> v.shape, v.spacing_mm
    ((4, 8, 6), (3.0, 1.5, 1.5))
    """
    array = np.asarray(array)
    if array.ndim != 3:
        raise VolumeError(f"expected a 3D (z, y, x) array, got shape {array.shape}")
    spacing = _check_spacing(spacing_mm, "array")
    return Volume(array=_check_finite(array.astype(np.float32, copy=False), "array"), spacing_mm=spacing)


def read_volume(path: str | Path) -> Volume:
    """Read a NIfTI image (``.nii`` or ``.nii.gz``) into a canonical float32 :class:`Volume`.

    Raises
    ------
    VolumeError
        If the file is missing, unreadable or truncated, not 3D (a 4D file with a singleton last axis is
        accepted), has NaN/Inf intensities, or zero/negative/non-finite voxel sizes.
    """
    path = Path(path)
    image, data = _load(path)
    array = _check_finite(data.astype(np.float32, copy=False), path)
    return _to_canonical(image, array, path)


def read_header(path: str | Path) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """Return the canonical ``(z, y, x)`` shape and spacing (mm) of a NIfTI file without reading its voxels."""
    path = Path(path)
    if not path.is_file():
        raise VolumeError(f"{path}: file not found")
    try:
        image = nib.load(path)
    except Exception as exc:
        raise VolumeError(f"{path}: cannot read as NIfTI ({type(exc).__name__}: {exc})") from exc
    shape = tuple(int(s) for s in image.shape[:3])
    if len(image.shape) < 3 or (len(image.shape) == 4 and image.shape[3] != 1) or len(image.shape) > 4:
        raise VolumeError(f"{path}: expected a 3D volume, found shape {image.shape}")
    to_canonical = ornt.ornt_transform(ornt.io_orientation(image.affine), CANONICAL_AXCODES_ORNT)
    zooms = np.linalg.norm(image.affine[:3, :3], axis=0)
    shape_ijk = [0, 0, 0]
    spacing_ijk = [0.0, 0.0, 0.0]
    for axis, (target, _flip) in enumerate(to_canonical):
        shape_ijk[int(target)] = shape[axis]
        spacing_ijk[int(target)] = float(zooms[axis])
    return (shape_ijk[2], shape_ijk[1], shape_ijk[0]), (spacing_ijk[2], spacing_ijk[1], spacing_ijk[0])


def read_label(path: str | Path, image: Volume, *, label: int, require_label: bool = True) -> np.ndarray:
    """Read a label file as a boolean ``(z, y, x)`` mask of one label value, on the grid of ``image``.

    Parameters
    ----------
    path : path
        Label NIfTI (whole numbers: 0 background, one value per structure).
    image : Volume
        The image the label belongs to (read with :func:`read_volume`): the label must lie on its voxel grid, in
        any orientation of it (both are reoriented to the canonical one, losslessly; see :func:`grid_difference`).
    label : int
        The structure's value (1 or more): the run's, never a default (:mod:`zeroshot.structure`).
    require_label : bool
        If true (default), a file without any voxel of ``label`` is an error. If false, a file holding only
        background gives an empty mask (a case without the structure); a file holding *other* structures but not
        this one is still an error (:func:`label_mask`).

    Raises
    ------
    VolumeError
        For every reason :func:`read_volume` gives, a grid that differs from the image's (the message says how),
        values that are not whole numbers, or a ``label`` value the file does not hold (see ``require_label``).
    ConfigError
        ``label`` is 0 (the background) or not a whole number of at least 1.
    """
    check_label_value(label, "label")
    path = Path(path)
    if image.geometry is None:
        raise VolumeError(f"{path}: the image volume was not read from a file; cannot place its label")
    nii, data = _load(path)
    labels = _to_canonical(nii, data, path)  # the raw values, reoriented like every volume
    problem = grid_difference(labels, image)
    if problem is not None:
        raise VolumeError(
            f"{path}: the label is not on its image's voxel grid ({image.source}): {problem}; the label was not "
            "made on this image's grid"
        )
    return label_mask(labels.array, label, path, require_label=require_label)


def grid_difference(volume: Volume, reference: Volume) -> str | None:
    """How ``volume`` is off ``reference``'s voxel grid, or ``None`` when it lies on it (in any orientation).

    Both are compared in the canonical orientation (their arrays and :attr:`Geometry.canonical_affine`), so the
    same voxels stored in another axis order or direction (RAS vs LPS, PSR) agree exactly; what would need
    resampling is named: another shape, voxel size, rotation or origin (to :data:`AFFINE_TOLERANCE` mm, scaled by
    the affine's largest entry as for header rounding).
    """
    if volume.geometry is None or reference.geometry is None:
        return "a volume not read from a file has no grid to compare"
    if volume.shape != reference.shape:
        return f"shape {volume.shape} (z, y, x) differs from {reference.shape}"
    affine, reference_affine = volume.geometry.canonical_affine, reference.geometry.canonical_affine
    scale = max(1.0, float(np.max(np.abs(reference_affine))))
    if float(np.max(np.abs(affine - reference_affine))) <= AFFINE_TOLERANCE * scale:
        return None
    if max(abs(a - b) for a, b in zip(volume.spacing_mm, reference.spacing_mm, strict=True)) > AFFINE_TOLERANCE:
        return f"voxel size {_mm(volume.spacing_mm)} mm (z, y, x) differs from {_mm(reference.spacing_mm)} mm"
    axes = affine[:3, :3] / np.asarray(volume.spacing_mm[::-1])
    reference_axes = reference_affine[:3, :3] / np.asarray(reference.spacing_mm[::-1])
    if float(np.max(np.abs(axes - reference_axes))) > AFFINE_TOLERANCE:
        return "the voxel axes are rotated against each other"
    shift = float(np.linalg.norm(affine[:3, 3] - reference_affine[:3, 3]))
    return f"the grid is shifted by {shift:.4g} mm"


def _mm(values: tuple[float, ...]) -> str:
    return " x ".join(f"{float(v):.4g}" for v in values)


def label_mask(data: np.ndarray, label: int, where: object, *, require_label: bool = True) -> np.ndarray:
    """The voxels of a label array equal to ``label``, after checking that the array is a label map.

    Parameters
    ----------
    data : array
        Label values (any shape): whole numbers, to :data:`LABEL_VALUE_TOLERANCE` when stored as floats.
    label : int
        The structure's value (1 or more).
    where : object
        The file, named in errors.
    require_label : bool
        See :func:`read_label`.

    Raises
    ------
    VolumeError
        NaN/Inf or non-integer values (the file is an image or a probability map, not labels); ``label`` absent
        from a file that holds other structures (or from any file, with ``require_label``), naming the values
        present.
    """
    check_label_value(label, "label")
    values = _whole_numbers(data, where)
    mask = values == label
    if not mask.any():
        present = _values_present(values)
        if require_label or any(v != 0 for v in present):
            raise VolumeError(
                f"{where}: label value {label} is absent; the file holds values {describe_values(present)} "
                "(choose the structure with --label VALUE)"
            )
    return mask


def read_label_values(path: str | Path) -> tuple[int, ...]:
    """The label values present in a label file, sorted (0 included when present).

    Raises
    ------
    VolumeError
        An unreadable file, or values that are not whole numbers.
    """
    path = Path(path)
    _, data = _load(path)
    return tuple(_values_present(_whole_numbers(data, path)))


def _whole_numbers(data: np.ndarray, where: object) -> np.ndarray:
    """``data`` as whole numbers: integer arrays as they are, floats rounded after checking they are integral."""
    data = np.asarray(data)
    if data.dtype == bool or data.dtype.kind in "iu":
        return data
    if not np.all(np.isfinite(data)):
        raise VolumeError(f"{where}: label contains NaN or Inf values")
    rounded = np.rint(data)
    off = np.abs(data - rounded) > LABEL_VALUE_TOLERANCE
    if off.any():
        examples = ", ".join(f"{v:g}" for v in np.unique(data[off])[:5])
        raise VolumeError(
            f"{where}: not a label map: {int(off.sum())} voxel(s) hold values that are not whole numbers "
            f"(e.g. {examples}); a label file holds 0 for background and one whole number per structure "
            "(is this an image or a probability map?)"
        )
    return rounded


def _values_present(values: np.ndarray) -> list[int]:
    return [int(v) for v in np.unique(values)]


def write_mask(path: str | Path, mask: np.ndarray, reference: Volume, *, dtype: type = np.uint8) -> Path:
    """Write a canonical ``(z, y, x)`` mask so that it overlays the reference image's file in any viewer.

    The output has the reference file's shape, affine, orientation and header (qform and sform with their codes,
    0 included, units, description), with integer data.
    The file is written to a temporary name and renamed, so a reader never sees half a file.
    """
    path = Path(path)
    if reference.geometry is None:
        raise VolumeError(f"{path}: the reference volume was not read from a file; no geometry to write back to")
    mask = np.asarray(mask)
    if mask.shape != reference.shape:
        raise VolumeError(f"{path}: mask shape {mask.shape} does not match the volume's {reference.shape}")
    data = reference.geometry.to_file_order(mask.astype(dtype))
    header = reference.geometry.header.copy() if reference.geometry.header is not None else None
    out = nib.Nifti1Image(data, reference.geometry.affine, header=header)
    out.set_data_dtype(dtype)
    out.header.set_slope_inter(1.0, 0.0)  # the input header's qform/sform codes and matrices are kept as they are
    return save_nifti(out, path)


def save_nifti(image: nib.Nifti1Image, path: str | Path) -> Path:
    """Write a NIfTI image atomically and byte-for-byte reproducibly (gzip with a zero timestamp for ``.gz``).

    The bytes go to a temporary file beside ``path`` that is then renamed over it, so a reader (or a run killed
    mid-write) never leaves half a file under the final name.
    """
    path = Path(path)
    if not (path.name.endswith(".nii.gz") or path.name.endswith(".nii")):
        raise VolumeError(f"{path}: NIfTI file names end in .nii or .nii.gz")
    data = image.to_bytes()
    if path.name.endswith(".gz"):
        data = gzip.compress(data, compresslevel=1, mtime=0)
    return write_atomic(path, data)


def _load(path: Path) -> tuple[nib.Nifti1Image, np.ndarray]:
    if not path.is_file():
        raise VolumeError(f"{path}: file not found")
    try:
        image = nib.load(path)
        data = np.asanyarray(image.dataobj)
    except Exception as exc:  # nibabel raises many types for bad or truncated files
        raise VolumeError(f"{path}: cannot read as NIfTI ({type(exc).__name__}: {exc})") from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        kind = "2D" if data.ndim == 2 else f"{data.ndim}D"
        raise VolumeError(f"{path}: expected a 3D volume, found {kind} data of shape {data.shape}")
    if min(data.shape) < 1:
        raise VolumeError(f"{path}: empty array of shape {data.shape}")
    affine = image.affine
    if affine is None or not np.all(np.isfinite(affine)):
        raise VolumeError(f"{path}: the affine is missing or not finite")
    zooms = np.linalg.norm(affine[:3, :3], axis=0)
    if np.any(zooms <= 0) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise VolumeError(f"{path}: voxel spacing must be positive, found {plain(tuple(np.round(zooms, 6)))} mm")
    # nibabel silently replaces zero voxel sizes by 1 mm on load; read the raw header to refuse them instead.
    raw_zooms = _raw_pixdim(path, image)
    if raw_zooms is not None and (np.any(~np.isfinite(raw_zooms)) or np.any(raw_zooms <= 0)):
        raise VolumeError(
            f"{path}: voxel spacing must be positive, found {plain(tuple(raw_zooms.astype(np.float32)))} mm"
        )
    return image, data


def _raw_pixdim(path: Path, image: nib.spatialimages.SpatialImage) -> np.ndarray | None:
    """The voxel sizes as stored in a NIfTI header, before nibabel's fixes; ``None`` for other formats."""
    header_class = type(image.header)
    if not isinstance(image.header, nib.Nifti1Header):
        return None
    with nib.openers.ImageOpener(path) as handle:
        raw = header_class.from_fileobj(handle, check=False)
    return np.abs(np.asarray(raw["pixdim"][1:4], dtype=float))


def _check_finite(array: np.ndarray, where: object) -> np.ndarray:
    if not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise VolumeError(f"{where}: {bad} voxel(s) are NaN or Inf")
    return array


def _check_spacing(spacing_mm: tuple[float, float, float], where: object) -> tuple[float, float, float]:
    spacing = tuple(float(s) for s in spacing_mm)
    if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise VolumeError(
            f"{where}: spacing must be three positive mm values in (z, y, x) order, got {plain(spacing_mm)}"
        )
    return spacing  # type: ignore[return-value]


def _to_canonical(image: nib.Nifti1Image, array: np.ndarray, path: Path) -> Volume:
    file_ornt = ornt.io_orientation(image.affine)
    to_canonical = ornt.ornt_transform(file_ornt, CANONICAL_AXCODES_ORNT)
    lps = ornt.apply_orientation(array, to_canonical)
    zooms = np.linalg.norm(image.affine[:3, :3], axis=0)
    spacing_ijk = np.empty(3)
    for axis, (target, _flip) in enumerate(to_canonical):
        spacing_ijk[int(target)] = zooms[axis]
    geometry = Geometry(
        affine=np.array(image.affine, dtype=np.float64),
        shape=tuple(int(s) for s in array.shape),  # type: ignore[arg-type]
        orientation=file_ornt,
        header=image.header.copy() if isinstance(image.header, nib.Nifti1Header) else None,
    )
    canonical = np.ascontiguousarray(np.transpose(lps, (2, 1, 0)))
    spacing = (float(spacing_ijk[2]), float(spacing_ijk[1]), float(spacing_ijk[0]))
    return Volume(array=canonical, spacing_mm=spacing, geometry=geometry, source=path)
