"""DICOM photometric interpretations (issue 12, item 12c): what is audited is what a viewer
shows. PALETTE COLOR goes through its palette, YBR colour arrives as RGB, and
interpretations medaudit cannot convert are refused with exit 3. (MONOCHROME1's inversion
is tested in test_imaging.py.)
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from auditor import imaging
from auditor.datasets import open_dataset
from auditor.errors import InputError
from auditor.interfaces import DataOptions
from auditor.registry import Registry


def _palette_dicom(path: Path, indices: np.ndarray, palette: np.ndarray) -> Path:
    """An 8-bit PALETTE COLOR secondary capture with 16-bit red/green/blue tables."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.Rows, ds.Columns = indices.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "PALETTE COLOR"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    for channel, colour in enumerate(("Red", "Green", "Blue")):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [len(palette), 0, 16])
        setattr(ds, f"{colour}PaletteColorLookupTableData", palette[:, channel].astype("<u2").tobytes())
    ds.PixelData = indices.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_palette_color_is_audited_through_its_palette(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    palette = rng.integers(0, 65536, (256, 3), dtype=np.uint16)
    # The palette runs against the indices: a bright index can be a dark colour, so an
    # audit of the indices (the old behaviour) would show a different image.
    palette[:, 0] = np.linspace(65535, 0, 256).astype(np.uint16)
    indices = rng.integers(0, 256, (12, 10), dtype=np.uint8)
    path = _palette_dicom(tmp_path / "palette.dcm", indices, palette)
    pixels = imaging.read_image(path, "palette.dcm")
    assert pixels.shape == (12, 10, 3)
    np.testing.assert_allclose(pixels, palette[indices] / 65535.0, atol=1e-6)


def test_pydicoms_own_palette_example(tmp_path: Path) -> None:
    from pydicom.pixels import apply_color_lut

    source = get_testdata_file("examples_palette.dcm")
    ds = pydicom.dcmread(source)
    expected = apply_color_lut(ds.pixel_array, ds) / 65535.0
    pixels = imaging.read_image(Path(source), "examples_palette.dcm")
    np.testing.assert_allclose(pixels, expected, atol=1e-6)


def test_a_palette_that_cannot_be_applied_is_refused(tmp_path: Path) -> None:
    path = _palette_dicom(tmp_path / "p.dcm", np.zeros((4, 4), np.uint8), np.zeros((256, 3), np.uint16))
    ds = pydicom.dcmread(path)
    del ds.GreenPaletteColorLookupTableData
    ds.save_as(path)
    with pytest.raises(InputError, match=r"DICOM file 'p\.dcm' is PALETTE COLOR but its colour palette cannot be applied"):
        imaging.read_image(path, "p.dcm")


def test_ybr_colour_arrives_as_rgb(tmp_path: Path) -> None:
    from pydicom.pixels import convert_color_space

    source = get_testdata_file("SC_ybr_full_422_uncompressed.dcm")
    ds = pydicom.dcmread(source)
    stored = np.frombuffer(ds.PixelData, np.uint8)
    # The file stores YBR_FULL_422 (two luma samples share one chroma pair); upsampled, it
    # is this YCbCr image, and its RGB is what must be audited.
    pairs = stored.reshape(ds.Rows, ds.Columns // 2, 4)
    ybr = np.empty((ds.Rows, ds.Columns, 3), np.uint8)
    ybr[:, 0::2, 0], ybr[:, 1::2, 0] = pairs[..., 0], pairs[..., 1]
    ybr[..., 1] = np.repeat(pairs[..., 2], 2, axis=1)
    ybr[..., 2] = np.repeat(pairs[..., 3], 2, axis=1)
    pixels = imaging.read_image(Path(source), "ybr.dcm")
    np.testing.assert_allclose(pixels * 255, convert_color_space(ybr, "YBR_FULL", "RGB"), atol=1.01)
    assert pixels[0, 0] == pytest.approx([254 / 255, 0, 0], abs=2 / 255)  # the test card's red corner


@pytest.mark.parametrize("photometric", ["HSV", "ARGB", "CMYK", "YBR_PARTIAL_420", "YBR_PARTIAL_422", "NONSENSE"])
def test_interpretations_medaudit_cannot_convert_are_refused(
    registry: Registry, tmp_path: Path, make_image, photometric: str
) -> None:
    root = tmp_path / "data"
    make_image(root / "benign" / "a.png")
    (root / "melanoma").mkdir(parents=True)
    shutil.copy(get_testdata_file("CT_small.dcm"), root / "melanoma" / "scan.dcm")
    ds = pydicom.dcmread(root / "melanoma" / "scan.dcm")
    ds.PhotometricInterpretation = photometric
    ds.save_as(root / "melanoma" / "scan.dcm")
    dataset = open_dataset(registry, root, DataOptions(input_size=(8, 8)))
    with pytest.raises(InputError, match=rf"DICOM file 'melanoma/scan\.dcm' uses photometric interpretation {photometric}, "):
        dataset.load([1])
