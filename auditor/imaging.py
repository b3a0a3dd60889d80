"""Image decoding and conversion shared by every data source.

All pixel data leaves this module as float32 in [0, 1], shaped (H, W, C) for images and
(H, W) for masks, so data sources only decide *which* files to read, never how.

Intensity scaling, by stored type (one rule for every format, so a model sees the same
numbers whichever container the pixels came in):

* 8-bit integers are divided by 255, 16-bit unsigned integers by 65535, booleans map to 0/1;
* floats already in [0, 1] are kept (clipped against rounding noise); any other float
  range, and signed or wider integers (e.g. int16 CT), are min-max scaled per image,
  because there is no agreed full-scale value to divide by;
* DICOM (:mod:`auditor.dicom`): what a viewer shows. Rescale slope/intercept (modality
  LUT), then the file's first Window Center/Width or its VOI LUT (window bottom = 0, top
  = 1; without a window, the image's own range min-max scaled), then MONOCHROME1
  inverted; PALETTE COLOR through its palette; multi-frame files refused.

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

from auditor.dicom import DICOM_SUFFIXES, read_dicom, read_dicom_stored
from auditor.errors import InputError
from auditor.pixels import as_hwc, check_pixel_count, scale_to_unit, too_large_error

# as_hwc, check_pixel_count and scale_to_unit are used here and by the data sources as imaging.*

PIL_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
TIFF_SUFFIXES: tuple[str, ...] = (".tif", ".tiff")
IMAGE_SUFFIXES: tuple[str, ...] = PIL_SUFFIXES + TIFF_SUFFIXES + DICOM_SUFFIXES

# Luminance weights (ITU-R BT.601), the same ones PIL's convert("L") uses.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def is_image_file(path: Path) -> bool:
    """True for a file whose suffix names a format medaudit can decode."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def is_ignorable(path: Path) -> bool:
    """Hidden files and OS clutter that people leave in data folders without meaning to."""
    return path.name.startswith(".") or path.name.lower() in {"thumbs.db", "desktop.ini"}


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
        raise too_large_error(name) from None
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


def read_pixels(path: Path, name: str, *, palette_indices: bool = False) -> np.ndarray:
    """Raw pixel array of an image file in its stored dtype (masks and ROIs use this)."""
    suffix = path.suffix.lower()
    try:
        if suffix in TIFF_SUFFIXES:
            return _read_tiff(path, name)
        if suffix in DICOM_SUFFIXES:
            return read_dicom_stored(path, name)
        return _read_pil(path, name, palette_indices)
    except FileNotFoundError:
        raise InputError(f"file '{name}' does not exist; check the path") from None


def read_image(path: Path, name: str) -> np.ndarray:
    """Decode one image file to float32 (H, W, C) in [0, 1]; ``name`` is used in errors."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        try:
            return read_dicom(path, name)
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

