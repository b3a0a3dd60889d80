"""DICOM greyscale as a viewer shows it (issue 14, item 13): rescale slope/intercept, then
the first Window Center/Width (or the VOI LUT), then MONOCHROME1 inverted; multi-frame
files refused with the reason. Expected pixels are computed here from the DICOM formula
(PS3.3 C.11.2.1.2.1), not by the code under test."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from auditor import imaging
from auditor.errors import InputError
from tests.conftest import require_shared_data

# Stored values chosen so that slope 2, intercept -1000 gives these modality values (HU).
STORED = np.array([[0, 420, 500], [520, 540, 620], [1000, 2000, 4095]], dtype=np.uint16)


def _ct(path: Path, stored: np.ndarray = STORED, frames: int = 1, **attributes) -> Path:
    """A 16-bit unsigned MONOCHROME2 CT slice with the given extra attributes."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.Rows, ds.Columns = stored.shape[-2:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if frames > 1:
        ds.NumberOfFrames = frames
    for key, value in attributes.items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(stored, dtype="<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def _linear_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 (VOI LUT Function LINEAR), output range [0, 1]."""
    c, w = center - 0.5, width - 1.0
    out = (values - c) / w + 0.5
    return np.where(values <= c - w / 2, 0.0, np.where(values > c + w / 2, 1.0, out))


def test_rescale_then_window_is_what_the_model_sees(tmp_path: Path) -> None:
    path = _ct(tmp_path / "ct.dcm", RescaleSlope=2, RescaleIntercept=-1000, WindowCenter=40, WindowWidth=400)
    hu = STORED.astype(np.float64) * 2 - 1000
    pixels = imaging.read_image(path, "ct.dcm")
    assert pixels.shape == (3, 3, 1) and pixels.dtype == np.float32
    np.testing.assert_allclose(pixels[:, :, 0], _linear_window(hu, 40, 400), atol=1e-6)
    # the soft-tissue window: air (-1000 HU) is black, bone (> 240 HU) white, water in between
    assert pixels[0, 0, 0] == 0.0 and pixels[2, 2, 0] == 1.0 and 0.4 < pixels[0, 2, 0] < 0.45


def test_first_of_several_windows_is_used(tmp_path: Path) -> None:
    path = _ct(tmp_path / "ct.dcm", RescaleSlope=2, RescaleIntercept=-1000,
               WindowCenter=[40, 300], WindowWidth=[400, 1500])
    hu = STORED.astype(np.float64) * 2 - 1000
    np.testing.assert_allclose(imaging.read_image(path, "ct.dcm")[:, :, 0], _linear_window(hu, 40, 400), atol=1e-6)


def test_monochrome1_is_inverted_after_windowing(tmp_path: Path) -> None:
    path = _ct(tmp_path / "ct.dcm", RescaleSlope=2, RescaleIntercept=-1000, WindowCenter=40, WindowWidth=400)
    ds = pydicom.dcmread(path)
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "inv.dcm")
    hu = STORED.astype(np.float64) * 2 - 1000
    np.testing.assert_allclose(imaging.read_image(tmp_path / "inv.dcm", "inv.dcm")[:, :, 0],
                               1.0 - _linear_window(hu, 40, 400), atol=1e-6)


def test_voi_lut_sequence_maps_through_its_table(tmp_path: Path) -> None:
    item = Dataset()
    item.LUTDescriptor = [2048, 0, 16]  # 2048 entries from stored value 0, 16-bit output
    item.add_new(0x00283006, "US", [v * 32 for v in range(2048)])  # LUT Data: a ramp; stored >= 2047 saturate
    path = _ct(tmp_path / "lut.dcm", VOILUTSequence=Sequence([item]))
    expected = np.minimum(STORED, 2047) * 32 / 65535.0
    np.testing.assert_allclose(imaging.read_image(path, "lut.dcm")[:, :, 0], expected, atol=1e-6)


def test_without_a_window_the_modality_values_are_min_max_scaled(tmp_path: Path) -> None:
    path = _ct(tmp_path / "ct.dcm", RescaleSlope=2, RescaleIntercept=-1000)
    stored = STORED.astype(np.float64)
    np.testing.assert_allclose(imaging.read_image(path, "ct.dcm")[:, :, 0],
                               (stored - stored.min()) / (stored.max() - stored.min()), atol=1e-6)


def test_unusable_window_is_a_one_line_input_error(tmp_path: Path) -> None:
    path = _ct(tmp_path / "bad.dcm", WindowCenter=40, WindowWidth=0)  # LINEAR needs a width >= 1
    with pytest.raises(InputError, match=r"DICOM file 'bad.dcm' has a rescale, window or lookup table that cannot"):
        imaging.read_image(path, "bad.dcm")


def test_multi_frame_is_refused_with_the_reason(tmp_path: Path) -> None:
    path = _ct(tmp_path / "cine.dcm", np.stack([STORED, STORED]), frames=2)
    for read in (imaging.read_image, imaging.read_pixels):  # images, and masks or ROIs
        with pytest.raises(InputError, match=r"'cine.dcm' has 2 frames; multi-frame DICOM is refused because one "
                                             r"file is one labelled sample"):
            read(path, "cine.dcm")


@pytest.mark.realdata
@pytest.mark.parametrize("window", [None, (40.0, 400.0), ((-600.0, 40.0), (1500.0, 400.0))])
def test_real_ct_matches_pydicoms_display_pipeline(tmp_path: Path, window) -> None:
    """The shared CT slice (int16, intercept -1024): as stored, and with a soft-tissue or a
    lung-then-soft-tissue window set on it, against pydicom's own modality and VOI LUTs."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    source = require_shared_data("singles", "CT_small.dcm")
    path = tmp_path / "ct.dcm"
    shutil.copy(source, path)
    ds = pydicom.dcmread(path)
    assert float(ds.RescaleIntercept) == -1024.0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = (list(v) if isinstance(v, tuple) else v for v in window)
        ds.save_as(path)
    pixels = imaging.read_image(path, "ct.dcm")[:, :, 0]
    hu = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)
    if window is None:
        expected = (hu - hu.min()) / (hu.max() - hu.min())
    else:
        shown = apply_voi_lut(hu, ds, index=0)
        # int16 with 16 bits stored: pydicom's window output spans -32768..32767, rescaled
        low, high = np.array([-32768.0, 32767.0]) - 1024.0
        expected = (shown - low) / (high - low)
        centre, width = (window[0][0], window[1][0]) if isinstance(window[0], tuple) else window
        np.testing.assert_allclose(expected, _linear_window(hu, centre, width), atol=1e-6)
    np.testing.assert_allclose(pixels, expected, atol=1e-5)
