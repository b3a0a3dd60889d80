"""``npz``: MedMNIST-style ``.npz`` files (``{split}_images`` and ``{split}_labels``).

Images are (N, H, W) or (N, H, W, C) arrays (scaled as in :mod:`auditor.imaging`), labels
(N,) or (N, 1) class indices; the split defaults to ``test``. Class names come from
``--classes`` or are the indices "0".."K-1", with K taken over every split in the file.

The images are never loaded whole: an ``.npz`` is a zip of ``.npy`` files, so ``load``
seeks inside the zip member to the rows it needs. A forward seek in a compressed member
decompresses and discards what lies before, so the open member is kept and reused while
requests move forward (the engine's usual order), making a full pass linear.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import IO, Any, Sequence

import numpy as np
import torch

from auditor import imaging
from auditor.errors import InputError
from auditor.interfaces import Batch, DataOptions, DataSource, Dataset
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


class _ImageMember:
    """Row access to one ``.npy`` member of the zip without reading the rest of it."""

    def __init__(self, path: Path, member: str, name: str) -> None:
        self.path, self.member, self.name = path, member, name
        with zipfile.ZipFile(path) as archive, archive.open(member) as handle:
            try:
                self.shape, fortran, self.dtype = _read_header(handle)
            except ValueError as exc:  # bad magic or header: not an .npy array
                raise InputError(f"'{name}' in '{path.name}' is not a NumPy .npy array ({exc}); re-save it with numpy") from None
            self.offset = handle.tell()
        if fortran or self.dtype.hasobject:
            raise InputError(f"'{name}' in '{path.name}' is not a plain C-ordered numeric array; re-save it with numpy")
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self._archive: zipfile.ZipFile | None = None
        self._handle: IO[bytes] | None = None

    def rows(self, indices: np.ndarray) -> list[np.ndarray]:
        """The rows at ``indices`` in that order, read with forward seeks where possible."""
        out: dict[int, np.ndarray] = {}
        for row in sorted(set(int(i) for i in indices)):
            handle = self._at(self.offset + row * self.row_bytes)
            data = handle.read(self.row_bytes)
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
            raise InputError(
                f"'{key}' in '{path.name}' holds pickled Python objects, which medaudit does not load; "
                "store it as a plain numeric array"
            ) from None
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
            labels = self._labels(_array(archive, label_key, path), label_key)
            largest = max(
                int(self._labels(_array(archive, k, path), k).max(initial=-1)) for k in keys if k.endswith("_labels")
            )
        self.images = _ImageMember(path, f"{image_key}.npy", image_key)
        if len(self.images.shape) not in (3, 4) or (len(self.images.shape) == 4 and self.images.shape[3] not in (1, 3, 4)):
            raise InputError(
                f"'{image_key}' in '{path.name}' has shape {self.images.shape}; expected (N, H, W) or (N, H, W, 3)"
            )
        if self.images.shape[0] != len(labels):
            raise InputError(
                f"'{path.name}' has {self.images.shape[0]} {image_key} but {len(labels)} {label_key}; the counts must match"
            )
        count = len(options.classes) if options.classes else largest + 1
        check_class_count(count, f"'{label_key}' in '{path.name}'")
        if labels.size and (labels.min() < 0 or labels.max() >= count):
            raise InputError(
                f"'{label_key}' in '{path.name}' holds labels {int(labels.min())}..{int(labels.max())} but there are "
                f"{count} classes; fix --classes"
            )
        self.class_names = list(options.classes) if options.classes else [str(i) for i in range(count)]
        self.rows = stratified_subset(labels, options.limit, options.seed)
        self._labels_kept = labels[self.rows]
        require_samples(len(self.rows), f"{path}:{self.split}")

    def _labels(self, raw: np.ndarray, key: str) -> np.ndarray:
        labels = np.asarray(raw)
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.ndim != 1:
            raise InputError(
                f"'{key}' in '{self.path.name}' has shape {labels.shape}; only single-label (N,) or (N, 1) "
                f"labels are supported (multi-label sets are not)"
            )
        if not np.issubdtype(labels.dtype, np.integer):
            if not np.all(np.mod(labels, 1) == 0):
                raise InputError(f"'{key}' in '{self.path.name}' holds non-integer labels; store class indices")
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
            "limit": self.options.limit,
            "seed": self.options.seed,
        }

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
