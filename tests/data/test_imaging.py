"""Decoding and conversion rules in auditor.imaging."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import tifffile
from PIL import Image
from pydicom.data import get_testdata_file

from auditor import imaging
from auditor.errors import InputError


def test_uint8_png_is_divided_by_255(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    Image.fromarray(np.array([[0, 51], [102, 255]], dtype=np.uint8)).save(path)
    out = imaging.read_image(path, "a.png")
    assert out.shape == (2, 2, 1) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, :, 0], [[0, 0.2], [0.4, 1.0]], atol=1e-6)


def test_16bit_png_is_divided_by_65535(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    Image.fromarray(np.array([[0, 65535], [13107, 32768]], dtype=np.uint16)).save(path)
    out = imaging.read_image(path, "a.png")[:, :, 0]
    np.testing.assert_allclose(out, [[0, 1], [0.2, 32768 / 65535]], atol=1e-6)


def test_float_tiff_in_range_is_kept_and_out_of_range_is_min_max(tmp_path: Path) -> None:
    inside = np.array([[0.25, 0.5], [0.75, 1.0]], dtype=np.float32)
    tifffile.imwrite(tmp_path / "in.tif", inside)
    np.testing.assert_allclose(imaging.read_image(tmp_path / "in.tif", "in.tif")[:, :, 0], inside)
    tifffile.imwrite(tmp_path / "out.tiff", np.array([[-10.0, 0.0], [10.0, 30.0]], dtype=np.float32))
    np.testing.assert_allclose(imaging.read_image(tmp_path / "out.tiff", "out.tiff")[:, :, 0], [[0, 0.25], [0.5, 1]])


def test_16bit_colour_tiff_keeps_its_precision(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "c.tif", np.full((3, 4, 3), 257, dtype=np.uint16), photometric="rgb")
    out = imaging.read_image(tmp_path / "c.tif", "c.tif")
    assert out.shape == (3, 4, 3)
    np.testing.assert_allclose(out, 257 / 65535, rtol=1e-6)


def test_luminance_and_grey_replication() -> None:
    rgb = np.zeros((1, 1, 3), dtype=np.float32)
    rgb[0, 0] = [1.0, 0.5, 0.0]
    assert imaging.to_channels(rgb, 1)[0, 0, 0] == pytest.approx(0.299 + 0.587 * 0.5)
    grey = np.full((2, 2, 1), 0.3, dtype=np.float32)
    assert imaging.to_channels(grey, 3).shape == (2, 2, 3)
    rgba = np.ones((1, 1, 4), dtype=np.float32)
    assert imaging.to_channels(rgba, 3).shape == (1, 1, 3)


def test_resize_is_antialiased_bilinear_and_stays_in_unit_range() -> None:
    image = np.zeros((4, 4, 1), dtype=np.float32)
    image[:, 2:] = 1.0
    out = imaging.resize_image(image, (2, 2))
    assert out.shape == (2, 2, 1)
    # Shrinking 2x widens the triangle filter to 4 source pixels (weights 0, .25, .75, .75):
    # an edge bleeds 1/7 across, where plain bilinear sampling would alias to 0 and 1.
    np.testing.assert_allclose(out[:, :, 0], [[1 / 7, 6 / 7], [1 / 7, 6 / 7]], atol=1e-6)
    up = imaging.resize_image(image, (4, 8))
    assert 0.0 < up[0, 3, 0] < 1.0 and up.min() >= 0 and up.max() <= 1


def test_resize_labels_adds_no_new_values() -> None:
    labels = np.array([[0, 2], [1, 2]], dtype=np.int64)
    out = imaging.resize_labels(labels, (5, 7))
    assert out.shape == (5, 7) and set(np.unique(out)) == {0, 1, 2}


def test_truncated_image_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(InputError, match=r"image 'class/cut.png' is truncated or corrupt"):
        imaging.read_image(path, "class/cut.png")


def test_truncated_image_is_refused_even_when_pil_is_told_to_load_them(tmp_path: Path, monkeypatch) -> None:
    """WeasyPrint sets ``ImageFile.LOAD_TRUNCATED_IMAGES`` when imported (by the PDF reporter,
    before or after data is read in one process): a cut-off scan must still be refused."""
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    path = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(InputError, match=r"image 'cut.png' is truncated or corrupt"):
        imaging.read_image(path, "cut.png")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the global is restored


def test_zero_byte_and_non_image_files(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match=r"'empty.png' is an empty \(zero-byte\) file"):
        imaging.read_image(tmp_path / "empty.png", "empty.png")
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(InputError, match=r"'text.jpg' is not a readable image"):
        imaging.read_image(tmp_path / "text.jpg", "text.jpg")


def test_decompression_bomb_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((40, 40), dtype=np.uint8)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1600 pixels: the warning band
    with pytest.raises(InputError, match=r"image 'big.png' is too large"):
        imaging.read_image(path, "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # over twice the limit: PIL's error
    with pytest.raises(InputError, match="too large"):
        imaging.read_image(path, "big.png")


def _ct_copy(tmp_path: Path, name: str = "ct.dcm") -> Path:
    target = tmp_path / name
    shutil.copy(get_testdata_file("CT_small.dcm"), target)
    return target


def test_dicom_is_min_max_scaled(tmp_path: Path) -> None:
    path = _ct_copy(tmp_path)
    out = imaging.read_image(path, "ct.dcm")
    raw = pydicom.dcmread(path).pixel_array.astype(np.float64)
    assert out.shape == (128, 128, 1) and out.dtype == np.float32
    assert out.min() == 0.0 and out.max() == 1.0
    np.testing.assert_allclose(out[:, :, 0], (raw - raw.min()) / (raw.max() - raw.min()), atol=1e-6)


def test_dicom_monochrome1_is_inverted(tmp_path: Path) -> None:
    normal = imaging.read_image(_ct_copy(tmp_path), "ct.dcm")
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.RescaleSlope = 2  # a positive rescale cannot change the min-max result
    ds.save_as(tmp_path / "inv.dcm")
    inverted = imaging.read_image(tmp_path / "inv.dcm", "inv.dcm")
    np.testing.assert_allclose(inverted, 1.0 - normal, atol=1e-6)


def test_corrupt_dicom_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "bad.dcm").write_bytes(b"\x00" * 50)
    with pytest.raises(InputError, match=r"DICOM file 'bad.dcm' cannot be read"):
        imaging.read_image(tmp_path / "bad.dcm", "bad.dcm")


def test_mask_values_binary_and_mapped() -> None:
    raw = np.array([[0, 255], [128, 0]], dtype=np.uint8)
    np.testing.assert_array_equal(imaging.mask_to_classes(raw, "m.png", 2, None), [[0, 1], [1, 0]])
    np.testing.assert_array_equal(imaging.mask_to_classes(raw, "m.png", 3, [0, 128, 255]), [[0, 2], [1, 0]])
    with pytest.raises(InputError, match=r"mask 'm.png' has values \[128.0\] that are not in mask_values"):
        imaging.mask_to_classes(raw, "m.png", 3, {0: 0, 255: 1})
    with pytest.raises(InputError, match=r"mask 'm.png' has values 0..255 but there are 3 classes"):
        imaging.mask_to_classes(raw, "m.png", 3, None)


def test_stack_same_size_names_the_odd_file() -> None:
    a, b = np.zeros((1, 4, 5)), np.zeros((1, 4, 6))
    with pytest.raises(InputError, match=r"image 'b.png' is 4x6 but 'a.png' is 4x5"):
        imaging.stack_same_size([a, b], ["a.png", "b.png"])
