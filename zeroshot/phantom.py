"""A synthetic multi-sequence abdomen: the built-in demo and test data.

Each case is one synthetic subject scanned with three sequences (T1 fat-suppressed GRE, T2 single-shot FSE and
T1 opposed-phase GRE) on one voxel grid. Anatomy is drawn in physical millimetres: a body outline with air
outside, subcutaneous and intra-abdominal fat, abdominal wall and paraspinal muscle, spine, liver, spleen,
kidneys, stomach, duodenum, bowel loops, gallbladder, aorta, IVC, the splenic vein, and a pancreas-like organ
(a curved tube with head, body and tail whose size, position and curvature vary per case; where its tail bends
back in z a slice cuts it twice).

Contrasts follow the table in DESIGN.md. Opposed-phase images are made the way the scanner makes them: the
magnitude of water minus fat signal, computed after partial-volume blurring, so every fat–water boundary gets a
dark "India-ink" rim and the pancreas's boundary contrast changes sign between T1 and OOP. Centers differ in
in-plane spacing, slice thickness, field of view, bias field, noise, intensity scale and the orientation of the
file's affine (one center writes an oblique affine).

Random weights and synthetic images test machinery; they say nothing about accuracy on real scans.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel import orientations as ornt
from scipy import interpolate, ndimage
from scipy.spatial import cKDTree

from zeroshot.datasets import MANIFEST_COLUMNS, MANIFEST_NAME, SEQUENCES
from zeroshot.errors import ZeroshotError, plain
from zeroshot.volume import CANONICAL_AXCODES_ORNT, Volume, save_nifti, volume_from_array

__all__ = [
    "CENTERS",
    "SIGNAL",
    "Center",
    "PhantomCase",
    "make_phantom_case",
    "write_phantom_dataset",
]

#: Relative signal of each tissue per sequence (0 = black, 1 = brightest). For OOP the tissues' water signal
#: is listed; fat's is ``OOP_FAT_SIGNAL`` and the two cancel where they share a voxel.
SIGNAL: Mapping[str, Mapping[str, float]] = {
    "T1": {
        "air": 0.0, "fat": 0.12, "muscle": 0.33, "bone": 0.30, "liver": 0.55, "spleen": 0.42,
        "kidney": 0.48, "fluid": 0.06, "vessel": 0.92, "pancreas": 0.85,
    },
    "T2": {
        "air": 0.0, "fat": 0.72, "muscle": 0.20, "bone": 0.28, "liver": 0.32, "spleen": 0.62,
        "kidney": 0.60, "fluid": 0.98, "vessel": 0.05, "pancreas": 0.38,
    },
    "OOP": {
        "air": 0.0, "fat": 0.0, "muscle": 0.35, "bone": 0.30, "liver": 0.56, "spleen": 0.38,
        "kidney": 0.50, "fluid": 0.08, "vessel": 0.55, "pancreas": 0.58,
    },
}  # fmt: skip
OOP_FAT_SIGNAL = 0.82
TISSUES = tuple(SIGNAL["T1"])
_T = {name: index for index, name in enumerate(TISSUES)}

#: Label value of the pancreas in written label files (0 = background), as in CrossPan.
PANCREAS_LABEL = 1
#: Structures a phantom's label files can hold (``write_phantom_dataset(label_values=...)``).
LABELLED_ORGANS = ("pancreas", "spleen")


@dataclass(frozen=True)
class Center:
    """An acquisition site: its protocol and scanner differences."""

    name: str
    inplane_mm: tuple[float, float]
    thickness_mm: tuple[float, float]
    noise: float
    bias: float
    intensity_scale: float
    axcodes: tuple[str, str, str]
    oblique_deg: float = 0.0


CENTERS = (
    Center("center-A", (1.2, 1.4), (3.0, 4.0), 0.020, 0.15, 1000.0, ("L", "P", "S")),
    Center("center-B", (1.4, 1.6), (4.0, 5.0), 0.035, 0.30, 3000.0, ("R", "A", "S")),
    Center("center-C", (1.6, 1.8), (5.0, 7.0), 0.045, 0.25, 600.0, ("P", "S", "R"), oblique_deg=4.0),
    Center("center-D", (1.3, 1.7), (3.5, 6.0), 0.030, 0.20, 1500.0, ("L", "A", "S")),
)

#: In-plane size (pixels along x) and slice counts for the two size presets.
SIZES = {"small": ((128, 176), (24, 40)), "realistic": ((256, 448), (40, 96))}


@dataclass(frozen=True, eq=False)
class PhantomCase:
    """One synthetic subject.

    Attributes
    ----------
    case_id : str
    center : Center
    volumes : mapping of sequence name to Volume
        Canonical ``(z, y, x)`` float32 volumes (already scaled to the center's intensity range, with noise).
    label : (Z, Y, X) bool array
        The pancreas.
    organs : mapping of str to (Z, Y, X) bool array
        Every structure of :data:`LABELLED_ORGANS` (the pancreas is ``label``), as multi-label files hold them.
    """

    case_id: str
    center: Center
    volumes: Mapping[str, Volume]
    label: np.ndarray
    organs: Mapping[str, np.ndarray] = field(default_factory=dict)

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size in mm, ``(z, y, x)``."""
        return next(iter(self.volumes.values())).spacing_mm


def make_phantom_case(
    seed: int,
    *,
    index: int = 0,
    center: Center | None = None,
    shape: tuple[int, int, int] | None = None,
    size: str = "small",
) -> PhantomCase:
    """Make one synthetic subject, deterministic in ``(seed, index)``.

    Parameters
    ----------
    seed : int
        Dataset seed.
    index : int
        Case number within the dataset; case ``i`` is the same whatever the dataset's size.
    center : Center or None
        Acquisition site; by default ``CENTERS[index % len(CENTERS)]``.
    shape : (Z, Y, X) or None
        Grid size; by default drawn from the ``size`` preset (non-square slices).
    size : {"small", "realistic"}
        ``small`` (128–176 px in-plane, 24–40 slices) for tests and the demo, ``realistic`` (256–448 px,
        40–96 slices) for benchmarks.
    """
    if size not in SIZES:
        raise ZeroshotError(f"unknown phantom size {size!r}; choose one of {', '.join(SIZES)}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))
    center = center or CENTERS[index % len(CENTERS)]
    spacing = (
        float(np.round(rng.uniform(*center.thickness_mm), 2)),
        float(np.round(rng.uniform(*center.inplane_mm), 3)),
    )
    spacing_mm = (spacing[0], spacing[1], spacing[1])
    if shape is None:
        (nx_lo, nx_hi), (nz_lo, nz_hi) = SIZES[size]
        nx = int(rng.integers(nx_lo, nx_hi + 1))
        shape = (int(rng.integers(nz_lo, nz_hi + 1)), round(nx * rng.uniform(0.78, 0.9)), nx)
    if len(shape) != 3 or min(shape) < 8:
        raise ZeroshotError(f"phantom shape must be three sizes of at least 8 voxels, got {plain(shape)}")
    tissue, fat_fraction = _anatomy(rng, shape, spacing_mm)
    label = tissue == _T["pancreas"]
    bias = _bias_field(rng, shape, center.bias)
    volumes = {}
    for sequence in SEQUENCES:
        clean = _render(sequence, tissue, fat_fraction, spacing_mm)
        noisy = _rician(rng, clean * bias, center.noise)
        volumes[sequence] = volume_from_array((noisy * center.intensity_scale).astype(np.float32), spacing_mm)
    organs = {name: tissue == _T[name] for name in LABELLED_ORGANS}
    return PhantomCase(case_id=f"phantom_{index:03d}", center=center, volumes=volumes, label=label, organs=organs)


def write_phantom_dataset(
    out: str | Path,
    *,
    cases: int = 12,
    seed: int = 0,
    size: str = "small",
    progress: bool = False,
    label_values: Mapping[str, int] | None = None,
) -> Path:
    """Write a phantom dataset in the CrossPan layout, plus ``manifest.csv`` (which also names centers).

    Files: ``{T1,T2,OOP}/{train,val,test}/images/<case>_0000.nii.gz`` (int16) and ``labels/<case>.nii.gz``
    (uint8, pancreas = 1), written in the center's orientation; identical bytes for the same ``seed``.
    Returns the manifest's path.

    ``label_values`` writes multi-label files instead, e.g. ``{"pancreas": 7, "spleen": 1}`` as TotalSegmentator
    numbers them (organs from :data:`LABELLED_ORGANS`), with a ``dataset.json`` naming each value (nnU-Net's
    ``labels``), so that the structure can be chosen by value or name (``--label 7``, ``--label pancreas``).
    """
    if cases < 1:
        raise ZeroshotError(f"--cases must be at least 1, got {cases}")
    values = dict(label_values) if label_values is not None else {"pancreas": PANCREAS_LABEL}
    unknown = sorted(set(values) - set(LABELLED_ORGANS))
    taken = [v for v in values.values() if not isinstance(v, int) or not 0 < v < 256]
    if unknown or taken or len(set(values.values())) != len(values) or "pancreas" not in values:
        raise ZeroshotError(
            f"label_values {values}: expected distinct values 1-255 for the pancreas and any of "
            f"{', '.join(LABELLED_ORGANS)}"
        )
    out = Path(out)
    rows = []
    from tqdm import tqdm

    for index in tqdm(range(cases), desc="phantom cases", unit="case", disable=not progress):
        split = ("train", "train", "train", "val", "test")[index % 5]
        center = CENTERS[(index + index // 5) % len(CENTERS)]
        case = make_phantom_case(seed, index=index, center=center, size=size)
        for sequence, volume in case.volumes.items():
            folder = out / sequence / split
            image_path = folder / "images" / f"{case.case_id}_0000.nii.gz"
            label_path = folder / "labels" / f"{case.case_id}.nii.gz"
            image = np.clip(np.rint(volume.array), 0, np.iinfo(np.int16).max).astype(np.int16)
            _write_oriented(image_path, image, volume.spacing_mm, center)
            labels = np.zeros(case.label.shape, np.uint8)
            for organ, value in values.items():
                labels[case.organs[organ]] = value
            _write_oriented(label_path, labels, volume.spacing_mm, center)
            rows.append(
                (case.case_id, image_path.relative_to(out), label_path.relative_to(out), sequence, center.name, split)
            )
    manifest = out / MANIFEST_NAME
    lines = [",".join(MANIFEST_COLUMNS)] + [",".join(str(v) for v in row) for row in rows]
    manifest.write_text("\n".join(lines) + "\n")
    if label_values is not None:
        named = {"background": 0, **dict(sorted(values.items(), key=lambda item: item[1]))}
        (out / "dataset.json").write_text(json.dumps({"name": "zeroshot phantom", "labels": named}, indent=2) + "\n")
    return manifest


# --- anatomy --------------------------------------------------------------------------------------------------


def _anatomy(rng: np.random.Generator, shape: tuple[int, int, int], spacing_mm: tuple[float, float, float]):
    """Return the tissue index map ``(z, y, x)`` and the pancreas's fat fraction map.

    Long because the order of its random draws defines every phantom ever written (one seed, the same bytes): it
    reads top to bottom as the body is built, and a split would invite reordering the draws.
    """
    nz, ny, nx = shape
    sz, sy, sx = spacing_mm
    # Physical coordinates (mm) centred on the grid: X to the patient's left, Y posterior, Z superior.
    z = ((np.arange(nz) - (nz - 1) / 2) * sz).astype(np.float32)[:, None, None]
    y = ((np.arange(ny) - (ny - 1) / 2) * sy).astype(np.float32)[None, :, None]
    x = ((np.arange(nx) - (nx - 1) / 2) * sx).astype(np.float32)[None, None, :]
    half_x, half_y, half_z = nx * sx / 2, ny * sy / 2, nz * sz / 2
    a = half_x * rng.uniform(0.84, 0.92)  # body half-width (mm)
    b = min(a * rng.uniform(0.68, 0.76), half_y * 0.94)  # body half-depth (mm)
    scale = a  # organ sizes scale with the body
    u, v, w = x / a, y / b, z / half_z  # normalised: body is the unit disc in (u, v); w in [-1, 1]
    r = np.sqrt(u**2 + v**2)

    tissue = np.full(shape, _T["air"], dtype=np.uint8)
    body = np.broadcast_to(r <= 1.0, shape)
    tissue[body] = _T["fat"]
    wall = (r > 0.86) & (r <= 0.92) & (v < 0.55)
    tissue[np.broadcast_to(wall, shape)] = _T["muscle"]

    def jit(value: float, amount: float = 0.04) -> float:
        return float(value + rng.uniform(-amount, amount))

    def ellipsoid(cu, cv, cw, ru, rv, rw):
        return ((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2 + ((w - cw) / rw) ** 2 <= 1.0

    def tube(cu, cv, radius_mm):
        return np.broadcast_to((x - cu * a) ** 2 + (y - cv * b) ** 2 <= radius_mm**2, shape)

    inside = np.broadcast_to(r <= 0.85, shape)

    def paint(mask, name):
        tissue[mask & inside] = _T[name]

    # Retroperitoneum and spine.
    for side in (-1.0, 1.0):
        paint(np.broadcast_to(((u - side * 0.24) / 0.16) ** 2 + ((v - 0.74) / 0.13) ** 2 <= 1.0, shape), "muscle")
    paint(np.broadcast_to((u / 0.13) ** 2 + ((v - 0.56) / (0.13 * a / b)) ** 2 <= 1.0, shape), "bone")
    for side, cw in ((-1.0, jit(-0.2, 0.1)), (1.0, jit(-0.05, 0.1))):
        paint(ellipsoid(side * jit(0.4), jit(0.52), cw, 0.13, 0.2, jit(0.42, 0.05)), "kidney")
    # Solid organs and hollow viscera.
    paint(ellipsoid(jit(-0.42), jit(-0.08), jit(0.45, 0.1), 0.45, 0.6, jit(0.85, 0.1)), "liver")
    paint(ellipsoid(jit(0.62), jit(0.3), jit(0.5, 0.1), 0.17, 0.27, 0.45), "spleen")
    paint(ellipsoid(jit(0.3), jit(-0.3), jit(0.55, 0.1), 0.24, 0.22, 0.38), "fluid")  # stomach
    paint(ellipsoid(jit(-0.33), jit(-0.32), jit(0.05, 0.1), 0.08, 0.1, 0.18), "fluid")  # gallbladder
    for _ in range(int(rng.integers(2, 5))):  # bowel loops, lower abdomen
        paint(ellipsoid(rng.uniform(-0.5, 0.5), rng.uniform(-0.6, -0.2), rng.uniform(-0.95, -0.45),
                        rng.uniform(0.08, 0.14), rng.uniform(0.07, 0.12), rng.uniform(0.15, 0.3)), "fluid")  # fmt: skip
    # Great vessels run the whole length.
    paint(tube(jit(0.06, 0.02), jit(0.36, 0.02), 0.05 * scale), "vessel")  # aorta
    paint(tube(jit(-0.14, 0.02), jit(0.34, 0.02), 0.055 * scale), "vessel")  # IVC

    # The pancreas: a tube along a smooth curve from head (right, low) through body to tail (left, towards the
    # spleen). The tail bends back down so that some slices cut it twice.
    bump = rng.uniform(0.05, 0.22)
    control = np.array(
        [
            [jit(-0.30), jit(0.22), jit(-0.50, 0.08)],
            [jit(-0.22), jit(0.14), jit(-0.28, 0.06)],
            [jit(-0.05), jit(0.06), jit(-0.12, 0.06)],
            [jit(0.16), jit(0.10), jit(0.02, 0.06) + bump / 2],
            [jit(0.36), jit(0.20), jit(0.10, 0.05) + bump],
            [jit(0.50), jit(0.28), jit(0.04, 0.05)],
        ]
    )
    t = np.linspace(0.0, 1.0, len(control))
    spline = interpolate.make_interp_spline(t, control, k=3)
    ts = np.linspace(0.0, 1.0, 400)
    curve = spline(ts) * np.array([a, b, half_z])  # (x, y, z) mm
    base = np.interp(ts, [0, 0.25, 0.6, 1.0], [0.095, 0.08, 0.062, 0.05]) * scale * rng.uniform(0.85, 1.15)
    lobulation = 1.0 + 0.12 * np.sin(2 * np.pi * ts * rng.uniform(3, 6) + rng.uniform(0, 2 * np.pi))
    radius = base * lobulation
    pancreas, nearest = _tube_mask(curve, radius, shape, spacing_mm)
    # The duodenum wraps the head on its right side; the splenic vein runs behind the body and tail.
    head = curve[:120]
    duodenum, _ = _tube_mask(head + np.array([-1.0, 0.3, 0.0]) * (radius[:120, None] + 0.05 * scale),
                             np.full(120, 0.045 * scale), shape, spacing_mm)  # fmt: skip
    vein_idx = slice(150, 360)
    vein, _ = _tube_mask(curve[vein_idx] + np.array([0.0, 1.0, 0.0]) * (radius[vein_idx, None] + 0.03 * scale),
                         np.full(210, 0.022 * scale), shape, spacing_mm)  # fmt: skip
    tissue[duodenum & inside & ~pancreas] = _T["fluid"]
    tissue[pancreas] = _T["pancreas"]
    tissue[vein & ~pancreas] = _T["vessel"]

    # Fatty infiltration of the pancreas: smooth, stronger towards the head in some subjects.
    fat_fraction = np.zeros(shape, dtype=np.float32)
    if pancreas.any():
        level = rng.uniform(0.0, 0.25)
        along = ts[nearest[pancreas]]
        fat_fraction[pancreas] = level * (0.5 + 0.5 * np.cos(np.pi * along * rng.uniform(0.5, 2.0)))
    return tissue, fat_fraction


def _tube_mask(curve_mm, radius_mm, shape, spacing_mm):
    """Voxels within ``radius_mm[i]`` of curve point ``i`` (x, y, z mm, grid-centred); also each voxel's nearest i."""
    spacing = np.asarray(spacing_mm)
    offset = (np.asarray(shape) - 1) / 2 * spacing
    reach = float(radius_mm.max())
    lo_xyz = curve_mm.min(axis=0) - reach
    hi_xyz = curve_mm.max(axis=0) + reach
    lo = np.floor((lo_xyz[::-1] + offset) / spacing).astype(int).clip(0, np.asarray(shape) - 1)
    hi = np.ceil((hi_xyz[::-1] + offset) / spacing).astype(int).clip(0, np.asarray(shape) - 1) + 1
    mask = np.zeros(shape, dtype=bool)
    nearest = np.zeros(shape, dtype=np.int32)
    if np.any(hi <= lo):
        return mask, nearest
    zz, yy, xx = np.meshgrid(*(np.arange(lo[i], hi[i]) for i in range(3)), indexing="ij")
    points = np.stack([xx, yy, zz], axis=-1).reshape(-1, 3) * spacing[::-1] - offset[::-1]
    distance, index = cKDTree(curve_mm).query(points, distance_upper_bound=reach)
    found = np.isfinite(distance)
    inside = np.zeros(len(points), dtype=bool)
    inside[found] = distance[found] <= radius_mm[index[found]]
    box = tuple(slice(lo[i], hi[i]) for i in range(3))
    mask[box] = inside.reshape(zz.shape)
    nearest[box] = np.where(found, index, 0).reshape(zz.shape)
    return mask, nearest


# --- imaging --------------------------------------------------------------------------------------------------


def _render(sequence, tissue, fat_fraction, spacing_mm):
    """Noise-free image of one sequence, with partial-volume blurring (and fat–water cancellation for OOP)."""
    # Partial volume: about one voxel in-plane and a fraction of the slice thickness through-plane.
    sigma = (0.45, 0.7, 0.7)
    lut = np.array([SIGNAL[sequence][name] for name in TISSUES], dtype=np.float32)
    is_fat = (tissue == _T["fat"]).astype(np.float32)
    if sequence != "OOP":
        signal = lut[tissue]
        pancreas = tissue == _T["pancreas"]
        signal[pancreas] = (1 - fat_fraction[pancreas]) * signal[pancreas] + fat_fraction[pancreas] * SIGNAL[sequence][
            "fat"
        ]
        return ndimage.gaussian_filter(signal, sigma)
    water = lut[tissue] * (1.0 - fat_fraction)
    fat = OOP_FAT_SIGNAL * (is_fat + fat_fraction)
    return np.abs(ndimage.gaussian_filter(water, sigma) - ndimage.gaussian_filter(fat, sigma))


def _bias_field(rng, shape, strength):
    """A smooth multiplicative field exp(strength * low-order polynomial) over the normalised grid."""
    nz, ny, nx = shape
    z = np.linspace(-1, 1, nz, dtype=np.float32)[:, None, None]
    y = np.linspace(-1, 1, ny, dtype=np.float32)[None, :, None]
    x = np.linspace(-1, 1, nx, dtype=np.float32)[None, None, :]
    c = rng.normal(0, 1, 6)
    field = c[0] * x + c[1] * y + 0.5 * c[2] * z + 0.5 * c[3] * x * y + 0.5 * c[4] * x**2 + 0.5 * c[5] * y**2
    return np.exp(strength * field / 2).astype(np.float32)


def _rician(rng, image, sigma):
    """Magnitude image with Rician noise of standard deviation ``sigma`` in each channel."""
    real = image + rng.normal(0, sigma, image.shape).astype(np.float32)
    imag = rng.normal(0, sigma, image.shape).astype(np.float32)
    return np.sqrt(real**2 + imag**2)


def _write_oriented(path: Path, canonical: np.ndarray, spacing_mm, center: Center) -> None:
    """Write a canonical ``(z, y, x)`` array in the center's voxel orientation with a matching affine."""
    lps = np.transpose(canonical, (2, 1, 0))
    sz, sy, sx = spacing_mm
    affine = np.diag([-sx, -sy, sz, 1.0])  # LPS voxel axes in RAS world coordinates
    affine[:3, 3] = -affine[:3, :3] @ ((np.asarray(lps.shape) - 1) / 2)  # centre the volume on the origin
    target = ornt.axcodes2ornt(center.axcodes)
    transform = ornt.ornt_transform(CANONICAL_AXCODES_ORNT, target)
    data = ornt.apply_orientation(lps, transform)
    affine = affine @ ornt.inv_ornt_aff(transform, lps.shape)
    if center.oblique_deg:
        angle = np.deg2rad(center.oblique_deg)
        rotation = np.eye(4)
        rotation[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
        affine = rotation @ affine
    image = nib.Nifti1Image(np.ascontiguousarray(data), affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm", "sec")
    save_nifti(image, path)
