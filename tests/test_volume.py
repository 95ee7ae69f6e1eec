"""Reading volumes into canonical (z, y, x) order and writing masks back so they overlay the input exactly."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from zeroshot.errors import VolumeError
from zeroshot.volume import read_header, read_label, read_volume, volume_from_array, write_mask


def _affine(axcodes, zooms, oblique_deg=0.0, origin=(10.0, -20.0, 30.0)):
    """An affine whose voxel axes point along ``axcodes`` with voxel sizes ``zooms`` (file axis order)."""
    affine = np.eye(4)
    for axis, code in enumerate(axcodes):
        world = "RAS".index({"L": "R", "P": "A", "I": "S"}.get(code, code))
        sign = -1.0 if code in "LPI" else 1.0
        affine[:3, axis] = 0
        affine[world, axis] = sign * zooms[axis]
    if oblique_deg:
        a = np.deg2rad(oblique_deg)
        rot = np.eye(4)
        rot[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
        rot2 = np.eye(4)
        rot2[:2, :2] = [[np.cos(a / 2), -np.sin(a / 2)], [np.sin(a / 2), np.cos(a / 2)]]
        affine = rot2 @ rot @ affine
    affine[:3, 3] = origin
    return affine


def _world(path):
    """Map each voxel of a file to (world xyz rounded to 0.01 mm) -> value."""
    image = nib.load(path)
    data = np.asanyarray(image.dataobj)
    ijk = np.indices(data.shape).reshape(3, -1)
    xyz = nib.affines.apply_affine(image.affine, ijk.T)
    return {tuple(np.round(p, 2)): v for p, v in zip(xyz, data.reshape(-1), strict=True)}


ORIENTATIONS = [
    (("R", "A", "S"), (0.8, 0.9, 4.0), 0.0),
    (("L", "P", "S"), (1.5, 1.2, 5.0), 0.0),
    (("P", "S", "R"), (1.1, 6.0, 1.4), 0.0),
    (("L", "I", "A"), (0.7, 3.0, 1.3), 12.0),  # oblique, non-RAS, anisotropic
    (("S", "R", "P"), (5.0, 1.0, 1.7), 7.0),
]


@pytest.mark.parametrize(("axcodes", "zooms", "oblique"), ORIENTATIONS)
def test_mask_written_back_overlays_input_voxel_for_voxel(tmp_path, axcodes, zooms, oblique):
    rng = np.random.default_rng(0)
    data = rng.normal(100, 10, (9, 7, 5)).astype(np.float32)
    affine = _affine(axcodes, zooms, oblique)
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "image.nii.gz")
    volume = read_volume(tmp_path / "image.nii.gz")

    # z is the superior axis, y posterior, x patient-left: read off the canonical affine.
    canonical = volume.geometry.canonical_affine
    assert nib.aff2axcodes(canonical) == ("L", "P", "S") or oblique
    assert sorted(volume.spacing_mm) == pytest.approx(sorted(zooms))
    z_axis = next(i for i, c in enumerate(axcodes) if c in "SI")
    assert volume.spacing_mm[0] == pytest.approx(zooms[z_axis])

    # A mask marking voxels by their intensity rank survives the round trip voxel for voxel in world space.
    mask = volume.array > np.median(volume.array)
    write_mask(tmp_path / "mask.nii.gz", mask, volume)
    written = nib.load(tmp_path / "mask.nii.gz")
    assert written.shape == data.shape
    np.testing.assert_allclose(written.affine, affine, atol=1e-6)
    expected = (data > np.median(data)).astype(np.uint8)
    np.testing.assert_array_equal(np.asanyarray(written.dataobj), expected)
    image_world, mask_world = _world(tmp_path / "image.nii.gz"), _world(tmp_path / "mask.nii.gz")
    assert image_world.keys() == mask_world.keys()
    median = np.median(data)
    assert all(mask_world[p] == (image_world[p] > median) for p in image_world)
    # And reading it back as a label gives the same canonical mask.
    np.testing.assert_array_equal(read_label(tmp_path / "mask.nii.gz", volume, label=1), mask)


def test_canonical_axes_are_lps(tmp_path):
    data = np.zeros((4, 5, 6), dtype=np.int16)
    data[3, 0, 0] = 1  # the last voxel along R (i), first along A (j) and S (k)
    nib.save(nib.Nifti1Image(data, _affine(("R", "A", "S"), (1, 1, 1))), tmp_path / "ras.nii")
    volume = read_volume(tmp_path / "ras.nii")
    assert volume.shape == (6, 5, 4)
    z, y, x = np.argwhere(volume.array == 1)[0]
    # Most rightward voxel -> x = 0 (x grows to the left); most anterior -> y = last; most inferior -> z = 0.
    assert (z, y, x) == (0, 4, 0)


def test_read_header_matches_read_volume(tmp_path):
    nib.save(
        nib.Nifti1Image(np.ones((5, 6, 7), np.float32), _affine(("P", "S", "R"), (1.1, 6.0, 1.4))), tmp_path / "a.nii"
    )
    volume = read_volume(tmp_path / "a.nii")
    assert read_header(tmp_path / "a.nii") == (volume.shape, pytest.approx(volume.spacing_mm))


def test_4d_singleton_is_read_as_3d(tmp_path):
    nib.save(nib.Nifti1Image(np.ones((4, 5, 6, 1), np.float32), np.eye(4)), tmp_path / "a.nii.gz")
    assert read_volume(tmp_path / "a.nii.gz").shape == (6, 5, 4)


@pytest.mark.parametrize(
    ("data", "affine", "match"),
    [
        (np.ones((4, 5), np.float32), np.eye(4), "expected a 3D volume, found 2D"),
        (np.ones((4, 5, 6, 2), np.float32), np.eye(4), "expected a 3D volume, found 4D"),
        (np.array([[[np.nan, 1.0]]], np.float32).repeat(3, 0), np.eye(4), "NaN or Inf"),
    ],
)
def test_bad_images_are_refused_with_the_file_named(tmp_path, data, affine, match):
    path = tmp_path / "bad.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), path)
    with pytest.raises(VolumeError, match=match) as info:
        read_volume(path)
    assert str(path) in str(info.value)


def test_zero_spacing_refused(tmp_path):
    image = nib.Nifti1Image(np.ones((3, 3, 3), np.float32), None)
    image.header.set_zooms((1.0, 0.0, 1.0))
    image.set_qform(None, code=0)
    image.set_sform(None, code=0)
    nib.save(image, tmp_path / "flat.nii")
    with pytest.raises(VolumeError, match="flat.nii: voxel spacing must be positive"):
        read_volume(tmp_path / "flat.nii")


def test_inf_intensities_refused(tmp_path):
    data = np.ones((3, 3, 3), np.float32)
    data[1, 1, 1] = np.inf
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "inf.nii")
    with pytest.raises(VolumeError, match="1 voxel"):
        read_volume(tmp_path / "inf.nii")


def test_missing_and_truncated_files(tmp_path):
    with pytest.raises(VolumeError, match="file not found"):
        read_volume(tmp_path / "nope.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((20, 20, 20), np.float32), np.eye(4)), tmp_path / "full.nii.gz")
    blob = (tmp_path / "full.nii.gz").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(VolumeError, match="cannot read as NIfTI"):
        read_volume(tmp_path / "cut.nii.gz")
    raw = gzip.decompress(blob)
    (tmp_path / "cut.nii").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(VolumeError, match="cut.nii: cannot read"):
        read_volume(tmp_path / "cut.nii")
    (tmp_path / "text.nii").write_text("not a nifti")
    with pytest.raises(VolumeError, match="cannot read as NIfTI"):
        read_volume(tmp_path / "text.nii")


def _image_and_label(tmp_path, label_data, label_affine=None):
    affine = _affine(("L", "P", "S"), (1.5, 1.5, 4.0))
    nib.save(nib.Nifti1Image(np.ones((6, 6, 4), np.float32), affine), tmp_path / "img.nii.gz")
    nib.save(nib.Nifti1Image(label_data, affine if label_affine is None else label_affine), tmp_path / "lab.nii.gz")
    return read_volume(tmp_path / "img.nii.gz"), tmp_path / "lab.nii.gz"


def test_label_value_selects_the_mask(tmp_path):
    label = np.zeros((6, 6, 4), np.uint8)
    label[1, 1, 1] = 7
    label[2, 2, 2] = 1
    volume, path = _image_and_label(tmp_path, label)
    assert read_label(path, volume, label=7).sum() == 1
    assert read_label(path, volume, label=1).sum() == 1
    with pytest.raises(VolumeError, match=r"label value 3 is absent; the file holds values 0, 1, 7"):
        read_label(path, volume, label=3)


def test_label_grid_mismatches_are_refused(tmp_path):
    volume, path = _image_and_label(tmp_path, np.ones((6, 6, 5), np.uint8))
    with pytest.raises(VolumeError, match=r"the label is not on its image's voxel grid .*: shape \(5, 6, 6\)"):
        read_label(path, volume, label=1)
    shifted = _affine(("L", "P", "S"), (1.5, 1.5, 4.0), origin=(12.0, -20.0, 30.0))
    volume, path = _image_and_label(tmp_path, np.ones((6, 6, 4), np.uint8), shifted)
    with pytest.raises(VolumeError, match="the grid is shifted by "):
        read_label(path, volume, label=1)
    # A difference far below the tolerance (header rounding) is accepted.
    nearly = _affine(("L", "P", "S"), (1.5, 1.5, 4.0), origin=(10.00001, -20.0, 30.0))
    volume, path = _image_and_label(tmp_path, np.ones((6, 6, 4), np.uint8), nearly)
    assert read_label(path, volume, label=1).all()


@pytest.mark.parametrize("axcodes", [("R", "A", "S"), ("P", "S", "R"), ("S", "L", "A")])
def test_a_label_in_another_orientation_of_the_image_grid_is_read_losslessly(tmp_path, axcodes):
    from nibabel import orientations as ornt

    label = np.zeros((6, 6, 4), np.uint8)
    label[1:3, 2:5, 1] = 1
    volume, path = _image_and_label(tmp_path, label)
    expected = read_label(path, volume, label=1)
    image_affine = nib.load(tmp_path / "img.nii.gz").affine
    transform = ornt.ornt_transform(ornt.io_orientation(image_affine), ornt.axcodes2ornt(axcodes))
    stored = ornt.apply_orientation(label, transform)
    nib.save(nib.Nifti1Image(stored, image_affine @ ornt.inv_ornt_aff(transform, label.shape)), path)
    assert nib.aff2axcodes(nib.load(path).affine) == axcodes
    np.testing.assert_array_equal(read_label(path, volume, label=1), expected)


@pytest.mark.parametrize(("qform_code", "sform_code"), [(0, 1), (1, 0), (0, 0), (2, 4)])
def test_written_masks_keep_the_input_header(tmp_path, qform_code, sform_code):
    affine = _affine(("R", "A", "S"), (0.8, 0.9, 4.0))
    image = nib.Nifti1Image(np.ones((5, 6, 7), np.int16), affine)
    image.set_qform(affine, code=qform_code)
    image.set_sform(affine, code=sform_code)
    image.header.set_xyzt_units("mm", "sec")
    image.header["descrip"] = b"scanner X"
    nib.save(image, tmp_path / "image.nii.gz")
    source = nib.load(tmp_path / "image.nii.gz").header
    volume = read_volume(tmp_path / "image.nii.gz")
    written = nib.load(write_mask(tmp_path / "mask.nii.gz", volume.array > 0, volume)).header
    data_fields = {"datatype", "bitpix", "scl_slope", "scl_inter", "vox_offset", "cal_min", "cal_max", "glmax", "glmin"}
    differ = [k for k in source if k not in data_fields and not np.array_equal(source[k], written[k])]
    assert differ == []
    assert (int(written["qform_code"]), int(written["sform_code"])) == (qform_code, sform_code)


def test_write_mask_refuses_wrong_shape_and_arrays_without_geometry(tmp_path):
    nib.save(nib.Nifti1Image(np.ones((4, 5, 6), np.float32), np.eye(4)), tmp_path / "a.nii.gz")
    volume = read_volume(tmp_path / "a.nii.gz")
    with pytest.raises(VolumeError, match="mask shape"):
        write_mask(tmp_path / "m.nii.gz", np.zeros((1, 2, 3), bool), volume)
    with pytest.raises(VolumeError, match="not read from a file"):
        write_mask(tmp_path / "m.nii.gz", np.zeros((2, 2, 2), bool), volume_from_array(np.zeros((2, 2, 2))))


def test_volume_from_array_validates():
    with pytest.raises(VolumeError, match="3D"):
        volume_from_array(np.zeros((2, 2)))
    with pytest.raises(VolumeError, match="spacing must be three positive"):
        volume_from_array(np.zeros((2, 2, 2)), (1.0, 0.0, 1.0))
    volume = volume_from_array(np.ones((2, 3, 4)), (3.0, 1.0, 2.0))
    assert volume.diagonal_mm == pytest.approx(np.sqrt(6**2 + 3**2 + 8**2))
    assert volume.fingerprint() != volume.with_array(np.zeros((2, 3, 4), np.float32)).fingerprint()
