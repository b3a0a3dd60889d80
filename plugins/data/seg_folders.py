"""``seg-folders``: segmentation images and masks in sibling folders, paired by file stem.

Layout: ``root/images/`` plus a mask folder (``masks/``, ``vessels/``, ``labels/``, ...,
or the one named by the ``mask_dir`` option) and optionally a region-of-interest folder
(``--roi``, or ``fov/`` / ``roi/`` next to ``images/``, as DRIVE ships its field-of-view
masks). With ``--split NAME`` the layout may sit under ``root/NAME/``. Masks are binarised
(> 0) for two classes or mapped with ``mask_values`` (see
:func:`auditor.imaging.mask_to_classes`). Images, masks and ROIs must really lie inside the
data folder (or the folder named by ``mask_dir`` / ``--roi``) unless ``--follow-symlinks``.
"""

from __future__ import annotations

from pathlib import Path

from auditor.errors import InputError
from auditor.interfaces import DataOptions, DataSource, Dataset
from plugins.data.common import (
    DataRoot,
    FileDataset,
    Sample,
    attach_rois,
    check_options,
    match_by_stem,
    refuse_repeated_images,
    relative_name,
    require_samples,
    segmentation_classes,
)

IMAGE_DIR = "images"
MASK_DIRS: tuple[str, ...] = (
    "masks", "mask", "vessels", "labels", "label", "manual", "annotations", "groundtruth", "ground_truth", "gt"
)
ROI_DIRS: tuple[str, ...] = ("fov", "roi")


def _root(path: Path, options: DataOptions) -> Path:
    if options.split and (path / options.split / IMAGE_DIR).is_dir():
        return path / options.split
    return path


def _subdir(root: Path, names: tuple[str, ...]) -> Path | None:
    """First folder in ``root`` whose name (any case) is in ``names``, in ``names`` order."""
    if not root.is_dir():
        return None
    present = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    return next((present[n] for n in names if n in present), None)


def _mask_dir(root: Path, options: DataOptions) -> Path | None:
    explicit = options.extra.get("mask_dir")
    if explicit:
        folder = Path(explicit)
        return folder if folder.is_absolute() else root / folder
    return _subdir(root, MASK_DIRS)


class SegFoldersSource(DataSource):
    name = "seg-folders"
    description = "segmentation: root/images/ + root/masks|vessels|labels/ (+ fov/ ROI), paired by file name"
    tasks = ("segmentation",)

    def detect(self, path: Path, options: DataOptions) -> bool:
        """Claims, for segmentation only, a folder with ``images/`` and a mask folder and no CSV."""
        if options.task != "segmentation":
            return False
        root = _root(path, options)
        if not (root / IMAGE_DIR).is_dir() or any(p.suffix.lower() == ".csv" for p in root.iterdir()):
            return False
        mask_dir = _mask_dir(root, options)
        return mask_dir is not None and mask_dir.is_dir()

    def open(self, path: Path, options: DataOptions) -> Dataset:
        check_options(options, self.name, self.tasks)
        root = _root(path, options)
        if options.split and root == path:
            raise InputError(f"'{path}' has no '{options.split}/{IMAGE_DIR}' folder for --split; drop --split or fix it")
        image_dir = root / IMAGE_DIR
        if not image_dir.is_dir():
            raise InputError(f"'{root}' has no '{IMAGE_DIR}/' folder; seg-folders needs root/images and root/masks")
        mask_dir = _mask_dir(root, options)
        if mask_dir is None or not mask_dir.is_dir():
            wanted = options.extra.get("mask_dir") or "/".join(MASK_DIRS[:3])
            raise InputError(f"'{root}' has no mask folder ({wanted}/); add one or name it with the mask_dir option")
        inside = DataRoot(root, options)
        # A mask or ROI folder named on the command line is the user's own choice of
        # place, so its files need only stay inside it; found ones stay inside the root.
        explicit_masks = bool(options.extra.get("mask_dir"))
        images = match_by_stem(image_dir, root, "image", inside)
        masks = match_by_stem(mask_dir, root, "mask", DataRoot(mask_dir, options) if explicit_masks else inside)
        samples = []
        for stem, image in sorted(images.items()):
            mask = masks.get(stem)
            if mask is None:
                raise InputError(
                    f"no mask for image '{relative_name(image, root)}' in '{relative_name(mask_dir, root)}/' "
                    f"(masks are paired by file name); add it or remove the image"
                )
            samples.append(Sample(image, relative_name(image, root), 0, mask, relative_name(mask, root)))
        require_samples(len(samples), str(image_dir))
        roi_dir = Path(options.roi) if options.roi is not None else _subdir(root, ROI_DIRS)
        roi_inside = DataRoot(roi_dir, options) if options.roi is not None and roi_dir is not None else inside
        samples = attach_rois(samples, roi_dir, root, roi_inside)
        refuse_repeated_images(samples, (), str(image_dir))
        facts = {"mask_dir": relative_name(mask_dir, root), "roi_dir": relative_name(roi_dir, root) if roi_dir else None}
        return FileDataset(
            source=str(path), format=self.name, samples=samples, class_names=segmentation_classes(options),
            options=options, facts=facts,
        )
