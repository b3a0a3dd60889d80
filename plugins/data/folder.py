"""``folder``: a class-per-folder tree, ``root/<class>/<image>`` (torchvision's ImageFolder).

Class names are the sorted folder names, or ``--classes`` (then in that order, and the
folders must be exactly those). Files are listed, and their suffixes checked, when the data
set is opened, so a stray ``notes.txt`` fails before any model time is spent; decoding
errors surface at load time and name the file. Sub-folders inside a class folder are
searched too (many sets are organised by patient). With ``--split NAME`` the tree is
``root/NAME/<class>/<image>`` (the usual train/val/test layout). Linked folders and files
are followed only while their real paths stay inside the data folder (``--follow-symlinks``
lifts that), and a file reached twice, e.g. linked into a second class, is refused.
"""

from __future__ import annotations

import os
from pathlib import Path

from auditor import imaging
from auditor.errors import InputError
from auditor.interfaces import DataOptions, DataSource, Dataset
from plugins.data.common import (
    DataRoot,
    FileDataset,
    Sample,
    check_options,
    refuse_repeated_images,
    relative_name,
    require_samples,
)


def _split_root(path: Path, options: DataOptions) -> Path:
    return path / options.split if options.split else path


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not imaging.is_ignorable(p))


def _has_manifest(root: Path) -> bool:
    """A CSV at the top means the folder is described by a manifest, not by its tree."""
    return any(p.suffix.lower() == ".csv" and p.is_file() for p in root.iterdir())


def _images_in(folder: Path, root: Path, inside: DataRoot) -> list[Path]:
    """Every image under ``folder``, linked sub-folders included (each file's real path is
    then checked ``inside`` the root; a link back to a folder already walked is skipped)."""
    files = []
    walked: set[str] = set()
    for current, subfolders, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(current)
        if real in walked:
            subfolders[:] = []
            continue
        walked.add(real)
        subfolders[:] = sorted(d for d in subfolders if not imaging.is_ignorable(Path(d)))
        for filename in sorted(filenames):
            path = Path(current) / filename
            if imaging.is_ignorable(path) or not path.is_file():
                continue
            inside.check(path, f"'{relative_name(path, root)}'")
            if not imaging.is_image_file(path):
                raise InputError(
                    f"'{relative_name(path, root)}' is not a supported image "
                    f"({', '.join(imaging.IMAGE_SUFFIXES)}); move it out of the class folder"
                )
            files.append(path)
    return sorted(files)


class FolderSource(DataSource):
    name = "folder"
    description = "class-per-folder tree: root/<class>/*.png|jpg|bmp|tif|dcm"
    tasks = ("classification",)

    def detect(self, path: Path, options: DataOptions) -> bool:
        """Claims a folder with two or more sub-folders holding images and no CSV manifest.
        (A one-class tree is readable too, but only by naming the format explicitly.)"""
        path = _split_root(path, options)
        if options.task != "classification" or not path.is_dir() or _has_manifest(path):
            return False
        with_images = 0
        for folder in _class_dirs(path):
            if any(imaging.is_image_file(p) for p in folder.iterdir() if p.is_file()):
                with_images += 1
        return with_images >= 2

    def open(self, path: Path, options: DataOptions) -> Dataset:
        check_options(options, self.name, self.tasks)
        if not path.is_dir():
            raise InputError(f"'{path}' is not a folder; the folder format needs root/<class>/<images>")
        source = str(path)
        inside = DataRoot(path, options)
        if options.split:
            if not (path / options.split).is_dir():
                splits = ", ".join(p.name for p in _class_dirs(path)) or "none"
                raise InputError(f"'{path}' has no '{options.split}' sub-folder for --split (found: {splits})")
            path = path / options.split
        folders = {p.name: p for p in _class_dirs(path)}
        if options.classes:
            names = list(options.classes)
            if sorted(names) != sorted(folders):
                raise InputError(
                    f"class folders in '{path}' ({', '.join(sorted(folders)) or 'none'}) do not match "
                    f"--classes ({', '.join(names)}); name every class folder exactly once"
                )
        else:
            names = sorted(folders)
        samples = [
            Sample(image=file, name=relative_name(file, path), label=label)
            for label, class_name in enumerate(names)
            for file in _images_in(folders[class_name], path, inside)
        ]
        samples.sort(key=lambda s: s.name)
        require_samples(len(samples), str(path))
        refuse_repeated_images(samples, names, str(path))
        return FileDataset(source=source, format=self.name, samples=samples, class_names=names, options=options)
