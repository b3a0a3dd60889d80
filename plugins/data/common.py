"""What the built-in data sources share: option checks, the seeded stratified subsample,
fingerprints, and :class:`FileDataset`, which decodes listed files only when asked.

Sources differ only in how they *list* samples (class folders, a CSV manifest, paired
image/mask folders); once a list of :class:`Sample` exists, loading, subsampling and
fingerprinting are the same, so they live here once.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from PIL import Image

from auditor import imaging
from auditor.errors import InputError, UsageError
from auditor.interfaces import TASKS, Batch, DataOptions, Dataset


# ----------------------------------------------------------------------- options
def check_options(options: DataOptions, source: str, tasks: Sequence[str]) -> None:
    """Reject option values no source can honour, before any file is touched."""
    if options.task not in TASKS:
        raise UsageError(f"unknown task '{options.task}' (known: {', '.join(TASKS)})")
    if options.task not in tasks:
        raise UsageError(f"data format '{source}' does not support {options.task} (it supports: {', '.join(tasks)})")
    if options.channels not in (1, 3):
        raise UsageError(f"channels must be 1 or 3, not {options.channels}")
    if options.input_size is not None:
        size = tuple(options.input_size)
        if len(size) != 2 or any(int(v) != v or v < 1 for v in size):
            raise UsageError(f"input size must be two positive integers (H, W), not {options.input_size}")
    if options.limit is not None and options.limit < 1:
        raise UsageError(f"limit must be a positive number of samples, not {options.limit}")


def input_size(options: DataOptions) -> tuple[int, int] | None:
    return None if options.input_size is None else (int(options.input_size[0]), int(options.input_size[1]))


# --------------------------------------------------------------------- subsample
def _largest_remainder(weights: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` into integers proportional to ``weights`` (Hamilton's method)."""
    if total <= 0 or weights.sum() <= 0:
        return np.zeros(len(weights), dtype=np.int64)
    quota = weights * (total / weights.sum())
    alloc = np.floor(quota).astype(np.int64)
    # Stable order: bigger remainders first, ties to the earlier class.
    order = sorted(range(len(weights)), key=lambda i: (-(quota[i] - alloc[i]), i))
    for i in order[: total - int(alloc.sum())]:
        alloc[i] += 1
    return alloc


def stratified_subset(labels: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """Sorted positions of a seeded subsample of ``limit`` items, stratified by label.

    Every class present keeps at least one sample when ``limit`` allows it, and the rest is
    shared in proportion to class size, so a small ``--limit`` does not drop a rare class
    (a melanoma-free audit would be meaningless). Same labels + limit + seed -> same set."""
    labels = np.asarray(labels)
    n = len(labels)
    if limit is None or limit >= n:
        return np.arange(n, dtype=np.int64)
    classes, counts = np.unique(labels, return_counts=True)
    weights = counts.astype(np.float64)
    alloc = np.zeros(len(classes), dtype=np.int64)
    active = np.ones(len(classes), dtype=bool)
    remaining = limit
    if limit >= len(classes):
        # Classes whose fair share is under one sample get exactly one; the others then
        # share what is left, again in proportion (repeat until no share is under one).
        while True:
            share = remaining * weights / weights[active].sum()
            small = active & (share < 1.0)
            if not small.any():
                break
            alloc[small] = 1
            remaining -= int(small.sum())
            active &= ~small
    alloc[active] = _largest_remainder(weights[active], remaining)
    rng = np.random.default_rng(seed)
    chosen = [
        rng.choice(np.flatnonzero(labels == cls), size=int(k), replace=False)
        for cls, k in zip(classes, alloc)
        if k > 0
    ]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


# -------------------------------------------------------------------- fingerprint
def fingerprint(entries: Iterable[Sequence[Any]], options: DataOptions, **extra: Any) -> str:
    """SHA-256 over sorted sample entries and the options that select or shape samples."""
    payload = {
        "entries": sorted([list(map(str, e)) for e in entries]),
        "split": options.split,
        "limit": options.limit,
        "seed": options.seed,
        "input_size": list(options.input_size) if options.input_size else None,
        "task": options.task,
        **extra,
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def file_sha256(path: Path | None) -> str:
    """SHA-256 of a file's bytes ("" for no file, "unreadable" when it cannot be read)."""
    if path is None:
        return ""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return "unreadable"
    return digest.hexdigest()


def relative_name(path: Path, root: Path) -> str:
    """Forward-slash path of ``path`` relative to ``root`` (stable across platforms)."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def per_class_counts(labels: np.ndarray, class_names: Sequence[str]) -> dict[str, int]:
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(class_names))
    return {name: int(counts[i]) for i, name in enumerate(class_names)}


# Class indices beyond this are typos or ids, not classes; without a cap a single label
# such as 999999999 would have medaudit build a billion class names.
MAX_CLASSES = 100_000


def check_class_count(count: int, where: str) -> None:
    if count > MAX_CLASSES:
        raise InputError(
            f"{where}: the largest label, {count - 1}, would mean {count} classes (more than {MAX_CLASSES}); "
            "labels must be class indices 0..K-1 or class names"
        )


def require_samples(n: int, where: str) -> None:
    if n == 0:
        raise InputError(f"data set is empty: no samples found in '{where}'; check the path, split and file types")


def check_indices(indices: Sequence[int], n: int) -> np.ndarray:
    idx = np.asarray(list(indices), dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"sample index out of range for a data set of {n} samples")
    return np.where(idx < 0, idx + n, idx)


def empty_batch(channels: int, size: tuple[int, int] | None, segmentation: bool) -> Batch:
    h, w = size or (0, 0)
    targets = torch.zeros((0, h, w) if segmentation else (0,), dtype=torch.int64)
    return Batch(torch.zeros((0, channels, h, w)), targets, [], np.zeros(0, dtype=np.int64), None)


# ----------------------------------------------------------------------- the root
class DataRoot:
    """The folder a data set's files must really live in.

    A data folder is often someone else's: a class folder or sub-folder that is a symbolic
    link, or a manifest path with ``..``, would make medaudit read (and put into its
    report) files from anywhere on the machine. Every listed file's real path
    (:func:`os.path.realpath`, symbolic links and ``..`` resolved) must therefore lie
    under the real root, unless the user passed ``--follow-symlinks``
    (``DataOptions.follow_symlinks``)."""

    def __init__(self, path: Path, options: DataOptions, label: str = "data folder") -> None:
        self.path = path
        self.real = Path(os.path.realpath(path))
        self.follow = options.follow_symlinks
        self.label = label

    def check(self, path: Path, what: str) -> Path:
        """``path`` itself when it stays inside the root; ``what`` names it in the error."""
        if self.follow:
            return path
        real = Path(os.path.realpath(path))
        if not real.is_relative_to(self.real):
            raise InputError(
                f"{what} is outside the {self.label} (it resolves to '{real}' through a symbolic link "
                f"or '..'); move it into '{self.path}' or pass --follow-symlinks to read it anyway"
            )
        return path


def refuse_repeated_images(samples: Sequence[Sample], class_names: Sequence[str], where: str) -> None:
    """Refuse a file listed twice (by real path, so a link or ``a/../a.png`` is caught).

    Under two labels the ground truth contradicts itself; under one it is counted twice,
    weighting the accuracy. Either way the data set is not what its owner thinks it is."""
    seen: dict[str, Sample] = {}
    for sample in samples:
        key = os.path.realpath(sample.image)
        first = seen.setdefault(key, sample)
        if first is sample:
            continue
        also = "" if first.name == sample.name else f" (also as '{first.name}')"
        if first.label != sample.label:
            raise InputError(
                f"{where}: image '{sample.name}'{also} is listed under two labels, "
                f"'{class_names[first.label]}' and '{class_names[sample.label]}'; keep one entry per image"
            )
        raise InputError(f"{where}: image '{sample.name}'{also} is listed twice; keep one entry per image")


# ------------------------------------------------------------------------ dataset
@dataclass(frozen=True)
class Sample:
    """One listed sample. ``name`` is its id: the image path relative to the source root."""

    image: Path
    name: str
    label: int = 0
    mask: Path | None = None
    mask_name: str | None = None
    roi: Path | None = None
    roi_name: str | None = None


class FileDataset(Dataset):
    """A data set of image files (plus masks and ROIs for segmentation), decoded lazily."""

    def __init__(
        self,
        *,
        source: str,
        format: str,
        samples: list[Sample],
        class_names: list[str],
        options: DataOptions,
        facts: dict[str, Any] | None = None,
    ) -> None:
        self.source = source
        self.format = format
        self.task = options.task
        self.class_names = list(class_names)
        self.options = options
        self._facts = dict(facts or {})
        labels = np.array([s.label for s in samples], dtype=np.int64)
        keep = stratified_subset(labels if self.task == "classification" else np.zeros(len(samples)), options.limit, options.seed)
        self.samples = [samples[i] for i in keep]
        self._labels = labels[keep] if self.task == "classification" else np.zeros(len(keep), dtype=np.int64)
        self._fingerprint: str | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def targets(self) -> np.ndarray:
        return self._labels.copy()

    def ids(self) -> list[str]:
        return [s.name for s in self.samples]

    @property
    def has_roi(self) -> bool:
        return any(s.roi is not None for s in self.samples)

    def fingerprint(self) -> str:
        # File contents, not just sizes: an image re-exported at the same dimensions (BMP,
        # raw TIFF, DICOM) keeps its size, and --resume must notice the data changed.
        # Computed once per data set: the files are read once more, at the start of a run.
        if self._fingerprint is None:
            if self.task == "segmentation":
                entries = [(s.name, s.mask_name, s.roi_name or "", file_sha256(s.image), file_sha256(s.mask),
                            file_sha256(s.roi)) for s in self.samples]
            else:
                entries = [(s.name, s.label, file_sha256(s.image)) for s in self.samples]
            self._fingerprint = fingerprint(entries, self.options, format=self.format, classes=self.class_names)
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        facts: dict[str, Any] = {
            "format": self.format,
            "source": self.source,
            "split": self.options.split,
            "n_samples": len(self),
            "classes": list(self.class_names),
            "limit": self.options.limit,
            "seed": self.options.seed,
        }
        if self.task == "segmentation":
            # Pixel-level class counts would need every mask decoded; the engine has them.
            facts["per_class_counts"] = {}
            facts["has_roi"] = self.has_roi
        else:
            facts["per_class_counts"] = per_class_counts(self._labels, self.class_names)
        facts.update(self._facts)
        return facts

    def native_size(self) -> tuple[int, int] | None:
        """The size in every listed file's header (PIL reads headers without decoding);
        None at the first file that differs or that PIL does not read (DICOM, TIFF)."""
        if not hasattr(self, "_native_size"):
            self._native_size = _shared_header_size([s.image for s in self.samples])
        return self._native_size

    def load(self, indices: Sequence[int]) -> Batch:
        idx = check_indices(indices, len(self))
        size = input_size(self.options)
        segmentation = self.task == "segmentation"
        if idx.size == 0:
            return empty_batch(self.options.channels, size, segmentation)
        images, masks, rois, names = [], [], [], []
        for i in idx:
            sample = self.samples[int(i)]
            pixels = imaging.read_image(sample.image, sample.name)
            native = pixels.shape[:2]
            images.append(imaging.prepare_image(pixels, self.options.channels, size))
            names.append(sample.name)
            if segmentation:
                masks.append(self._mask(sample, native, size))
            rois.append(self._roi(sample, native, size))  # classification: the lesion mask, when listed
        batch_images = imaging.stack_same_size(images, names)
        has_roi = [r is not None for r in rois]
        if segmentation and any(has_roi) and not all(has_roi):  # a classifier's lesion masks are optional
            missing = names[has_roi.index(False)]
            raise InputError(f"image '{missing}' has no ROI mask while others do; add one or drop the ROI folder")
        roi = torch.from_numpy(np.stack(rois)) if has_roi and all(has_roi) else None
        if segmentation:
            targets = torch.from_numpy(imaging.stack_same_size(masks, names, "mask"))
        else:
            targets = torch.from_numpy(self._labels[idx].copy())
        return Batch(torch.from_numpy(batch_images), targets, names, idx, roi)

    # ------------------------------------------------------------ segmentation
    def _mask(self, sample: Sample, native: tuple[int, int], size: tuple[int, int] | None) -> np.ndarray:
        assert sample.mask is not None and sample.mask_name is not None
        raw = imaging.read_pixels(sample.mask, sample.mask_name, palette_indices=True)
        classes = imaging.mask_to_classes(
            raw, sample.mask_name, len(self.class_names), mask_values(self.options)
        )
        _check_same_size(classes.shape, native, sample.mask_name, sample.name)
        return imaging.resize_labels(classes, size)

    def _roi(self, sample: Sample, native: tuple[int, int], size: tuple[int, int] | None) -> np.ndarray | None:
        if sample.roi is None or sample.roi_name is None:
            return None
        raw = imaging.read_pixels(sample.roi, sample.roi_name)
        inside = (raw > 0).any(axis=2) if raw.ndim == 3 else raw > 0
        _check_same_size(inside.shape, native, sample.roi_name, sample.name)
        return imaging.resize_labels(inside.astype(np.uint8), size).astype(bool)


def _shared_header_size(paths: Sequence[Path]) -> tuple[int, int] | None:
    sizes: set[tuple[int, int]] = set()
    for path in paths:
        if path.suffix.lower() not in imaging.PIL_SUFFIXES:
            return None
        try:
            with Image.open(path) as image:
                sizes.add((int(image.height), int(image.width)))
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            return None  # the audit's own decoding reports a bad file properly
        if len(sizes) > 1:
            return None
    return sizes.pop() if sizes else None


def _check_same_size(shape: tuple[int, ...], native: tuple[int, int], name: str, image_name: str) -> None:
    if tuple(shape[:2]) != tuple(native):
        raise InputError(
            f"'{name}' is {shape[0]}x{shape[1]} but its image '{image_name}' is "
            f"{native[0]}x{native[1]} (HxW); masks must match their images pixel for pixel"
        )


def mask_values(options: DataOptions) -> list[float] | dict[float, int] | None:
    """The ``mask_values`` option as a list (position = class) or a {value: class} dict;
    a command line may pass it as text, ``"0,128,255"``."""
    raw = options.extra.get("mask_values")
    if raw is None:
        return None
    try:
        if isinstance(raw, str):
            parsed: list[float] | dict[float, int] = [float(v) for v in raw.split(",") if v.strip()]
        elif isinstance(raw, dict):
            parsed = {float(k): int(v) for k, v in raw.items()}
        else:
            parsed = [float(v) for v in raw]
    except (TypeError, ValueError):
        parsed = []
    if not parsed:
        raise UsageError(f"mask_values must be pixel values such as 0,128,255, not {raw!r}")
    return parsed


def segmentation_classes(options: DataOptions) -> list[str]:
    """Class names for a segmentation set: ``--classes``, else from mask_values, else binary."""
    values = mask_values(options)
    if options.classes:
        if values is not None and max(_mapping_classes(values)) >= len(options.classes):
            raise UsageError("mask_values map to more classes than --classes names")
        return list(options.classes)
    if values is not None:
        k = max(_mapping_classes(values)) + 1
        if k > 2:
            return ["background"] + [f"class_{i}" for i in range(1, k)]
    return ["background", "foreground"]


def _mapping_classes(mask_values: Any) -> list[int]:
    if isinstance(mask_values, dict):
        return [int(c) for c in mask_values.values()]
    return list(range(len(list(mask_values))))


def match_by_stem(folder: Path, root: Path, what: str, inside: DataRoot) -> dict[str, Path]:
    """Image files in ``folder`` keyed by stem; two files sharing a stem are ambiguous.
    Each must really lie ``inside`` its root (see :class:`DataRoot`)."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or imaging.is_ignorable(path) or not imaging.is_image_file(path):
            continue
        inside.check(path, f"{what} '{relative_name(path, root)}'")
        if path.stem in found:
            raise InputError(
                f"{what} '{relative_name(path, root)}' and '{relative_name(found[path.stem], root)}' "
                f"share a name; keep one file per name"
            )
        found[path.stem] = path
    return found


def attach_rois(samples: list[Sample], roi_dir: Path | None, root: Path, inside: DataRoot) -> list[Sample]:
    """Pair each sample with the ROI mask of the same stem in ``roi_dir`` (all or error)."""
    if roi_dir is None:
        return samples
    if not roi_dir.is_dir():
        raise InputError(f"ROI folder '{roi_dir}' does not exist; check --roi")
    rois = match_by_stem(roi_dir, root, "ROI mask", inside)
    out = []
    for s in samples:
        roi = rois.get(Path(s.name).stem)
        if roi is None:
            raise InputError(
                f"no ROI mask for image '{s.name}' in '{roi_dir}' (matched by file name); add it or drop --roi"
            )
        out.append(Sample(s.image, s.name, s.label, s.mask, s.mask_name, roi, relative_name(roi, root)))
    return out
