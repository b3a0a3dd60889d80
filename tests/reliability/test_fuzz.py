"""Fuzzing the parsers that read what users hand to medaudit: for any input they either
succeed, with a sane result, or raise :class:`MedauditError` (one line, an exit code),
never another exception.

Covered: the option parsers (``--eps``, ``--input-size``, list options, ``--backend``),
the CSV manifest source and the MedMNIST ``.npz`` source (opened, then every sample loaded).
"""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from auditor.config import parse_backends, parse_eps, parse_floats, parse_list, parse_size
from auditor.errors import MedauditError
from auditor.interfaces import DataOptions
from auditor.registry import get_registry
from plugins.data.csv_manifest import CsvSource
from plugins.data.npz import NpzSource

FAST = settings(max_examples=300, deadline=None)
FILES = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text that looks like what people type, plus anything at all.
option_text = st.one_of(
    st.text(),
    st.text(alphabet="0123456789.,-+x/ eEinfa_255", max_size=20),
    st.lists(st.sampled_from(["2", "4/255", "-1", "0", "nan", "1e400", "", " ", "8", "255", "256", "1_0"]), max_size=5)
    .map(",".join),
)


@FAST
@given(option_text)
def test_parse_eps(text):
    try:
        values = parse_eps(text)
    except MedauditError:
        return
    assert values and values == sorted(set(values))
    assert all(0 < v <= 255 for v in values)


@FAST
@given(option_text)
def test_parse_size(text):
    try:
        size = parse_size(text)
    except MedauditError:
        return
    assert size is not None and len(size) == 2 and all(1 <= d <= 8192 for d in size)


@FAST
@given(option_text)
def test_parse_list_and_floats(text):
    try:
        items = parse_list(text, "--classes")
    except MedauditError:
        return
    assert items and all(item and item == item.strip() and "," not in item for item in items)
    try:
        parse_floats(text, "--mean")
    except MedauditError:
        pass


@FAST
@given(st.one_of(
    st.text(),
    st.lists(st.sampled_from(["art", "native", "cw=art", "zoo=native", "pgd=", "=art", "nosuch=art", "fgsm=tpu", "a=b=c"]),
             max_size=4).map(",".join),
))
def test_parse_backends(text):
    attacks = get_registry().attacks
    try:
        chosen = parse_backends(text, attacks)
    except MedauditError:
        return
    assert all(name in attacks and backend in attacks[name].backends for name, backend in chosen.items())


# --------------------------------------------------------------------- CSV source
CELLS = st.one_of(
    st.sampled_from(["a.png", "b.png", "sub/c.png", "missing.png", "../a.png", "/etc/passwd", "sub/../a.png",
                     "C:\\a.png", "a.PNG", "notes.txt", "", " a.png ", "0", "1", "-1", "2", "99999999999999999999",
                     "benign", "melanoma", "1.5", "test", "val", "\x00"]),
    st.text(max_size=8),
)
COLUMNS = st.sampled_from(["image", "label", "split", "mask", "roi", "diagnosis", "", "IMAGE", " label ", "image"])


@st.composite
def manifests(draw: st.DrawFn) -> str:
    header = draw(st.lists(COLUMNS, min_size=0, max_size=5))
    rows = draw(st.lists(st.lists(CELLS, min_size=0, max_size=6), max_size=6))
    if draw(st.booleans()):  # well-formed CSV quoting
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(header)
        writer.writerows(rows)
        return buffer.getvalue()
    return "\n".join(",".join(r) for r in [header, *rows]) + draw(st.sampled_from(["", "\n", "\r\n", '"']))


def _small_png(path: Path, mask: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.zeros((8, 8), np.uint8) if mask else np.full((8, 8, 3), 100, np.uint8)
    Image.fromarray(array).save(path)


@FILES
@given(
    text=manifests(),
    task=st.sampled_from(["classification", "segmentation"]),
    classes=st.sampled_from([None, ["benign", "melanoma"], ["x"]]),
    split=st.sampled_from([None, "test"]),
    limit=st.sampled_from([None, 1, 3]),
)
@example(text="image,label\na.png,99999999999999999999\n", task="classification", classes=None, split=None, limit=None)
@example(text="image,mask\na.png,../b.png\n", task="segmentation", classes=None, split=None, limit=None)
def test_csv_manifest(text, task, classes, split, limit):
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for name in ("a.png", "b.png", "sub/c.png"):
            _small_png(root / name)
        (root / "notes.txt").write_text("not an image")
        manifest = root / "labels.csv"
        manifest.write_text(text, encoding="utf-8", errors="surrogatepass")
        options = DataOptions(channels=3, input_size=(8, 8), split=split, classes=classes, limit=limit, task=task)
        try:
            dataset = CsvSource().open(manifest, options)
            batch = dataset.load(list(range(len(dataset))))
        except MedauditError:
            return
        assert len(dataset) >= 1 and batch.images.shape == (len(dataset), 3, 8, 8)
        for sample in dataset.samples:  # never a file outside the manifest's folder
            assert sample.image.resolve().is_relative_to(root.resolve())
        if task == "classification":
            labels = dataset.targets()
            assert labels.min() >= 0 and labels.max() < len(dataset.class_names)


# --------------------------------------------------------------------- npz source
DTYPES = st.sampled_from([np.uint8, np.uint16, np.int16, np.int64, np.float32, np.float64, np.bool_])


@st.composite
def npz_members(draw: st.DrawFn) -> dict[str, np.ndarray]:
    keys = draw(st.lists(st.sampled_from(["test_images", "test_labels", "train_labels", "val_images", "other"]),
                         min_size=0, max_size=4, unique=True))
    members = {}
    for key in keys:
        if key.endswith("_labels"):
            n = draw(st.integers(0, 5))
            shape = draw(st.sampled_from([(n,), (n, 1), (n, 2), (), (n, 1, 1)]))
            dtype = draw(st.sampled_from([np.int64, np.int32, np.uint8, np.float32, np.float64]))
            if dtype == np.uint8:
                elements = st.integers(0, 255)
            elif dtype == np.int32:
                elements = st.one_of(st.integers(-2, 4), st.just(2**30))
            elif dtype == np.int64:
                elements = st.one_of(st.integers(-2, 4), st.just(2**40))
            else:  # float labels: integral, fractional, huge, NaN
                elements = st.one_of(st.integers(-2, 4).map(float), st.sampled_from([0.5, 2.0**40, float("nan")]))
            members[key] = draw(hnp.arrays(dtype, shape, elements=elements))
        else:
            shape = draw(hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=5))
            members[key] = draw(hnp.arrays(draw(DTYPES), shape))
    return members


@FILES
@given(members=npz_members(), classes=st.sampled_from([None, ["benign", "melanoma"]]),
       channels=st.sampled_from([1, 3]), limit=st.sampled_from([None, 2]))
@example(members={"test_images": np.zeros((1, 4, 4), np.uint8), "test_labels": np.array([2**40])},
         classes=None, channels=1, limit=None)
@example(members={"test_images": np.zeros((2, 4, 4), np.uint8), "test_labels": np.array([0, 1], dtype=object)},
         classes=None, channels=1, limit=None)
def test_npz_source(members, classes, channels, limit):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "set.npz"
        np.savez(path, **members)
        options = DataOptions(channels=channels, input_size=(6, 6), classes=classes, limit=limit)
        try:
            dataset = NpzSource().open(path, options)
            batch = dataset.load(list(range(len(dataset))))
        except MedauditError:
            return
        assert batch.images.shape == (len(dataset), channels, 6, 6)
        assert float(batch.images.min()) >= 0.0 and float(batch.images.max()) <= 1.0
        labels = dataset.targets()
        assert labels.min() >= 0 and labels.max() < len(dataset.class_names)


@FILES
@given(st.binary(max_size=512))
def test_npz_source_on_arbitrary_bytes(data):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "set.npz"
        path.write_bytes(data)
        try:
            NpzSource().open(path, DataOptions())
        except MedauditError:
            return
        pytest.fail("arbitrary bytes were accepted as an .npz")  # pragma: no cover


def test_fuzzers_reach_the_success_path():
    """The strategies above are not all-errors: a plain manifest and npz do load."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        _small_png(root / "a.png")
        (root / "labels.csv").write_text("image,label\na.png,1\n")
        assert len(CsvSource().open(root / "labels.csv", DataOptions(input_size=(8, 8)))) == 1
        np.savez(root / "set.npz", test_images=np.zeros((2, 4, 4), np.uint8), test_labels=np.array([0, 1]))
        assert len(NpzSource().open(root / "set.npz", DataOptions())) == 2
