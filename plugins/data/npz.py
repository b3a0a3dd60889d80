"""``npz``: MedMNIST-style ``.npz`` files (``{split}_images`` and ``{split}_labels``).

Images are (N, H, W) or (N, H, W, C) arrays (scaled as in :mod:`auditor.imaging`), labels
(N,) or (N, 1) class indices; the split defaults to ``test``. Class names come from
``--classes``, else from MedMNIST's metadata when the file is named like a MedMNIST 2D set
(``pneumoniamnist.npz`` -> normal, pneumonia; see ``_medmnist``), else they are the indices
"0".."K-1", with K taken over every split in the file.

The images are never loaded whole: an ``.npz`` is a zip of ``.npy`` files, so ``load``
seeks inside the zip member to the rows it needs. A forward seek in a compressed member
decompresses and discards what lies before, so the open member is kept and reused while
requests move forward (the engine's usual order), making a full pass linear.

An archive is checked before its data is read: every array must be a plain numeric,
C-ordered one whose header declares exactly the bytes its member holds (so a header
claiming a terabyte is refused, not allocated), images must stay under PIL's pixel limit,
and labels must be non-negative integer class indices. Nothing is ever unpickled
(``allow_pickle=False``, and object arrays are refused by their header).
"""

from __future__ import annotations

import hashlib
import math
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any, Sequence

import numpy as np
import torch

from auditor import imaging
from auditor.errors import InputError
from auditor.interfaces import Batch, DataOptions, DataSource, Dataset
from plugins.data._medmnist import medmnist_labels
from plugins.data.common import (
    check_class_count,
    check_indices,
    check_options,
    empty_batch,
    fingerprint,
    input_size,
    per_class_counts,
    require_samples,
    stratified_subset,
)

DEFAULT_SPLIT = "test"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_header(handle: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of the ``.npy`` stream, leaving it at the first byte of data."""
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(handle)
    return np.lib.format.read_array_header_2_0(handle)


# Stored types that are pixel values or class indices: bool, signed, unsigned, float.
# Strings, complex numbers, dates, records and objects are refused before they are read.
NUMERIC_KINDS = "biuf"


def _pickled(key: str, path: Path) -> InputError:
    # numpy needs pickle to read an object array, and loading a pickle runs code from the file
    return InputError(
        f"'{key}' in '{path.name}' holds pickled Python objects, which medaudit does not load; "
        "store it as a plain numeric array"
    )


def member_name(names: Sequence[str], key: str) -> str:
    """The zip member behind ``key`` (numpy writes ``key.npy``; a hand-made zip may not)."""
    return f"{key}.npy" if f"{key}.npy" in names else key


def checked_header(path: Path, key: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data offset) of member ``key``, checked before any data is read.

    The header is the file's own claim: a plain numeric C-ordered array whose declared
    size is exactly what the member holds, so a header that claims a terabyte (to make
    medaudit allocate it) or a type numpy would need pickle for is refused up front."""
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(member_name(archive.namelist(), key))
            with archive.open(info) as handle:
                shape, fortran, dtype = _read_header(handle)
                offset = handle.tell()
    except (ValueError, EOFError, SyntaxError) as exc:  # bad magic or header: not an .npy array
        raise InputError(f"'{key}' in '{path.name}' is not a NumPy .npy array ({exc}); re-save it with numpy") from None
    # zipfile raises NotImplementedError for a compression method it cannot decode
    except (zipfile.BadZipFile, zlib.error, OSError, NotImplementedError, KeyError) as exc:
        raise InputError(f"'{key}' in '{path.name}' cannot be read ({exc}); re-download or re-save it") from None
    if dtype.hasobject:
        raise _pickled(key, path)
    if fortran:
        raise InputError(f"'{key}' in '{path.name}' is stored in Fortran (column-major) order; re-save it C-ordered")
    if dtype.fields is not None or dtype.kind not in NUMERIC_KINDS:
        wanted = "integer class indices (class names go in --classes)" if key.endswith("_labels") else "pixel values"
        raise InputError(f"'{key}' in '{path.name}' holds {dtype} values, not numbers; store {wanted}")
    if any(int(d) < 0 for d in shape):
        raise InputError(f"'{key}' in '{path.name}' declares the impossible shape {shape}; re-save it with numpy")
    declared = math.prod(int(d) for d in shape) * dtype.itemsize
    if offset + declared != info.file_size:
        raise InputError(
            f"'{key}' in '{path.name}' declares shape {shape} of {dtype} ({declared} bytes) but holds "
            f"{max(info.file_size - offset, 0)} bytes; re-download or re-save it"
        )
    return tuple(int(d) for d in shape), dtype, offset


class _ImageMember:
    """Row access to one ``.npy`` member of the zip without reading the rest of it."""

    def __init__(self, path: Path, key: str) -> None:
        self.path, self.name = path, key
        self.shape, self.dtype, self.offset = checked_header(path, key)
        with zipfile.ZipFile(path) as archive:
            self.member = member_name(archive.namelist(), key)
        self.row_bytes = math.prod(self.shape[1:]) * self.dtype.itemsize
        self._archive: zipfile.ZipFile | None = None
        self._handle: IO[bytes] | None = None

    def rows(self, indices: np.ndarray) -> list[np.ndarray]:
        """The rows at ``indices`` in that order, read with forward seeks where possible."""
        out: dict[int, np.ndarray] = {}
        for row in sorted(set(int(i) for i in indices)):
            try:
                handle = self._at(self.offset + row * self.row_bytes)
                data = handle.read(self.row_bytes)
            except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError) as exc:
                self.close()  # a CRC or inflate error mid-member: the zip was damaged after opening
                raise InputError(f"'{self.name}' in '{self.path.name}' cannot be read ({exc}); re-download it") from None
            if len(data) != self.row_bytes:
                raise InputError(f"'{self.path.name}' is truncated ('{self.name}' ends early); re-download it")
            out[row] = np.frombuffer(data, dtype=self.dtype).reshape(self.shape[1:])
        return [out[int(i)] for i in indices]

    def _at(self, position: int) -> IO[bytes]:
        if self._handle is None or self._handle.tell() > position:
            self.close()
            self._archive = zipfile.ZipFile(self.path)
            self._handle = self._archive.open(self.member)
        self._handle.seek(position)
        return self._handle

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
        if self._archive is not None:
            self._archive.close()
        self._handle = self._archive = None

    def __getstate__(self) -> dict[str, Any]:  # open handles do not cross processes
        return {**self.__dict__, "_archive": None, "_handle": None}


def _array(archive: Any, key: str, path: Path) -> np.ndarray:
    """One member of the archive as an array, never unpickled."""
    try:
        value = archive[key]
    except ValueError as exc:
        if "pickle" in str(exc).lower():  # numpy refuses object arrays without allow_pickle
            raise _pickled(key, path) from None
        raise InputError(f"'{key}' in '{path.name}' is not a readable .npy array ({exc}); re-save it with numpy") from None
    except Exception as exc:  # noqa: BLE001 - zip CRC and decompression errors
        raise InputError(f"'{key}' in '{path.name}' cannot be read ({exc}); re-download or re-save it") from None
    if not isinstance(value, np.ndarray):  # a member without the .npy header comes back as bytes
        raise InputError(f"'{key}' in '{path.name}' is not a NumPy .npy array; re-save the file with numpy")
    return value


class NpzDataset(Dataset):
    task = "classification"

    def __init__(self, path: Path, source: str, options: DataOptions) -> None:
        self.source, self.format, self.path, self.options = source, NpzSource.name, path, options
        self.split = options.split or DEFAULT_SPLIT
        if not zipfile.is_zipfile(path):  # np.load would take it for a pickle and say so
            raise InputError(f"'{path.name}' is not a readable .npz file (not a zip archive); re-download or re-save it")
        try:
            archive = np.load(path, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - zip and format errors alike
            raise InputError(f"'{path.name}' is not a readable .npz file ({exc}); re-download or re-save it") from None
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise InputError(f"'{path.name}' is a single array, not an .npz archive of {{split}}_images/_labels")
        with archive:
            keys = sorted(archive.files)
            image_key, label_key = f"{self.split}_images", f"{self.split}_labels"
            if image_key not in keys or label_key not in keys:
                raise InputError(
                    f"'{path.name}' has no '{image_key}'/'{label_key}' arrays (keys: {', '.join(keys)}); "
                    f"pick a split with --split"
                )
            labels = self._labels(archive, label_key)
            largest = max(int(self._labels(archive, k).max(initial=-1)) for k in keys if k.endswith("_labels"))
        self.images = _ImageMember(path, image_key)
        shape = self.images.shape
        if len(shape) not in (3, 4) or (len(shape) == 4 and shape[3] not in (1, 3, 4)) or 0 in shape[1:3]:
            raise InputError(
                f"'{image_key}' in '{path.name}' has shape {shape}; expected (N, H, W) or (N, H, W, 3)"
            )
        imaging.check_pixel_count(f"{path.name}:{image_key}", shape[1] * shape[2])
        if self.images.shape[0] != len(labels):
            raise InputError(
                f"'{path.name}' has {self.images.shape[0]} {image_key} but {len(labels)} {label_key}; the counts must match"
            )
        count = len(options.classes) if options.classes else largest + 1
        check_class_count(count, f"'{label_key}' in '{path.name}'")
        if labels.size and labels.max() >= count:
            raise InputError(
                f"'{label_key}' in '{path.name}' holds labels {int(labels.min())}..{int(labels.max())} but there are "
                f"{count} classes; fix --classes"
            )
        self.class_names, self.class_names_source = self._class_names(options, count)
        self.rows = stratified_subset(labels, options.limit, options.seed)
        self._labels_kept = labels[self.rows]
        require_samples(len(self.rows), f"{path}:{self.split}")

    def _class_names(self, options: DataOptions, count: int) -> tuple[list[str], str]:
        """``--classes``; else MedMNIST's label names when the file is named like one of its
        sets and holds that many classes; else the indices "0".."K-1"."""
        if options.classes:
            return list(options.classes), "--classes"
        known = medmnist_labels(self.path)
        if known is not None and len(known[1]) == count:
            return list(known[1]), f"MedMNIST v2 metadata ({known[0]})"
        return [str(i) for i in range(count)], "label indices"

    def _labels(self, archive: Any, key: str) -> np.ndarray:
        """Member ``key`` as int64 class indices 0..; anything else is an InputError."""
        checked_header(self.path, key)
        labels = _array(archive, key, self.path)
        where = f"'{key}' in '{self.path.name}'"
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.ndim != 1:
            raise InputError(
                f"{where} has shape {labels.shape}; only single-label (N,) or (N, 1) "
                f"labels are supported (multi-label sets are not)"
            )
        if labels.dtype.kind == "f" and not (np.all(np.isfinite(labels)) and np.all(np.mod(labels, 1) == 0)):
            raise InputError(f"{where} holds non-integer labels; store class indices")
        if labels.size and labels.min() < 0:
            raise InputError(f"{where} holds the negative label {labels.min():g}; labels are class indices 0..K-1")
        if labels.size:
            check_class_count(int(labels.max()) + 1, where)  # before a cast to int64 could wrap around
        return labels.astype(np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def targets(self) -> np.ndarray:
        return self._labels_kept.copy()

    def ids(self) -> list[str]:
        return [f"{self.split}/{int(r)}" for r in self.rows]

    def fingerprint(self) -> str:
        return fingerprint([], self.options, format=self.format, file_sha256=_sha256(self.path), split=self.split,
                           classes=self.class_names)

    def describe(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "source": self.source,
            "split": self.split,
            "n_samples": len(self),
            "per_class_counts": per_class_counts(self._labels_kept, self.class_names),
            "classes": list(self.class_names),
            "class_names_source": self.class_names_source,
            "limit": self.options.limit,
            "seed": self.options.seed,
        }

    def native_size(self) -> tuple[int, int] | None:
        return int(self.images.shape[1]), int(self.images.shape[2])  # one array: one size

    def load(self, indices: Sequence[int]) -> Batch:
        idx = check_indices(indices, len(self))
        size = input_size(self.options)
        if idx.size == 0:
            return empty_batch(self.options.channels, size, False)
        rows = self.rows[idx]
        names = [f"{self.split}/{int(r)}" for r in rows]
        images = [
            imaging.prepare_image(imaging.as_hwc(imaging.scale_to_unit(pixels, name), name), self.options.channels, size)
            for pixels, name in zip(self.images.rows(rows), names)
        ]
        batch = np.stack(images).astype(np.float32)
        return Batch(torch.from_numpy(batch), torch.from_numpy(self._labels_kept[idx].copy()), names, idx, None)


class NpzSource(DataSource):
    name = "npz"
    description = "MedMNIST .npz ({split}_images, {split}_labels); --split defaults to test"
    tasks = ("classification",)

    def detect(self, path: Path, options: DataOptions) -> bool:
        return options.task == "classification" and path.is_file() and path.suffix.lower() == ".npz"

    def open(self, path: Path, options: DataOptions) -> Dataset:
        check_options(options, self.name, self.tasks)
        if not path.is_file():
            raise InputError(f"'{path}' is not a file; the npz format needs a MedMNIST .npz file")
        return NpzDataset(path, str(path), options)
