"""``csv``: a manifest with one row per sample, paths relative to the CSV's folder.

Classification needs ``image,label`` and segmentation ``image,mask`` (an optional ``roi``
column adds a region of interest); an optional ``split`` column is filtered by
``--split``. Other columns (``diagnosis``, notes, ...) are ignored.

Labels are either all integers (class indices; names from ``--classes`` or "0".."K-1") or
class names (sorted, or ``--classes`` order). The number of classes is taken from the
whole file, not the selected split, so a split that happens to lack a class still has
the model's full set of outputs. Paths may not be absolute, and a path whose real location
(``..`` and symbolic links resolved) leaves the CSV's folder is refused unless
``--follow-symlinks``: a manifest should not be able to make medaudit read files from
elsewhere on the machine. An image listed twice (under one label or two) is refused.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path, PurePosixPath, PureWindowsPath

from auditor import imaging
from auditor.errors import InputError
from auditor.interfaces import DataOptions, DataSource, Dataset
from plugins.data.common import (
    DataRoot,
    FileDataset,
    Sample,
    attach_rois,
    check_class_count,
    check_options,
    refuse_repeated_images,
    require_samples,
    segmentation_classes,
)

_INT = re.compile(r"^[+-]?\d+$")


def find_manifest(path: Path) -> Path | None:
    """``path`` itself when it is a CSV, else the only CSV directly inside the folder."""
    if path.is_file():
        return path if path.suffix.lower() == ".csv" else None
    if path.is_dir():
        found = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".csv" and not imaging.is_ignorable(p)]
        return found[0] if len(found) == 1 else None
    return None


def _read_rows(manifest: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    try:
        with manifest.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise InputError(f"CSV '{manifest.name}' is empty; it needs a header row such as image,label")
            columns = [c.strip().lower() for c in header]
            rows = []
            for line, values in enumerate(reader, start=2):
                if not any(v.strip() for v in values):
                    continue
                if len(values) != len(columns):
                    raise InputError(
                        f"line {line} of '{manifest.name}' has {len(values)} fields but the header has "
                        f"{len(columns)}; fix the row"
                    )
                rows.append((line, {c: v.strip() for c, v in zip(columns, values)}))
    except UnicodeDecodeError:
        raise InputError(f"CSV '{manifest.name}' is not UTF-8 text; save it as UTF-8") from None
    except csv.Error as exc:
        raise InputError(f"CSV '{manifest.name}' cannot be parsed ({exc}); fix the file") from None
    return columns, rows


def _safe_path(value: str, manifest: Path, line: int, column: str, inside: DataRoot) -> tuple[Path, str]:
    """Resolve a manifest path under the CSV's folder: absolute paths are refused, and so
    is any path whose real location (``..`` and symbolic links resolved) leaves the folder."""
    where = f"line {line} of '{manifest.name}'"
    if not value:
        raise InputError(f"{where}: the '{column}' cell is empty; give a path relative to the CSV")
    rel = value.replace("\\", "/")
    if PurePosixPath(rel).is_absolute() or PureWindowsPath(value).drive:
        raise InputError(
            f"{where}: {column} path '{value}' is outside the CSV's folder; "
            f"use a path relative to '{manifest.parent}'"
        )
    name = PurePosixPath(rel).as_posix()
    path = inside.check(manifest.parent / name, f"{where}: {column} path '{value}'")
    if not path.is_file():
        raise InputError(f"{where}: {column} file '{name}' does not exist under '{manifest.parent}'")
    if not imaging.is_image_file(path):
        raise InputError(f"{where}: '{name}' is not a supported image ({', '.join(imaging.IMAGE_SUFFIXES)})")
    return path, name


def _class_labels(
    rows: list[tuple[int, dict[str, str]]], manifest: Path, options: DataOptions
) -> tuple[dict[int, int], list[str]]:
    """Per-line class index and the class names, from every row of the file."""
    where = f"'{manifest.name}'"
    for line, row in rows:
        if not row["label"]:
            raise InputError(f"line {line} of {where}: the label is empty; give a class index or name")
    if all(_INT.match(row["label"]) for _, row in rows):
        values = {line: int(row["label"]) for line, row in rows}
        count = len(options.classes) if options.classes else max(values.values(), default=-1) + 1
        check_class_count(count, where)
        for line, value in values.items():
            if not 0 <= value < count:
                raise InputError(
                    f"line {line} of {where}: label {value} is outside 0..{count - 1}; "
                    f"fix the label or list every class with --classes"
                )
        names = list(options.classes) if options.classes else [str(i) for i in range(count)]
        return values, names
    names = list(options.classes) if options.classes else sorted({row["label"] for _, row in rows})
    index = {name: i for i, name in enumerate(names)}
    labels = {}
    for line, row in rows:
        if row["label"] not in index:
            raise InputError(
                f"line {line} of {where}: label '{row['label']}' is not one of --classes ({', '.join(names)})"
            )
        labels[line] = index[row["label"]]
    return labels, names


class CsvSource(DataSource):
    name = "csv"
    description = "CSV manifest image,label[,split] (or image,mask for segmentation), paths relative to the CSV"
    tasks = ("classification", "segmentation")

    def detect(self, path: Path, options: DataOptions) -> bool:
        """Claims a ``.csv`` file, or a folder with exactly one CSV at its top level."""
        return find_manifest(path) is not None

    def open(self, path: Path, options: DataOptions) -> Dataset:
        check_options(options, self.name, self.tasks)
        manifest = find_manifest(path)
        if manifest is None:
            raise InputError(f"'{path}' is not a CSV file or a folder with exactly one CSV; give the CSV's path")
        columns, rows = _read_rows(manifest)
        segmentation = options.task == "segmentation"
        needed = ["image", "mask"] if segmentation else ["image", "label"]
        missing = [c for c in needed if c not in columns]
        if missing:
            raise InputError(
                f"CSV '{manifest.name}' has no {', '.join(repr(c) for c in missing)} column "
                f"(columns: {', '.join(columns)}); {options.task} needs {','.join(needed)}"
            )
        if segmentation:
            labels: dict[int, int] = {line: 0 for line, _ in rows}
            class_names = segmentation_classes(options)
        else:
            labels, class_names = _class_labels(rows, manifest, options)
        rows = self._select_split(rows, columns, manifest, options)
        inside = DataRoot(manifest.parent, options, "CSV's folder")
        samples = []
        for line, row in rows:
            image, name = _safe_path(row["image"], manifest, line, "image", inside)
            mask = mask_name = roi = roi_name = None
            if segmentation:
                mask, mask_name = _safe_path(row["mask"], manifest, line, "mask", inside)
                if row.get("roi"):
                    roi, roi_name = _safe_path(row["roi"], manifest, line, "roi", inside)
            elif row.get("mask"):  # classification: the lesion mask (saliency inside the lesion)
                roi, roi_name = _safe_path(row["mask"], manifest, line, "mask", inside)
            samples.append(Sample(image, name, labels[line], mask, mask_name, roi, roi_name))
        require_samples(len(samples), str(manifest))
        refuse_repeated_images(samples, class_names, f"'{manifest.name}'")
        if options.roi is not None:
            roi_dir = Path(options.roi)  # named on the command line: its files stay inside it
            samples = attach_rois(samples, roi_dir, manifest.parent, DataRoot(roi_dir, options, "--roi folder"))
        return FileDataset(
            source=str(path), format=self.name, samples=samples, class_names=class_names, options=options,
            facts={"manifest": manifest.name},
        )

    @staticmethod
    def _select_split(
        rows: list[tuple[int, dict[str, str]]], columns: list[str], manifest: Path, options: DataOptions
    ) -> list[tuple[int, dict[str, str]]]:
        if options.split is None:
            return rows
        if "split" not in columns:
            raise InputError(f"CSV '{manifest.name}' has no 'split' column; drop --split or add the column")
        chosen = [(line, row) for line, row in rows if row["split"] == options.split]
        if not chosen:
            known = ", ".join(sorted({row["split"] for _, row in rows})) or "none"
            raise InputError(f"CSV '{manifest.name}' has no rows in split '{options.split}' (splits: {known})")
        return chosen
