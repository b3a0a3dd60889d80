"""DICOM decoding: the image a viewer shows, as float32 (H, W, C) in [0, 1].

Greyscale (MONOCHROME1/2) follows the DICOM display pipeline (PS3.3 C.11, PS3.4 N.2):

1. **Modality LUT**: stored values -> modality units (Hounsfield units for CT) with Rescale
   Slope / Rescale Intercept, or the Modality LUT Sequence (pydicom's ``apply_modality_lut``).
2. **VOI LUT**: when the file has a Window Center / Window Width or a VOI LUT Sequence,
   pydicom's ``apply_voi_lut`` (``index=0``, ``prefer_lut=True``) applies it, so a file with
   several windows is shown through its **first**, and a VOI LUT Sequence wins over a
   window, as pydicom decides. Its output range maps to [0, 1]: the window's bottom edge
   (and everything below) is 0, its top edge (and above) is 1; a VOI LUT's output maps by
   the bit depth its LUT Descriptor declares (modality values rounded to whole numbers to
   index it). Without either, the image's own range of
   modality values is min-max scaled to [0, 1] (there is no window to honour).
3. **Presentation**: MONOCHROME1 (white stored as the lowest value) is inverted *after*
   windowing, as a viewer's presentation LUT does.

PALETTE COLOR images go through their palette to RGB (scaled by the palette's bit depth),
YBR colour arrives as RGB, and interpretations medaudit cannot convert (HSV, ARGB, CMYK,
YBR_PARTIAL_*) are refused rather than audited as something they are not.

Multi-frame files (Number of Frames > 1) are refused (exit 3): one file is one labelled
sample, and a label cannot say which of its frames it describes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from auditor.errors import InputError
from auditor.pixels import as_hwc, check_pixel_count, scale_to_unit

DICOM_SUFFIXES: tuple[str, ...] = (".dcm", ".dicom")

# Photometric interpretations (DICOM PS3.3 C.7.6.3.1.2) that medaudit turns into the
# grey levels or RGB colours a viewer shows. pydicom 3's pixel_array already converts
# YBR_FULL(_422) to RGB, and JPEG 2000 decoders undo YBR_ICT/YBR_RCT themselves.
MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
PALETTE_COLOR = "PALETTE COLOR"
YBR_CONVERTED = ("YBR_FULL", "YBR_FULL_422")
RGB_LIKE = ("RGB", "YBR_ICT", "YBR_RCT") + YBR_CONVERTED
PHOTOMETRIC = MONOCHROME + (PALETTE_COLOR,) + RGB_LIKE


def _photometric(ds: Any, name: str) -> str:
    """The file's photometric interpretation, refused when medaudit cannot show it as a
    viewer would (HSV, ARGB, CMYK and the YBR_PARTIAL forms: retired or video-only)."""
    import pydicom

    photometric = str(getattr(ds, "PhotometricInterpretation", "") or "").strip().upper()
    if not photometric:  # absent in some old files: the samples per pixel say grey or RGB
        return ""
    if photometric not in PHOTOMETRIC:
        raise InputError(
            f"DICOM file '{name}' uses photometric interpretation {photometric}, which medaudit does not "
            f"convert ({', '.join(PHOTOMETRIC)}); export it as greyscale or RGB"
        )
    if photometric in YBR_CONVERTED and int(pydicom.__version__.split(".")[0]) < 3:
        raise InputError(
            f"DICOM file '{name}' is {photometric} colour, which needs pydicom 3 or newer to convert to RGB; "
            "upgrade pydicom or export it as RGB"
        )
    return photometric


def _apply_palette(ds: Any, indices: np.ndarray, name: str) -> np.ndarray:
    """PALETTE COLOR: the stored values are indices into the file's red/green/blue lookup
    tables; without them the image is a map of indices, not what a viewer shows."""
    try:
        from pydicom.pixels import apply_color_lut
    except ImportError:  # pydicom 2
        from pydicom.pixel_data_handlers.util import apply_color_lut
    try:
        rgb = np.asarray(apply_color_lut(indices, ds))
    except Exception as exc:  # noqa: BLE001 - missing or malformed tables raise several types
        raise InputError(
            f"DICOM file '{name}' is PALETTE COLOR but its colour palette cannot be applied ({exc}); "
            "export it as RGB"
        ) from None
    return as_hwc(rgb, name)


def _lut_functions() -> tuple[Any, Any]:
    try:
        from pydicom.pixels import apply_modality_lut, apply_voi_lut
    except ImportError:  # pydicom 2
        from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi_lut
    return apply_modality_lut, apply_voi_lut


def _has_voi_lut_sequence(ds: Any) -> bool:
    """pydicom's own test (``apply_voi_lut``): a first item with a descriptor and data."""
    items = ds.get("VOILUTSequence")
    return bool(items) and None not in (items[0].get("LUTDescriptor"), items[0].get("LUTData"))


def _has_window(ds: Any) -> bool:
    return None not in (ds.get("WindowCenter"), ds.get("WindowWidth"))


def viewer_grey(ds: Any, stored: np.ndarray, photometric: str, name: str) -> np.ndarray:
    """Greyscale stored values -> float (H, W) in [0, 1] as a viewer shows them (the rule
    in the module docstring: modality LUT, first VOI window or VOI LUT, MONOCHROME1 inverted)."""
    apply_modality_lut, apply_voi_lut = _lut_functions()
    try:
        values = np.asarray(apply_modality_lut(stored, ds), dtype=np.float64)
        windowed = photometric in MONOCHROME and (_has_voi_lut_sequence(ds) or _has_window(ds))
        if windowed and _has_voi_lut_sequence(ds):
            # a lookup table is indexed by whole modality values: a fractional rescale rounds
            shown = np.asarray(apply_voi_lut(np.rint(values).astype(np.int64), ds, index=0), dtype=np.float64)
            low, high = 0.0, float(2 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1)
        elif windowed:
            shown = np.asarray(apply_voi_lut(values, ds, index=0), dtype=np.float64)
            # the window's output range: what it gives below and above its edges
            low, high = (float(v) for v in apply_voi_lut(np.array([-np.inf, np.inf]), ds, index=0))
    except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        raise InputError(
            f"DICOM file '{name}' has a rescale, window or lookup table that cannot be applied ({exc}); "
            "fix its Rescale / Window / LUT attributes or export it as PNG"
        ) from None
    if windowed and high > low:
        unit = np.clip((shown - low) / (high - low), 0.0, 1.0).astype(np.float32)
    else:  # no window to honour: the image's own range of modality values
        unit = scale_to_unit(values, name)
    return 1.0 - unit if photometric == "MONOCHROME1" else unit


def _open(path: Path, name: str) -> Any:
    """The parsed file, its size checked against the pixel limit and its frames counted."""
    import pydicom

    if path.stat().st_size == 0:
        raise InputError(f"DICOM file '{name}' is an empty (zero-byte) file; replace or remove it")
    try:
        ds = pydicom.dcmread(path, force=path.suffix.lower() in DICOM_SUFFIXES)
        rows, cols = int(ds.Rows), int(ds.Columns)
    except Exception as exc:  # noqa: BLE001 - pydicom's errors are not one hierarchy
        raise InputError(f"DICOM file '{name}' cannot be read ({exc}); replace or remove it") from None
    check_pixel_count(name, rows * cols)
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        raise InputError(
            f"DICOM file '{name}' has {frames} frames; multi-frame DICOM is refused because one file is one "
            f"labelled sample and its label cannot say which frame it describes: export each frame to audit "
            f"as its own single-frame file"
        )
    return ds


def _stored(ds: Any, name: str) -> np.ndarray:
    try:
        return np.asarray(ds.pixel_array)
    except Exception as exc:  # noqa: BLE001 - missing codec, bad pixel data, ...
        raise InputError(
            f"DICOM file '{name}' has pixel data that cannot be decoded ({exc}); "
            f"install the codec it needs (e.g. pylibjpeg) or convert it to PNG"
        ) from None


def read_dicom(path: Path, name: str) -> np.ndarray:
    """DICOM -> float32 (H, W, C) in [0, 1], as a viewer shows it (module docstring)."""
    ds = _open(path, name)
    photometric = _photometric(ds, name)
    pixels = _stored(ds, name)
    if photometric == PALETTE_COLOR:
        return scale_to_unit(_apply_palette(ds, pixels, name), name)
    if int(getattr(ds, "SamplesPerPixel", 1) or 1) == 1:
        return as_hwc(viewer_grey(ds, pixels, photometric, name), name).astype(np.float32)
    return scale_to_unit(as_hwc(pixels, name), name)


def read_dicom_stored(path: Path, name: str) -> np.ndarray:
    """The stored values, untransformed (label masks and ROIs keep their class values)."""
    return _stored(_open(path, name), name)
