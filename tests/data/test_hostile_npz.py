"""Hostile ``.npz`` archives (issue 12, item 12b): every one is a one-line InputError
(exit 3), never an unexpected error (exit 4), a huge allocation or an unpickled object.

The arrays' headers are the file's own claims, so several cases write raw ``.npy`` headers
that lie about the shape or the type of what follows.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from auditor.datasets import open_dataset
from auditor.errors import InputError
from auditor.interfaces import DataOptions
from auditor.registry import Registry

IMAGES = np.random.default_rng(0).integers(0, 256, (4, 6, 6), dtype=np.uint8)
LABELS = np.array([0, 1, 0, 1])


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _lying_npy(descr: str, shape: tuple[int, ...], payload: bytes = b"\0" * 64) -> bytes:
    """A ``.npy`` member whose header claims ``shape`` of ``descr`` over ``payload``."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue() + payload


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


CASES: dict[str, tuple[dict[str, bytes], str]] = {
    "string labels": ({"test_labels.npy": _npy(np.array(["benign", "melanoma", "benign", "melanoma"]))},
                      r"'test_labels' in 'set\.npz' holds <U8 values, not numbers; store integer class indices"),
    "byte-string labels": ({"test_labels.npy": _npy(np.array([b"a", b"b", b"a", b"b"]))}, r"holds \|S1 values"),
    "complex labels": ({"test_labels.npy": _npy(LABELS.astype(complex))}, r"holds complex128 values"),
    "date labels": ({"test_labels.npy": _npy(np.zeros(4, "datetime64[D]"))}, r"holds datetime64\[D\] values"),
    "record labels": ({"test_labels.npy": _npy(np.zeros(4, [("a", "i4"), ("b", "f4")]))}, r"not numbers"),
    "NaN labels": ({"test_labels.npy": _npy(np.array([0, np.nan, 0, 1]))}, r"holds non-integer labels"),
    "infinite labels": ({"test_labels.npy": _npy(np.array([0, np.inf, 0, 1]))}, r"holds non-integer labels"),
    "negative labels": ({"test_labels.npy": _npy(np.array([0, -1, 0, 1]))},
                        r"'test_labels' in 'set\.npz' holds the negative label -1; labels are class indices"),
    "float label 1e30": ({"test_labels.npy": _npy(np.array([0, 1e30, 0, 1]))}, r"more than 100000"),
    "scalar labels": ({"test_labels.npy": _npy(np.array(3))}, r"has shape \(\); only single-label"),
    "(N, 1, 1) labels": ({"test_labels.npy": _npy(np.zeros((4, 1, 1), int))}, r"has shape \(4, 1, 1\)"),
    "string images": ({"test_images.npy": _npy(np.full((4, 6, 6), "x"))},
                      r"'test_images' in 'set\.npz' holds <U1 values, not numbers; store pixel values"),
    "complex images": ({"test_images.npy": _npy(IMAGES.astype(complex))}, r"holds complex128 values"),
    "record images": ({"test_images.npy": _npy(np.zeros((4, 6, 6), [("a", "u1")]))}, r"not numbers"),
    "Fortran images": ({"test_images.npy": _npy(np.asfortranarray(IMAGES.astype(np.float32)))}, r"Fortran"),
    "zero-height images": ({"test_images.npy": _npy(np.zeros((4, 0, 6), np.uint8))}, r"has shape \(4, 0, 6\)"),
    "a terabyte header": ({"test_images.npy": _lying_npy("|u1", (4, 10**6, 10**6))},
                          r"declares shape \(4, 1000000, 1000000\) of uint8 \(4000000000000 bytes\) but holds 64 bytes"),
    "a header past int64": ({"test_images.npy": _lying_npy("<f8", (4, 2**40, 2**40))}, r"declares shape"),
    "a label header of 10**13": ({"test_labels.npy": _lying_npy("<i8", (10**13,))}, r"declares shape \(10000000000000,\)"),
    "a negative dimension": ({"test_images.npy": _lying_npy("|u1", (4, -6, 6), b"\0" * 144)}, r"impossible shape"),
    "a decompression bomb": ({"test_images.npy": _npy(np.zeros((1, 12_000, 12_000), np.uint8))},
                             r"image 'set\.npz:test_images' is too large \(144000000 pixels\)"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_npz_is_a_clean_input_error(registry: Registry, tmp_path: Path, case: str) -> None:
    members = {"test_images.npy": _npy(IMAGES), "test_labels.npy": _npy(LABELS)}
    replaced, message = CASES[case]
    members.update(replaced)
    if case == "a decompression bomb":
        members["test_labels.npy"] = _npy(np.array([0]))
    path = _zip(tmp_path / "set.npz", members)
    with pytest.raises(InputError, match=message):
        dataset = open_dataset(registry, path, DataOptions(channels=1))
        dataset.load(list(range(len(dataset))))


class _WritesMarker:
    """Unpickling this object writes a file: proof that a pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.write_text, (self.marker, "unpickled"))


@pytest.mark.parametrize("member", ["test_images", "test_labels", "train_labels"])
def test_a_pickle_inside_the_archive_never_runs(registry: Registry, tmp_path: Path, member: str) -> None:
    marker = tmp_path / "unpickled.txt"
    payload = np.empty(4, dtype=object)
    payload[:] = [_WritesMarker(marker)] * 4
    members = {"test_images.npy": _npy(IMAGES), "test_labels.npy": _npy(LABELS), f"{member}.npy": _npy(payload)}
    path = _zip(tmp_path / "set.npz", members)
    with pytest.raises(InputError, match=rf"'{member}' in 'set\.npz' holds pickled Python objects"):
        open_dataset(registry, path, DataOptions(channels=1))
    assert not marker.exists()


def test_members_without_the_npy_suffix_and_a_damaged_member(registry: Registry, tmp_path: Path) -> None:
    plain = _zip(tmp_path / "plain.npz", {"test_images": _npy(IMAGES), "test_labels": _npy(LABELS)})
    assert open_dataset(registry, plain, DataOptions(channels=1)).load([0, 1]).targets.tolist() == [0, 1]
    damaged = _zip(tmp_path / "set.npz", {"test_images.npy": _npy(IMAGES), "test_labels.npy": _npy(LABELS)})
    data = bytearray(damaged.read_bytes())
    data[data.find(IMAGES.tobytes()[-24:]) + 3] ^= 0xFF  # the CRC no longer matches
    damaged.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"'test_images' in 'set\.npz' cannot be read \(Bad CRC-32"):
        dataset = open_dataset(registry, damaged, DataOptions(channels=1))  # small: checked while opening
        dataset.load(list(range(len(dataset))))


def test_string_labels_exit_3_through_the_cli(tmp_path: Path) -> None:
    from tests.reliability.corpus import Ctx, invoke
    from tests.reliability.models import Tiny, save

    model = save(Tiny(channels=1), tmp_path / "tiny.pt")
    path = _zip(tmp_path / "set.npz", {"test_images.npy": _npy(IMAGES),
                                       "test_labels.npy": _npy(np.array(["a", "b", "a", "b"]))})
    outcome = invoke([*Ctx(tmp_path, {}).args(model, path, input_size="6"), "--report-format", "none"])
    assert outcome.code == 3, outcome.stderr
    assert outcome.stderr_lines == [
        "medaudit: error: 'test_labels' in 'set.npz' holds <U1 values, not numbers; store integer class indices "
        "(class names go in --classes)"
    ]
