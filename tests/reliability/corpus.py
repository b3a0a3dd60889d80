"""The bad-input corpus: hostile and broken files and options, each with the exit code and
the one-line message ``medaudit run`` must answer with.

Every case builds its inputs under a fresh folder and returns the ``medaudit`` arguments.
``tests/reliability/test_bad_inputs.py`` runs each through the CLI and asserts the
contract; ``tests/reliability/corpus_table.py`` prints what was observed (the table in the
issue's closing note).
"""

from __future__ import annotations

import errno
import os
import shutil
import struct
import subprocess
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from unittest import mock

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from tests.reliability.models import write_all

SIZE = 16  # pixels; every good image is SIZE x SIZE RGB
CLASSES = ("benign", "melanoma")  # the dermoscopy preset's positive class is melanoma


# --------------------------------------------------------------------------- inputs
def rgb(seed: int, size: int = SIZE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def write_png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)
    return path


def write_tiff(path: Path, array: np.ndarray) -> Path:
    import tifffile

    path.parent.mkdir(parents=True, exist_ok=True)
    rgb_samples = array.ndim == 3 and array.shape[-1] == 3
    tifffile.imwrite(path, array, photometric="rgb" if rgb_samples else None)
    return path


def class_folders(root: Path, per_class: int = 2, write: Callable[[Path, int], Path] | None = None) -> Path:
    """root/benign/*.png, root/melanoma/*.png; ``write(path_without_suffix, seed)`` overrides the files."""
    for label, name in enumerate(CLASSES):
        for i in range(per_class):
            seed = 10 * label + i
            stem = root / name / f"img_{i}"
            stem.parent.mkdir(parents=True, exist_ok=True)
            if write is None:
                write_png(stem.with_suffix(".png"), rgb(seed))
            else:
                write(stem, seed)
    return root


def png_bomb(path: Path, width: int, height: int) -> Path:
    """A valid 1-bit greyscale PNG of ``width`` x ``height`` zeros: a few kB on disk, and
    far more pixels than PIL's decompression-bomb limit once decoded."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def manifest(root: Path, text: str, images: dict[str, np.ndarray] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, array in (images or {"a.png": rgb(1), "b.png": rgb(2)}).items():
        write_png(root / name, array)
    path = root / "labels.csv"
    path.write_text(text, encoding="utf-8")
    return path


def npz(path: Path, **arrays: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def npz_images(n: int = 4) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, SIZE, SIZE), dtype=np.uint8)


# ---------------------------------------------------------------------------- cases
@dataclass
class Ctx:
    """What a case builder gets: a fresh folder, the model files, cleanups to register."""

    tmp: Path
    models: dict[str, Path]
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    @property
    def out(self) -> Path:
        return self.tmp / "out"

    def data(self) -> Path:
        return class_folders(self.tmp / "data")

    def args(self, model: Path | str, data: Path | str, *extra: str, input_size: str | None = str(SIZE)) -> list[str]:
        size = ["--input-size", input_size] if input_size is not None else []
        return ["run", str(model), "--data", str(data), "--out", str(self.out), *size, "--budget", "quick",
                "--attacks", "fgsm", "--eps", "2", "--skip-checks", "--quiet", *extra]

    def ok(self, *extra: str) -> list[str]:
        """The good tiny model on good data, plus ``extra`` options."""
        return self.args(self.models["tiny"], self.data(), *extra)

    def model(self, name: str) -> list[str]:
        """A broken model on 6 images: the clean pass's batch differs from the probe's 4."""
        return self.args(self.models[name], class_folders(self.tmp / "data6", per_class=3))

    def folder_with(self, name: str, write: Callable[[Path], object], *extra: str, **kw: object) -> list[str]:
        """Good class folders plus one more file in melanoma/ written by ``write(path)``."""
        root = self.data()
        write(root / "melanoma" / name)
        return self.args(self.models["tiny"], root, *extra, **kw)  # type: ignore[arg-type]

    def csv(self, text: str, *extra: str, images: dict[str, np.ndarray] | None = None) -> list[str]:
        return self.args(self.models["tiny"], manifest(self.tmp / "csvdata", text, images), *extra)

    def npz(self, *extra: str, **arrays: np.ndarray) -> list[str]:
        return self.args(self.models["tiny"], npz(self.tmp / "set.npz", **arrays), *extra)


@dataclass(frozen=True)
class Case:
    id: str
    what: str
    build: Callable[[Ctx], list[str]]
    code: int
    fragment: str  # must appear in the one-line message (case-insensitive)


def _truncated_png(path: Path) -> None:
    full = write_png(path, rgb(5, 64)).read_bytes()
    path.write_bytes(full[: len(full) // 2])


def _truncated_jpeg(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb(6, 64)).save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _mount_full_tmpfs(ctx: Ctx) -> list[str]:
    """A 16 kB tmpfs as the output folder: room for the write test, not for results.json."""
    import pytest

    mount_point = ctx.tmp / "full"
    mount_point.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command here")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root/CAP_SYS_ADMIN): {done.stderr.strip()}")
    ctx.cleanups.append(lambda: subprocess.run(["umount", "-l", str(mount_point)], check=False))
    args = ctx.ok()
    args[args.index("--out") + 1] = str(mount_point / "out")
    return args


def _enospc_on_fsync(ctx: Ctx) -> list[str]:
    """The disk fills up under results.json: every fsync fails with ENOSPC."""

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    patch = mock.patch("auditor.results.os.fsync", no_space)
    patch.start()
    ctx.cleanups.append(patch.stop)
    return ctx.ok()


def _under_regular_file(ctx: Ctx) -> list[str]:
    blocker = ctx.tmp / "a-file"
    blocker.write_text("not a folder")
    args = ctx.ok()
    args[args.index("--out") + 1] = str(blocker / "out")
    return args


def _under_proc(ctx: Ctx) -> list[str]:
    args = ctx.ok()
    args[args.index("--out") + 1] = "/proc/medaudit-cannot-write-here/out"
    return args


def _malicious_pickle(ctx: Ctx) -> list[str]:
    import torch

    from tests.models.files import CreatesFile

    path = ctx.tmp / "evil.pt"
    torch.save(CreatesFile(ctx.tmp / "canary"), path)
    return ctx.args(path, ctx.data())


def _state_dict_without_arch(ctx: Ctx) -> list[str]:
    import torch

    from tests.models.tiny import make_seeded

    path = ctx.tmp / "weights.pth"
    torch.save(make_seeded().state_dict(), path)
    return ctx.args(path, ctx.data())


def _three_class_data(ctx: Ctx) -> list[str]:
    root = ctx.data()
    write_png(root / "nevus" / "n.png", rgb(8))
    return ctx.args(ctx.models["tiny"], root)


def _empty_class_folders(ctx: Ctx) -> list[str]:
    root = ctx.tmp / "empty"
    for name in CLASSES:
        (root / name).mkdir(parents=True)
    return ctx.args(ctx.models["tiny"], root)


def _empty_class_folders_named(ctx: Ctx) -> list[str]:
    return _empty_class_folders(ctx) + ["--data-format", "folder"]


def _object_labels(ctx: Ctx) -> list[str]:
    return ctx.npz(test_images=npz_images(2), test_labels=np.array([0, "melanoma"], dtype=object))


def _truncated_npz(ctx: Ctx) -> list[str]:
    path = npz(ctx.tmp / "set.npz", test_images=npz_images(), test_labels=np.array([0, 1, 0, 1]))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return ctx.args(ctx.models["tiny"], path)


def _npz_member_not_npy(ctx: Ctx) -> list[str]:
    path = ctx.tmp / "set.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("test_images.npy", b"definitely not an npy header")
        archive.writestr("test_labels.npy", b"nor this")
    return ctx.args(ctx.models["tiny"], path)


def _latin1_csv(ctx: Ctx) -> list[str]:
    args = ctx.csv("image,label\n")
    (ctx.tmp / "csvdata" / "labels.csv").write_bytes("image,label\nä.png,0\n".encode("latin-1"))
    return args


def _npz_images_not_npy(ctx: Ctx) -> list[str]:
    path = npz(ctx.tmp / "set.npz", test_images=npz_images(), test_labels=np.array([0, 1, 0, 1]))
    with zipfile.ZipFile(path) as archive:
        labels = archive.read("test_labels.npy")
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("test_images.npy", b"\x93NUMPY garbage header")
        archive.writestr("test_labels.npy", labels)
    return ctx.args(ctx.models["tiny"], path)


def _eps(value: str) -> Callable[[Ctx], list[str]]:
    def build(ctx: Ctx) -> list[str]:
        args = ctx.ok()
        args[args.index("--eps") + 1] = value
        return args

    return build


def _option(option: str, value: str) -> Callable[[Ctx], list[str]]:
    def build(ctx: Ctx) -> list[str]:
        args = ctx.ok()
        if option in args:
            args[args.index(option) + 1] = value
            return args
        return args + [option, value]

    return build


CASES: list[Case] = [
    # ---------------------------------------------------------------- images
    Case("truncated-png", "PNG cut in half", lambda c: c.folder_with("cut.png", _truncated_png),
         3, "cut.png' is truncated or corrupt"),
    Case("truncated-jpeg", "JPEG cut in half", lambda c: c.folder_with("cut.jpg", _truncated_jpeg),
         3, "cut.jpg' is truncated or corrupt"),
    Case("garbage-png", "random bytes named .png",
         lambda c: c.folder_with("noise.png", lambda p: p.write_bytes(os.urandom(64))), 3, "not a readable image"),
    Case("zero-byte-png", "0-byte .png", lambda c: c.folder_with("empty.png", lambda p: p.write_bytes(b"")),
         3, "zero-byte"),
    Case("zero-byte-tiff", "0-byte .tif", lambda c: c.folder_with("empty.tif", lambda p: p.write_bytes(b"")),
         3, "zero-byte"),
    Case("garbage-tiff", "random bytes named .tif",
         lambda c: c.folder_with("noise.tif", lambda p: p.write_bytes(b"II*\x00" + os.urandom(60))),
         3, "noise.tif"),
    Case("garbage-dicom", "text named .dcm",
         lambda c: c.folder_with("scan.dcm", lambda p: p.write_text("not dicom")), 3, "DICOM file 'melanoma/scan.dcm'"),
    Case("five-channel-tiff", "(H, W, 5) TIFF",
         lambda c: c.folder_with("five.tif", lambda p: write_tiff(p, np.zeros((SIZE, SIZE, 5), np.uint8))),
         3, "has shape (16, 16, 5)"),
    Case("multi-frame-tiff", "stack of 10 frames",
         lambda c: c.folder_with("stack.tif", lambda p: write_tiff(p, np.zeros((10, SIZE, SIZE), np.uint8))),
         3, "multi-frame"),
    Case("nan-float-tiff", "float32 TIFF holding NaN",
         lambda c: c.folder_with("nan.tif", lambda p: write_tiff(p, np.full((SIZE, SIZE), np.nan, np.float32))),
         3, "NaN or infinite pixel values"),
    Case("png-bomb-20000", "20000x20000 1-bit PNG (400 Mpx, 60 kB on disk)",
         lambda c: c.folder_with("bomb.png", lambda p: png_bomb(p, 20000, 20000)), 3, "decompression bomb"),
    Case("png-bomb-10000", "10000x10000 1-bit PNG (100 Mpx: PIL only warns)",
         lambda c: c.folder_with("bomb.png", lambda p: png_bomb(p, 10000, 10000)), 3, "decompression bomb"),
    Case("non-image-in-class-folder", "notes.txt beside the images",
         lambda c: c.folder_with("notes.txt", lambda p: p.write_text("hello")), 3, "'melanoma/notes.txt' is not a supported image"),
    Case("classes-do-not-match-folders", "--classes names a folder that is not there",
         lambda c: c.ok("--classes", "benign,nevus"), 3, "do not match --classes"),
    Case("more-classes-than-logits", "3 class folders, 2-logit model", _three_class_data, 3, "outside the model's 2 classes"),
    Case("empty-class-folders", "class folders without images", _empty_class_folders, 3, "data set is empty"),
    Case("empty-class-folders-named", "same, with --data-format folder", _empty_class_folders_named, 3, "data set is empty"),
    # ------------------------------------------------------------------- CSV
    Case("csv-label-out-of-range", "label 5 with two --classes",
         lambda c: c.csv("image,label\na.png,0\nb.png,5\n", "--classes", "benign,melanoma"), 3, "label 5 is outside 0..1"),
    Case("csv-label-not-a-class", "label name not in --classes",
         lambda c: c.csv("image,label\na.png,benign\nb.png,nevus\n", "--classes", "benign,melanoma"), 3, "'nevus' is not one of --classes"),
    Case("csv-huge-label", "label 999999999 and no --classes (a billion class names)",
         lambda c: c.csv("image,label\na.png,0\nb.png,999999999\n"), 3, "would mean 1000000000 classes"),
    Case("csv-missing-label-column", "no label column",
         lambda c: c.csv("image,diagnosis\na.png,0\nb.png,1\n"), 3, "no 'label' column"),
    Case("csv-missing-image-column", "no image column",
         lambda c: c.csv("file,label\na.png,0\nb.png,1\n"), 3, "no 'image' column"),
    Case("csv-path-escapes", "../ in a path",
         lambda c: c.csv("image,label\na.png,0\n../../etc/passwd.png,1\n"), 3, "outside the CSV's folder"),
    Case("csv-absolute-path", "absolute path",
         lambda c: c.csv("image,label\na.png,0\n/etc/passwd.png,1\n"), 3, "outside the CSV's folder"),
    Case("csv-missing-file", "row naming a file that is not there",
         lambda c: c.csv("image,label\na.png,0\nmissing.png,1\n"), 3, "'missing.png' does not exist"),
    Case("csv-ragged-row", "row with an extra field",
         lambda c: c.csv("image,label\na.png,0\nb.png,1,extra\n"), 3, "line 3"),
    Case("csv-empty-label", "empty label cell",
         lambda c: c.csv("image,label\na.png,0\nb.png,\n"), 3, "label is empty"),
    Case("csv-empty-file", "0-byte CSV", lambda c: c.csv(""), 3, "is empty"),
    Case("csv-not-utf8", "Latin-1 bytes", _latin1_csv, 3, "not UTF-8"),
    Case("csv-unknown-split", "--split that no row has",
         lambda c: c.csv("image,label,split\na.png,0,test\nb.png,1,test\n", "--split", "val"), 3, "no rows in split 'val'"),
    # ------------------------------------------------------------------- npz
    Case("npz-missing-keys", "train_* arrays only (split test is the default)",
         lambda c: c.npz(train_images=npz_images(), train_labels=np.array([0, 1, 0, 1])), 3, "has no 'test_images'/'test_labels'"),
    Case("npz-count-mismatch", "4 images, 3 labels",
         lambda c: c.npz(test_images=npz_images(), test_labels=np.array([0, 1, 0])), 3, "the counts must match"),
    Case("npz-label-out-of-range", "label 5 with two --classes",
         lambda c: c.npz("--classes", "benign,melanoma", test_images=npz_images(), test_labels=np.array([0, 1, 0, 5])),
         3, "labels 0..5 but there are 2 classes"),
    Case("npz-huge-label", "label 2**40 and no --classes",
         lambda c: c.npz(test_images=npz_images(), test_labels=np.array([0, 1, 0, 2**40])), 3, "more than 100000"),
    Case("npz-multilabel", "(N, 3) labels", lambda c: c.npz(test_images=npz_images(), test_labels=np.eye(4, 3, dtype=np.int64)),
         3, "multi-label"),
    Case("npz-object-labels", "pickled object array (allow_pickle=False)", _object_labels, 3, "holds pickled Python objects"),
    Case("npz-5d-images", "(N, 1, H, W, 1) images",
         lambda c: c.npz(test_images=np.zeros((4, 1, SIZE, SIZE, 1), np.uint8), test_labels=np.array([0, 1, 0, 1])),
         3, "expected (N, H, W)"),
    Case("npz-truncated", "zip cut in half", _truncated_npz, 3, "not a readable .npz"),
    Case("npz-garbage-member", "zip whose members are not .npy", _npz_member_not_npy, 3, "'test_labels' in 'set.npz' is not a NumPy .npy array"),
    Case("npz-garbage-images", "labels fine, images member not .npy", _npz_images_not_npy, 3,
         "'test_images' in 'set.npz' is not a NumPy .npy array"),
    Case("npz-not-a-zip", "text named .npz",
         lambda c: c.args(c.models["tiny"], (lambda p: (p.write_text("hello"), p)[1])(c.tmp / "x.npz")), 3, "not a readable .npz"),
    # ----------------------------------------------------------------- model
    Case("malicious-pickle", "torch.save of an object whose unpickling opens a file", _malicious_pickle, 3, "--trust-model"),
    Case("state-dict-without-arch", "weights only, no --arch", _state_dict_without_arch, 3, "--arch"),
    Case("model-is-a-directory", "a folder given as the model", lambda c: c.args(c.tmp, c.data()), 3, "is not a file"),
    Case("model-missing", "no such file", lambda c: c.args(c.tmp / "nope.pt", c.data()), 2, "does not exist"),
    Case("model-garbage", "random bytes named .pt",
         lambda c: c.args((lambda p: (p.write_bytes(os.urandom(256)), p)[1])(c.tmp / "junk.pt"), c.data()), 3, "model format"),
    Case("model-garbage-onnx", "text named .onnx",
         lambda c: c.args((lambda p: (p.write_text("nope"), p)[1])(c.tmp / "junk.onnx"), c.data()), 3, "as ONNX"),
    Case("model-nan-always", "NaN logits on every input", lambda c: c.model("nan-always"), 3, "NaN or Inf on random inputs"),
    Case("model-nan-on-data", "NaN only on the data's batches", lambda c: c.model("nan-on-data"), 3, "NaN or Inf logits"),
    Case("model-inf-on-data", "Inf only on the data's batches", lambda c: c.model("inf-on-data"), 3, "NaN or Inf logits"),
    Case("model-wrong-shape", "(N, K, 5) output", lambda c: c.model("wrong-shape"), 3, "returned shape (4, 2, 5)"),
    Case("model-flat-output", "(N*K,) output", lambda c: c.model("flat-output"), 3, "returned shape (8,)"),
    Case("model-wrong-batch-on-data", "1 row of logits for a batch of 4+", lambda c: c.model("wrong-batch-on-data"),
         3, "returned shape (1, 2) for a batch of 6"),
    Case("model-raises-on-data", "raises on the data's batches", lambda c: c.model("raises-on-data"),
         3, "this model only handles batches of 4"),
    Case("model-raises-in-attack", "raises in an attack's gradient pass", lambda c: c.model("raises-in-attack"),
         3, "gradients through this model are not supported on a batch of shape (3, 3, 16, 16)"),
    Case("model-without-gradient", "logits from a detached input", lambda c: c.model("no-gradient"),
         3, "no gradient with respect to its input"),
    Case("model-probabilities", "softmax at the end", lambda c: c.model("probabilities"), 3, "--allow-probabilities"),
    Case("model-wants-1-channel", "1-channel model, --channels 3",
         lambda c: c.args(c.models["tiny-1ch"], c.data(), "--channels", "3"), 3, "expects 1 channels"),
    # ---------------------------------------------------------------- output
    Case("out-under-a-file", "--out below a regular file", _under_regular_file, 3, "cannot create output folder"),
    Case("out-under-proc", "--out in /proc", _under_proc, 3, "cannot create output folder"),
    Case("out-full-tmpfs", "--out on a 16 kB tmpfs", _mount_full_tmpfs, 3, "No space left on device"),
    Case("out-enospc", "ENOSPC from fsync while writing results.json", _enospc_on_fsync, 3, "No space left on device"),
    # --------------------------------------------------------------- options
    Case("eps-not-a-number", "--eps 2,abc", _eps("2,abc"), 2, "'abc' is not a number"),
    Case("eps-negative", "--eps -2", _eps("-2"), 2, "must be a positive number"),
    Case("eps-zero", "--eps 0", _eps("0"), 2, "must be a positive number"),
    Case("eps-nan", "--eps nan", _eps("nan"), 2, "must be a positive number"),
    Case("eps-too-large", "--eps 300", _eps("300"), 2, "larger than the whole [0,1] range"),
    Case("eps-empty", "--eps ,", _eps(","), 2, "at least one value"),
    Case("input-size-zero", "--input-size 0", _option("--input-size", "0"), 2, "--input-size"),
    Case("input-size-junk", "--input-size abc", _option("--input-size", "abc"), 2, "is not a size"),
    Case("input-size-3d", "--input-size 10x20x30", _option("--input-size", "10x20x30"), 2, "--input-size"),
    Case("input-size-huge", "--input-size 99999", _option("--input-size", "99999"), 2, "between 1 and 8192"),
    Case("limit-zero", "--limit 0", _option("--limit", "0"), 2, "--limit must be at least 1"),
    Case("limit-negative", "--limit -3", _option("--limit", "-3"), 2, "--limit must be at least 1"),
    Case("limit-not-a-number", "--limit abc", _option("--limit", "abc"), 2, "Invalid value for '--limit'"),
    Case("batch-size-zero", "--batch-size 0", _option("--batch-size", "0"), 2, "--batch-size must be at least 1"),
    Case("unknown-data-format", "--data-format nosuch", _option("--data-format", "nosuch"), 2, "nosuch"),
    Case("data-format-mismatch", "--data-format npz for class folders", _option("--data-format", "npz"), 3, "is not a file"),
    Case("data-missing", "--data that does not exist",
         lambda c: c.args(c.models["tiny"], c.tmp / "nowhere"), 2, "does not exist"),
    Case("missing-data-option", "no --data at all",
         lambda c: ["run", str(c.models["tiny"]), "--out", str(c.out), "--quiet"], 2, "Missing option '--data'"),
    Case("unknown-option", "--frobnicate", lambda c: c.ok("--frobnicate"), 2, "No such option: --frobnicate"),
    Case("unknown-device", "--device tpu", _option("--device", "tpu"), 2, "'tpu' is not auto, cpu"),
]


# ---------------------------------------------------------------------------- runner
@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str

    @property
    def stderr_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def invoke(args: list[str]) -> Outcome:
    """``medaudit ARGS`` in-process. Python warnings are added to stderr as a user would see
    them (pytest would otherwise swallow them), and so is an escaped exception's traceback."""
    import traceback
    import warnings

    from auditor.cli import app

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for hidden in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", hidden)  # what Python hides by default
        result = CliRunner().invoke(app, args)
    stderr = "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno) for w in caught)
    stderr += result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return Outcome(result.exit_code, result.stdout, stderr)


def run_case(case: Case, tmp: Path, models: dict[str, Path]) -> Outcome:
    ctx = Ctx(tmp, models)
    try:
        return invoke(case.build(ctx))
    finally:
        for cleanup in reversed(ctx.cleanups):
            cleanup()


def make_models(folder: Path) -> dict[str, Path]:
    return write_all(folder)
