"""Image decoding and conversion shared by every data source.

All pixel data leaves this module as float32 in [0, 1], shaped (H, W, C) for images and
(H, W) for masks, so data sources only decide *which* files to read, never how.

Intensity scaling, by stored type (one rule for every format, so a model sees the same
numbers whichever container the pixels came in):

* 8-bit integers are divided by 255, 16-bit unsigned integers by 65535, booleans map to 0/1;
* floats already in [0, 1] are kept (clipped against rounding noise); any other float
  range, and signed or wider integers (e.g. int16 CT), are min-max scaled per image,
  because there is no agreed full-scale value to divide by;
* DICOM: ``pixel_array`` -> rescale slope/intercept -> per-image min-max to [0, 1]
  (a window over the image's own range) -> inverted for MONOCHROME1. PALETTE COLOR images
  go through their palette to RGB (then scaled by the palette's bit depth), YBR colour
  arrives as RGB, and interpretations medaudit cannot convert (HSV, ARGB, CMYK,
  YBR_PARTIAL_*) are refused rather than audited as something they are not.

PIL's decompression-bomb limit stays on; images over it are an :class:`InputError`.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from auditor.errors import InputError

PIL_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
TIFF_SUFFIXES: tuple[str, ...] = (".tif", ".tiff")
DICOM_SUFFIXES: tuple[str, ...] = (".dcm", ".dicom")
IMAGE_SUFFIXES: tuple[str, ...] = PIL_SUFFIXES + TIFF_SUFFIXES + DICOM_SUFFIXES

# Luminance weights (ITU-R BT.601), the same ones PIL's convert("L") uses.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def is_image_file(path: Path) -> bool:
    """True for a file whose suffix names a format medaudit can decode."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def is_ignorable(path: Path) -> bool:
    """Hidden files and OS clutter that people leave in data folders without meaning to."""
    return path.name.startswith(".") or path.name.lower() in {"thumbs.db", "desktop.ini"}


def _max_pixels() -> int | None:
    # Read at call time so that a caller (or a test) that changes PIL's limit is honoured.
    limit = Image.MAX_IMAGE_PIXELS
    return None if limit is None else int(limit)


def _too_large(name: str, pixels: int | None = None) -> InputError:
    size = f" ({pixels} pixels)" if pixels else ""
    return InputError(
        f"image '{name}' is too large{size} and may be a decompression bomb; "
        f"downsize it or raise PIL.Image.MAX_IMAGE_PIXELS if you trust the file"
    )


def check_pixel_count(name: str, pixels: int) -> None:
    limit = _max_pixels()
    if limit is not None and pixels > limit:
        raise _too_large(name, pixels)


def scale_to_unit(array: np.ndarray, name: str) -> np.ndarray:
    """Map stored pixel values to float32 [0, 1] by the rules in the module docstring."""
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    values = array.astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise InputError(f"image '{name}' contains NaN or infinite pixel values; fix or remove it")
    if values.size == 0:
        raise InputError(f"image '{name}' has no pixels; fix or remove it")
    lo, hi = float(values.min()), float(values.max())
    if np.issubdtype(array.dtype, np.floating) and lo >= 0.0 and hi <= 1.0:
        return np.clip(values, 0.0, 1.0).astype(np.float32)
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.float32)
    return ((values - lo) / (hi - lo)).astype(np.float32)


def as_hwc(array: np.ndarray, name: str) -> np.ndarray:
    """(H, W) -> (H, W, 1); (H, W, C) kept; channels-first small stacks are not guessed."""
    if array.ndim == 2:
        return array[:, :, None]
    if array.ndim == 3 and array.shape[2] in (1, 2, 3, 4):
        return array
    raise InputError(
        f"image '{name}' has shape {tuple(array.shape)}; expected a 2-D greyscale or "
        f"(H, W, 3) colour image (multi-frame and volume files are not supported)"
    )


# ----------------------------------------------------------------------- decoders
def _read_pil(path: Path, name: str, palette_indices: bool = False) -> np.ndarray:
    """Pixels of a PIL-readable file in their own bit depth (the file is closed on return).

    ``palette_indices`` keeps a palette image's indices (label masks store classes that
    way); otherwise palette and odd colour modes become plain RGB(A)."""
    if path.stat().st_size == 0:
        raise InputError(f"image '{name}' is an empty (zero-byte) file; replace or remove it")
    try:
        with warnings.catch_warnings():
            # PIL warns about things like corrupt EXIF; a file it cannot decode raises below,
            # and anything it can decode needs no second line on the user's terminal.
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image, _truncated_images_refused():
                image.load()
                return _pil_pixels(image, palette_indices)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_large(name) from None
    except UnidentifiedImageError:
        raise InputError(f"'{name}' is not a readable image; replace or remove it") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"image '{name}' is truncated or corrupt ({exc}); replace or remove it") from None


@contextmanager
def _truncated_images_refused() -> Iterator[None]:
    """PIL decodes a cut-off file as far as it goes when ``ImageFile.LOAD_TRUNCATED_IMAGES``
    is set, and WeasyPrint sets it when imported: a truncated scan must stay an error."""
    saved = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = saved


def _pil_pixels(image: Image.Image, palette_indices: bool) -> np.ndarray:
    mode = image.mode
    if mode in ("P", "PA") and palette_indices:
        return np.asarray(image.convert("P") if mode == "PA" else image)
    if mode in ("P", "PA"):
        image = image.convert("RGBA" if "transparency" in image.info or mode == "PA" else "RGB")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        image = image.convert("RGB")
    elif mode == "1":
        image = image.convert("L")
    elif mode.startswith("I;16"):
        return np.asarray(image).astype(np.uint16)
    return np.array(image)


@contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    """tifffile logs what it cannot parse; the one-line InputError (or a successful read
    through PIL) says what matters, so its log lines stay off the user's terminal."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _read_tiff(path: Path, name: str) -> np.ndarray:
    """tifffile keeps the stored dtype (PIL silently drops 16-bit colour to 8 bit)."""
    import tifffile

    if path.stat().st_size == 0:
        raise InputError(f"image '{name}' is an empty (zero-byte) file; replace or remove it")
    try:
        with _quiet_logger("tifffile"), tifffile.TiffFile(path) as tif:
            shape = tuple(tif.series[0].shape)
            plane = shape[:2] if len(shape) == 3 and shape[-1] in (1, 2, 3, 4) else shape[-2:]
            check_pixel_count(name, int(np.prod(plane)))
            return np.asarray(tif.asarray())
    except InputError:
        raise
    except Exception:  # noqa: BLE001 - tifffile raises many types; PIL may still cope
        return _read_pil(path, name)


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


def _read_dicom(path: Path, name: str) -> np.ndarray:
    """DICOM -> float32 (H, W, C) in [0, 1] (see the module docstring for the scaling)."""
    import pydicom

    if path.stat().st_size == 0:
        raise InputError(f"DICOM file '{name}' is an empty (zero-byte) file; replace or remove it")
    try:
        ds = pydicom.dcmread(path, force=path.suffix.lower() in DICOM_SUFFIXES)
        rows, cols = int(ds.Rows), int(ds.Columns)
    except Exception as exc:  # noqa: BLE001 - pydicom's errors are not one hierarchy
        raise InputError(f"DICOM file '{name}' cannot be read ({exc}); replace or remove it") from None
    check_pixel_count(name, rows * cols)
    photometric = _photometric(ds, name)
    if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
        raise InputError(
            f"DICOM file '{name}' has {ds.NumberOfFrames} frames; multi-frame DICOM is not "
            f"supported, export the frame to audit as its own file"
        )
    try:
        pixels = np.asarray(ds.pixel_array)
    except Exception as exc:  # noqa: BLE001 - missing codec, bad pixel data, ...
        raise InputError(
            f"DICOM file '{name}' has pixel data that cannot be decoded ({exc}); "
            f"install the codec it needs (e.g. pylibjpeg) or convert it to PNG"
        ) from None
    if photometric == PALETTE_COLOR:
        return scale_to_unit(_apply_palette(ds, pixels, name), name)
    pixels = as_hwc(pixels, name)
    samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    if samples == 1:
        slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
        intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
        values = pixels.astype(np.float64) * slope + intercept
        unit = scale_to_unit(values, name)
        if photometric == "MONOCHROME1":
            unit = 1.0 - unit  # MONOCHROME1 stores white as the lowest value
        return unit.astype(np.float32)
    return scale_to_unit(pixels, name)


def read_pixels(path: Path, name: str, *, palette_indices: bool = False) -> np.ndarray:
    """Raw pixel array of an image file in its stored dtype (masks and ROIs use this)."""
    suffix = path.suffix.lower()
    try:
        if suffix in TIFF_SUFFIXES:
            return _read_tiff(path, name)
        if suffix in DICOM_SUFFIXES:
            import pydicom

            try:
                return np.asarray(pydicom.dcmread(path).pixel_array)
            except Exception as exc:  # noqa: BLE001
                raise InputError(f"DICOM file '{name}' cannot be read ({exc}); replace or remove it") from None
        return _read_pil(path, name, palette_indices)
    except FileNotFoundError:
        raise InputError(f"file '{name}' does not exist; check the path") from None


def read_image(path: Path, name: str) -> np.ndarray:
    """Decode one image file to float32 (H, W, C) in [0, 1]; ``name`` is used in errors."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        try:
            return _read_dicom(path, name)
        except FileNotFoundError:
            raise InputError(f"file '{name}' does not exist; check the path") from None
    return as_hwc(scale_to_unit(read_pixels(path, name), name), name)


# ---------------------------------------------------------------------- conversion
def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """(H, W, C) -> (H, W, ``channels``): alpha dropped, grey replicated, colour -> luminance."""
    if image.shape[2] in (2, 4):  # LA / RGBA: the alpha channel is not image content
        image = image[:, :, :-1]
    have = image.shape[2]
    if have == channels:
        return image
    if channels == 1:
        return (image @ LUMA)[:, :, None].astype(np.float32)
    if channels == 3 and have == 1:
        return np.repeat(image, 3, axis=2)
    raise ValueError(f"cannot convert {have} channels to {channels}")


def resize_image(image: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Bilinear resize of float (H, W, C) to ``size`` = (H, W); PIL antialiases when shrinking."""
    if size is None or image.shape[:2] == tuple(size):
        return image
    height, width = size
    planes = [
        np.asarray(Image.fromarray(np.ascontiguousarray(image[:, :, c], dtype=np.float32)).resize(
            (width, height), Image.Resampling.BILINEAR
        ))
        for c in range(image.shape[2])
    ]
    return np.clip(np.stack(planes, axis=2), 0.0, 1.0).astype(np.float32)


def resize_labels(labels: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Nearest-neighbour resize of an integer (H, W) map, so no new label values appear."""
    if size is None or labels.shape == tuple(size):
        return labels
    height, width = size
    resized = Image.fromarray(labels.astype(np.int32)).resize((width, height), Image.Resampling.NEAREST)
    return np.asarray(resized).astype(labels.dtype)


def prepare_image(image: np.ndarray, channels: int, size: tuple[int, int] | None) -> np.ndarray:
    """(H, W, C) float -> (C, H', W') float32, ready to stack into a batch."""
    return np.ascontiguousarray(resize_image(to_channels(image, channels), size).transpose(2, 0, 1))


def mask_to_classes(
    pixels: np.ndarray, name: str, num_classes: int, mask_values: Sequence[Any] | dict[Any, int] | None
) -> np.ndarray:
    """Raw mask pixels -> int64 (H, W) class indices.

    Binary tasks binarise (> 0 -> 1) so 0/1, 0/255 and 0/65535 masks all work. With
    ``mask_values`` (a list whose position is the class, or a {value: class} dict) each
    listed value maps to its class and any other value is an error; without it, K > 2
    masks must already hold class indices 0..K-1."""
    if pixels.ndim == 3:
        if pixels.shape[2] in (2, 4):
            pixels = pixels[:, :, :-1]
        if np.all(pixels == pixels[:, :, :1]):
            pixels = pixels[:, :, 0]
        else:
            pixels = np.rint(np.asarray(pixels, dtype=np.float64) @ LUMA.astype(np.float64))
    if pixels.ndim != 2:
        raise InputError(f"mask '{name}' has shape {tuple(pixels.shape)}; expected a 2-D label image")
    if mask_values is not None:
        mapping = dict(mask_values) if isinstance(mask_values, dict) else {v: i for i, v in enumerate(mask_values)}
        out = np.full(pixels.shape, -1, dtype=np.int64)
        for value, cls in mapping.items():
            out[pixels == float(value)] = int(cls)
        if np.any(out < 0):
            stray = sorted({float(v) for v in np.unique(pixels[out < 0])[:5]})
            raise InputError(
                f"mask '{name}' has values {stray} that are not in mask_values "
                f"{sorted(mapping)}; fix the mask or the mask_values option"
            )
        return out
    if num_classes <= 2:
        return (pixels > 0).astype(np.int64)
    out = pixels.astype(np.int64)
    if out.min() < 0 or out.max() >= num_classes:
        raise InputError(
            f"mask '{name}' has values {int(out.min())}..{int(out.max())} but there are "
            f"{num_classes} classes; give mask_values to map pixel values to classes"
        )
    return out


def stack_same_size(arrays: list[np.ndarray], names: list[str], what: str = "image") -> np.ndarray:
    """Stack arrays whose last two dims must agree; a mismatch names the odd file."""
    first = arrays[0].shape[-2:]
    for array, name in zip(arrays, names):
        if array.shape[-2:] != first:
            raise InputError(
                f"{what} '{name}' is {array.shape[-2]}x{array.shape[-1]} but '{names[0]}' is "
                f"{first[0]}x{first[1]} (HxW); give an input size (--input-size) to resize all images"
            )
    return np.stack(arrays)

