"""Data folders that reach outside themselves (issue 12, item 7).

A data set is often someone else's folder. A class folder or sub-folder that is a symbolic
link, or a manifest path with ``..``, would have medaudit read, fingerprint and show in its
report files from anywhere on the machine: each is refused (InputError, exit 3, naming the
entry) unless ``--follow-symlinks``. An image listed twice, under one label or two, is
refused too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from auditor.datasets import open_dataset
from auditor.errors import InputError
from auditor.interfaces import DataOptions
from auditor.registry import Registry
from tests.data.conftest import write_image

OUTSIDE = r"is outside the (data folder|CSV's folder) \(it resolves to .* through a symbolic link or '\.\.'\)"
FOLLOW = DataOptions(follow_symlinks=True)
SEG = DataOptions(task="segmentation")
SEG_FOLLOW = DataOptions(task="segmentation", follow_symlinks=True)


@pytest.fixture
def private(tmp_path: Path, make_image: Callable[..., Path]) -> Path:
    """Images that are not part of any data set (another patient's scans, say)."""
    make_image(tmp_path / "private" / "scan_1.png", 200)
    make_image(tmp_path / "private" / "scan_2.png", 210)
    return tmp_path / "private"


@pytest.fixture
def tree(tmp_path: Path, make_image: Callable[..., Path]) -> Path:
    """data/benign/b1.png and data/melanoma/m1.png."""
    make_image(tmp_path / "data" / "benign" / "b1.png", 10)
    make_image(tmp_path / "data" / "melanoma" / "m1.png", 20)
    return tmp_path / "data"


# ----------------------------------------------------------------- class folders
def test_a_class_folder_linked_outside_the_root(
    registry: Registry, tmp_path: Path, private: Path, make_image: Callable[..., Path]
) -> None:
    root = tmp_path / "data"
    make_image(root / "benign" / "b1.png", 10)
    make_image(root / "benign" / "b2.png", 20)
    (root / "melanoma").symlink_to(private, target_is_directory=True)
    with pytest.raises(InputError, match=r"^'melanoma/scan_1\.png' " + OUTSIDE):
        open_dataset(registry, root, DataOptions())
    followed = open_dataset(registry, root, FOLLOW)
    assert followed.ids() == ["benign/b1.png", "benign/b2.png", "melanoma/scan_1.png", "melanoma/scan_2.png"]
    assert followed.class_names == ["benign", "melanoma"]


@pytest.mark.parametrize("suffix", [".png", ".dcm"])
def test_a_linked_file_or_sub_folder_inside_a_class(registry: Registry, tree: Path, private: Path, suffix: str) -> None:
    root = tree
    (private / f"secret{suffix}").write_bytes(b"not ours")
    (root / "melanoma" / f"m2{suffix}").symlink_to(private / f"secret{suffix}")
    with pytest.raises(InputError, match=rf"^'melanoma/m2\{suffix}' " + OUTSIDE):
        open_dataset(registry, root, DataOptions())
    (root / "melanoma" / f"m2{suffix}").unlink()
    (root / "melanoma" / "patient_7").symlink_to(private, target_is_directory=True)
    with pytest.raises(InputError, match=r"^'melanoma/patient_7/scan_1\.png' " + OUTSIDE):
        open_dataset(registry, root, DataOptions())
    assert "melanoma/patient_7/scan_2.png" in open_dataset(registry, root, FOLLOW).ids()


def test_a_file_linked_into_a_second_class_is_refused(registry: Registry, tree: Path) -> None:
    root = tree
    (root / "melanoma" / "also_b1.png").symlink_to(root / "benign" / "b1.png")
    message = r"image 'melanoma/also_b1\.png' \(also as 'benign/b1\.png'\) is listed under two labels, 'benign' and 'melanoma'"
    for options in (DataOptions(), FOLLOW):  # inside the root, so following links does not excuse it
        with pytest.raises(InputError, match=message):
            open_dataset(registry, root, options)


def test_a_link_back_up_the_tree_does_not_loop(registry: Registry, tree: Path) -> None:
    root = tree
    (root / "melanoma" / "loop").symlink_to(root / "melanoma", target_is_directory=True)
    assert open_dataset(registry, root, DataOptions()).ids() == ["benign/b1.png", "melanoma/m1.png"]


# ------------------------------------------------------------------ CSV manifests
def _manifest(folder: Path, rows: str, make_image: Callable[..., Path]) -> Path:
    make_image(folder / "a.png", 10)
    make_image(folder / "b.png", 20)
    (folder / "sub").mkdir(exist_ok=True)
    path = folder / "labels.csv"
    path.write_text("image,label\na.png,benign\nb.png,melanoma\n" + rows)
    return path


@pytest.mark.parametrize("row", ["sub/../../private/scan_1.png", "linked/scan_1.png"])
def test_a_manifest_path_that_climbs_or_links_out(
    registry: Registry, tmp_path: Path, private: Path, make_image: Callable[..., Path], row: str
) -> None:
    csv = _manifest(tmp_path / "set", f"{row},melanoma\n", make_image)
    (tmp_path / "set" / "linked").symlink_to(private, target_is_directory=True)
    where = re.escape(f"line 4 of 'labels.csv': image path '{row}' ")
    with pytest.raises(InputError, match="^" + where + OUTSIDE):
        open_dataset(registry, csv, DataOptions())
    followed = open_dataset(registry, csv, FOLLOW)
    assert row in followed.ids()
    assert followed.load([followed.ids().index(row)]).images.shape == (1, 3, 8, 10)


def test_dot_dot_that_stays_inside_is_read(registry: Registry, tmp_path: Path, make_image: Callable[..., Path]) -> None:
    make_image(tmp_path / "set" / "sub" / "c.png", 30)
    csv = _manifest(tmp_path / "set", "sub/../sub/c.png,benign\n", make_image)
    assert "sub/../sub/c.png" in open_dataset(registry, csv, DataOptions()).ids()


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("a.png,melanoma", r"image 'a\.png' is listed under two labels, 'benign' and 'melanoma'"),
        ("sub/../a.png,melanoma", r"image 'sub/\.\./a\.png' \(also as 'a\.png'\) is listed under two labels, 'benign' and 'melanoma'"),
        ("a.png,benign", r"image 'a\.png' is listed twice; keep one entry per image"),
    ],
)
def test_an_image_listed_twice_is_refused(
    registry: Registry, tmp_path: Path, make_image: Callable[..., Path], row: str, message: str
) -> None:
    csv = _manifest(tmp_path / "set", row + "\n", make_image)
    with pytest.raises(InputError, match=r"^'labels\.csv': " + message):
        open_dataset(registry, csv, DataOptions())


def test_a_segmentation_manifest_mask_linked_out(
    registry: Registry, tmp_path: Path, private: Path, write_array: Callable[..., Path]
) -> None:
    folder = tmp_path / "seg"
    write_array(folder / "img.png", np.zeros((8, 10), np.uint8))
    (folder / "masks").symlink_to(private, target_is_directory=True)
    (folder / "m.csv").write_text("image,mask\nimg.png,masks/scan_1.png\n")
    with pytest.raises(InputError, match=r"^line 2 of 'm\.csv': mask path 'masks/scan_1\.png' " + OUTSIDE):
        open_dataset(registry, folder / "m.csv", SEG)
    assert len(open_dataset(registry, folder / "m.csv", SEG_FOLLOW)) == 1


# ------------------------------------------------------------------- seg-folders
def _seg_root(root: Path) -> Path:
    for stem in ("x", "y"):
        write_image(root / "images" / f"{stem}.png", np.full((8, 10), 100, np.uint8))
        write_image(root / "masks" / f"{stem}.png", np.zeros((8, 10), np.uint8))
    return root


@pytest.mark.parametrize("what", ["mask folder", "image file", "roi folder"])
def test_seg_folders_that_link_out(registry: Registry, tmp_path: Path, what: str) -> None:
    root = _seg_root(tmp_path / "seg")
    outside = _seg_root(tmp_path / "elsewhere")
    if what == "mask folder":
        for mask in (root / "masks").iterdir():
            mask.unlink()
        (root / "masks").rmdir()
        (root / "masks").symlink_to(outside / "masks", target_is_directory=True)
        entry = "mask 'masks/x.png'"
    elif what == "image file":
        (root / "images" / "y.png").unlink()
        (root / "images" / "y.png").symlink_to(outside / "images" / "y.png")
        entry = "image 'images/y.png'"
    else:
        (root / "fov").symlink_to(outside / "masks", target_is_directory=True)
        entry = "ROI mask 'fov/x.png'"
    with pytest.raises(InputError, match="^" + re.escape(entry) + " " + OUTSIDE):
        open_dataset(registry, root, SEG)
    assert len(open_dataset(registry, root, SEG_FOLLOW)) == 2


def test_the_same_image_twice_in_seg_folders(registry: Registry, tmp_path: Path) -> None:
    root = _seg_root(tmp_path / "seg")
    (root / "images" / "y.png").unlink()
    (root / "images" / "y.png").symlink_to(root / "images" / "x.png")
    with pytest.raises(InputError, match=r"image 'images/y\.png' \(also as 'images/x\.png'\) is listed twice"):
        open_dataset(registry, root, SEG)


# ----------------------------------------------------------------- command line
def test_medaudit_run_refuses_then_follows(tmp_path: Path, private: Path) -> None:
    from tests.reliability.corpus import Ctx, class_folders, invoke
    from tests.reliability.models import Tiny, save

    model = save(Tiny(), tmp_path / "tiny.pt")
    root = class_folders(tmp_path / "data")
    (root / "melanoma" / "img_1.png").unlink()
    (root / "melanoma" / "img_1.png").symlink_to(private / "scan_1.png")
    ctx = Ctx(tmp_path, {"tiny": model})
    refused = invoke([*ctx.args(model, root), "--report-format", "none"])
    assert refused.code == 3, refused.stderr
    assert len(refused.stderr_lines) == 1 and "'melanoma/img_1.png' is outside the data folder" in refused.stderr
    assert "--follow-symlinks" in refused.stderr
    followed = invoke([*ctx.args(model, root), "--report-format", "none", "--follow-symlinks"])
    assert followed.code == 0, followed.stderr



def test_medaudit_harden_refuses_then_follows(tmp_path: Path, private: Path) -> None:
    from tests.reliability.corpus import class_folders, invoke
    from tests.reliability.models import Tiny, save

    model = save(Tiny(), tmp_path / "tiny.pt")
    root = class_folders(tmp_path / "data", per_class=10)  # enough for harden's held-out tenth
    (root / "melanoma" / "img_9.png").unlink()
    (root / "melanoma" / "img_9.png").symlink_to(private / "scan_1.png")
    args = ["harden", str(model), "--data", str(root), "--out", str(tmp_path / "hard.pt"), "--epochs", "1",
            "--steps", "1", "--eval-steps", "1", "--input-size", "16", "--device", "cpu", "--quiet"]
    refused = invoke(args)
    assert refused.code == 3, refused.stderr
    assert "'melanoma/img_9.png' is outside the data folder" in refused.stderr
    assert not (tmp_path / "hard.pt").exists()
    followed = invoke([*args, "--follow-symlinks"])
    assert followed.code == 0, followed.stderr
    assert (tmp_path / "hard.pt").exists()
