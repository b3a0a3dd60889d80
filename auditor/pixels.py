"""The pixel rules every decoder shares: the decompression-bomb limit, the scaling of
stored values to float [0, 1] (see :mod:`auditor.imaging` for the rule per stored type)
and the (H, W, C) layout."""

from __future__ import annotations

import numpy as np
from PIL import Image

from auditor.errors import InputError


def _max_pixels() -> int | None:
    # Read at call time so that a caller (or a test) that changes PIL's limit is honoured.
    limit = Image.MAX_IMAGE_PIXELS
    return None if limit is None else int(limit)


def too_large_error(name: str, pixels: int | None = None) -> InputError:
    size = f" ({pixels} pixels)" if pixels else ""
    return InputError(
        f"image '{name}' is too large{size} and may be a decompression bomb; "
        f"downsize it or raise PIL.Image.MAX_IMAGE_PIXELS if you trust the file"
    )


def check_pixel_count(name: str, pixels: int) -> None:
    limit = _max_pixels()
    if limit is not None and pixels > limit:
        raise too_large_error(name, pixels)


def scale_to_unit(array: np.ndarray, name: str) -> np.ndarray:
    """Map stored pixel values to float32 [0, 1] by the rules in :mod:`auditor.imaging`'s docstring."""
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
