"""Model files edited by an attacker must not act on the auditor's machine (issue 12).

* ``.pt2``: torch evaluates text from the archive (``expr_str`` through ``sympy.sympify``,
  ``guards_code`` through ``exec``, operator names through ``getattr`` on ``torch``);
* TorchScript: the model's code is editable text and may call ``torch.from_file``;
* ONNX: weights in external-data files must be part of the model's fingerprint.

Each hostile file leaves a marker if its payload runs; ``test_*_payload_is_live`` show
the payloads do run when the file is loaded without medaudit's checks.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import warnings
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from typer.testing import CliRunner

from auditor.cli import app
from auditor.errors import InputError
from auditor.models import open_model
from tests.models.files import rewrite_zip, save_export, save_torchscript
from tests.models.tiny import TinyCNN, TinySeg
from tests.reliability.corpus import class_folders

runner = CliRunner()
SHARED_UNET = Path(__file__).resolve().parents[2].parent / "shared/data/models/retina_unet_orobix/retina_unet.torchscript.pt"


def _run(model: Path, data: Path, out: Path, *extra: str) -> Any:
    args = ["run", str(model), "--data", str(data), "--out", str(out), "--input-size", "16",
            "--budget", "quick", "--report-format", "none", "--quiet", "--skip-checks",
            "--attacks", "fgsm", "--eps", "2", *extra]
    return runner.invoke(app, args)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return class_folders(tmp_path_factory.mktemp("hostile-data"))


def _two_class() -> TinyCNN:
    torch.manual_seed(0)
    return TinyCNN(num_classes=2).eval()


def _edit_json(member_suffix: str, change: Callable[[dict], None]) -> Callable[[str, bytes], bytes]:
    def edit(name: str, content: bytes) -> bytes:
        if not name.endswith(member_suffix):
            return content
        document = json.loads(content)
        change(document)
        return json.dumps(document).encode()

    return edit


# ------------------------------------------------------------------------------ .pt2
def _graph(doc: dict) -> dict:
    return doc["graph_module"]["graph"]


def _symbol(doc: dict) -> str:
    return _graph(doc)["tensor_values"]["x"]["sizes"][0]["as_expr"]["expr_str"]


def _touch(marker: Path) -> str:
    return f"__import__('pathlib').Path({str(marker)!r}).touch()"


def _hostile_expr(marker: Path) -> Callable[[dict], None]:
    def change(doc: dict) -> None:
        sizes = _graph(doc)["tensor_values"]["x"]["sizes"][0]["as_expr"]
        sizes["expr_str"] = f"{_touch(marker)} or {_symbol(doc)}"

    return change


def _hostile_guard(marker: Path) -> Callable[[dict], None]:
    def change(doc: dict) -> None:
        doc["guards_code"] = [f"{_touch(marker)} is None"]

    return change


def _hostile_arg_name(marker: Path) -> Callable[[dict], None]:
    def change(doc: dict) -> None:
        signature = doc["graph_module"]["module_call_graph"][0]["signature"]
        signature["forward_arg_names"] = [f"x=({_touch(marker)})"]

    return change


def _hostile_range_key(marker: Path) -> Callable[[dict], None]:
    def change(doc: dict) -> None:
        doc["range_constraints"][f"{_touch(marker)} or s0"] = {"min_val": 1, "max_val": 8}

    return change


def _from_file_node(marker: Path) -> Callable[[dict], None]:
    """The graph maps ``marker`` into a tensor shared with the file (no Python needed)."""

    def change(doc: dict) -> None:
        node = next(n for n in _graph(doc)["nodes"] if n["target"] == "torch.ops.aten.relu.default")
        node["target"] = "torch.ops.aten.from_file.default"
        node["inputs"] = [
            {"name": "filename", "arg": {"as_string": str(marker)}, "kind": 1},
            {"name": "shared", "arg": {"as_bool": True}, "kind": 1},
        ]

    return change


@pytest.fixture
def pt2(tmp_path) -> Path:
    """A real program with a dynamic batch size, so its sizes are symbolic expressions."""
    return save_export(_two_class(), tmp_path / "model.pt2")


def test_pt2_payload_is_live(pt2, tmp_path):
    marker = tmp_path / "ran"
    evil = rewrite_zip(pt2, tmp_path / "evil.pt2", _edit_json("models/model.json", _hostile_expr(marker)))
    torch.export.load(str(evil))  # "None or s0" is s0 again: the program even loads
    assert marker.exists()


def test_pt2_expression_that_runs_code_is_refused_by_medaudit_run(pt2, data, tmp_path):
    marker = tmp_path / "ran"
    evil = rewrite_zip(pt2, tmp_path / "evil.pt2", _edit_json("models/model.json", _hostile_expr(marker)))
    result = _run(evil, data, tmp_path / "out")
    assert result.exit_code == 3, result.output
    assert "expr_str" in result.output and "was refused" in result.output
    assert not marker.exists()


@pytest.mark.parametrize(
    "hostile", [_hostile_expr, _hostile_guard, _hostile_arg_name, _hostile_range_key, _from_file_node],
    ids=["expr_str", "guards_code", "forward_arg_names", "range_constraints", "aten.from_file"],
)
def test_pt2_fields_torch_evaluates_are_refused(registry, pt2, tmp_path, hostile):
    marker = tmp_path / "ran"
    evil = rewrite_zip(pt2, tmp_path / "evil.pt2", _edit_json("models/model.json", hostile(marker)))
    with pytest.raises(InputError, match="was refused: torch would evaluate text from the file"):
        open_model(registry, evil)
    assert not marker.exists()


def test_pt2_member_twice_is_refused(registry, pt2, tmp_path):
    """Python's zipfile reads the last of two same-named members; torch's reader may not."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile: "Duplicate name"
        evil = rewrite_zip(pt2, tmp_path / "evil.pt2", lambda name, content: content,
                           extra={"model/models/model.json": b"{}"})
    with pytest.raises(InputError, match="twice"):
        open_model(registry, evil)


class _DynamicSizes(torch.nn.Module):
    """Pooling, reshapes, floor division and max of symbolic sizes, a string argument:
    the expressions, guards and operators torch writes for a real dynamic-shape program."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.pool = torch.nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pool(torch.relu(self.conv(x)))
        n, c, h, w = y.shape
        flat = y.reshape(n, c * h * w)[:, : max(h, 2)]
        return torch.einsum("bi,bi->b", flat, flat).unsqueeze(1) + (h // 3 + w % 5)


def test_pt2_with_dynamic_shapes_still_loads(registry, tmp_path):
    model = _DynamicSizes().eval()
    batch = torch.export.Dim("b", min=1, max=64)
    height, width = (torch.export.Dim(n, min=4, max=256) for n in ("h", "w"))
    x = torch.rand(2, 3, 16, 24)
    program = torch.export.export(model, (x,), dynamic_shapes={"x": {0: batch, 2: 2 * height, 3: 2 * width}})
    path = tmp_path / "dynamic.pt2"
    torch.export.save(program, str(path))
    document = json.loads(next(
        content for name, content in _members(path) if name.endswith("models/model.json")))
    assert document["guards_code"] and "FloorDiv(" in json.dumps(document)  # the grammar is exercised
    loaded = open_model(registry, path).module
    other = torch.rand(5, 3, 20, 12)
    assert torch.allclose(loaded(other), model(other))


def _members(path: Path) -> list[tuple[str, bytes]]:
    import zipfile

    with zipfile.ZipFile(path) as archive:
        return [(name, archive.read(name)) for name in archive.namelist()]


# ----------------------------------------------------------------------- TorchScript
def _overwrite_victim(victim: Path) -> Callable[[str, bytes], bytes]:
    """Edits the saved code of TinyCNN.forward to map ``victim`` shared and fill it with 'A'.
    The result feeds the output, so TorchScript's dead-code elimination keeps it."""

    def edit(name: str, content: bytes) -> bytes:
        if not name.endswith("code/__torch__/tests/models/tiny.py"):
            return content
        code = content.decode()
        code = code.replace(
            "    bn = self.bn\n",
            f"    _v = torch.from_file({str(victim)!r}, True, 8, dtype=0)\n"
            "    _w = torch.fill_(_v, 65)\n    bn = self.bn\n", 1)
        code = code.replace("    return _0\n", "    return torch.add(_0, torch.sum(_w), alpha=0)\n", 1)
        assert "from_file" in code and "alpha=0" in code
        return code.encode()

    return edit


def test_torchscript_file_overwrite_is_refused_by_medaudit_run(data, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    plain = save_torchscript(_two_class(), tmp_path / "plain.pt")
    evil = rewrite_zip(plain, tmp_path / "evil.pt", _overwrite_victim(victim))
    result = _run(evil, data, tmp_path / "out")
    assert result.exit_code == 3, result.output
    assert "aten::from_file" in result.output and "--trust-model" in result.output
    assert victim.read_text() == "precious"


def test_torchscript_payload_is_live_and_trust_model_lifts_the_refusal(registry, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    evil = rewrite_zip(save_torchscript(_two_class(), tmp_path / "plain.pt"), tmp_path / "evil.pt",
                       _overwrite_victim(victim))
    loaded = open_model(registry, evil, trust_model=True).module
    assert victim.read_text() == "precious"  # loading alone runs nothing
    loaded(torch.rand(1, 3, 16, 16))
    assert victim.read_text() == "AAAAAAAA"


class _Forks(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        future = torch.jit.fork(torch.relu, x)
        return torch.jit.wait(future).mean(dim=(2, 3))


class _ReadsFile(torch.nn.Module):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) + torch.from_file(self.path, False, 3).sum()


@pytest.mark.parametrize("model,op", [(_Forks(), "prim::fork"), (_ReadsFile("/etc/hostname"), "aten::from_file")])
def test_torchscript_thread_and_file_ops_are_refused(registry, tmp_path, model, op):
    path = save_torchscript(model, tmp_path / "model.pt")
    with pytest.raises(InputError, match=op):
        open_model(registry, path)


def _builtin_models() -> list[tuple[str, Callable[[], torch.nn.Module]]]:
    from auditor import architectures
    from tests.reliability.models import BROKEN

    models = [(f"architectures.{n}", getattr(architectures, n)) for n in ("small_cnn", "resnet18", "unet")]
    models += [("tiny.TinyCNN", TinyCNN), ("tiny.TinySeg", TinySeg)]
    models += [(f"reliability.{name}", cls) for name, cls in BROKEN.items()]
    return models


@pytest.mark.parametrize("name,build", _builtin_models(), ids=[n for n, _ in _builtin_models()])
def test_builtin_and_test_models_still_load(registry, tmp_path, name, build):
    path = save_torchscript(build().eval(), tmp_path / "model.pt")
    assert open_model(registry, path).format == "torchscript"


def test_demo_model_still_loads(registry, demo_inputs):
    model, _ = demo_inputs
    assert open_model(registry, model).format == "torchscript"


def test_real_unet_still_loads(registry):
    if not SHARED_UNET.exists():
        pytest.skip(f"real model not available: {SHARED_UNET} is absent")
    assert open_model(registry, SHARED_UNET).format == "torchscript"


def test_example_folder_models_still_load(registry):
    root = Path(__file__).resolve().parents[2] / "examples"
    paths = [Path(p) for suffix in ("pt", "ts", "torchscript") for p in glob.glob(f"{root}/**/*.{suffix}", recursive=True)]
    for path in paths:
        assert open_model(registry, path).format == "torchscript"


# ------------------------------------------------------------------------------ ONNX
def _onnx_with_external_data(folder: Path) -> Path:
    """Flatten -> Gemm over a 3x16x16 image, its weight in ``weights.bin`` beside the model."""
    onnx = pytest.importorskip("onnx")
    if importlib.util.find_spec("onnx2torch") is None:  # importing it needs medaudit's torchvision stand-in
        pytest.skip("onnx2torch is not installed")
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.normal(size=(768, 2)).astype("float32"), "W")
    bias = numpy_helper.from_array(np.zeros(2, dtype="float32"), "B")
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["flat"]), helper.make_node("Gemm", ["flat", "W", "B"], ["logits"])],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])], [weight, bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = folder / "model.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, location="weights.bin", size_threshold=0)
    assert (folder / "weights.bin").exists()
    return path


def _flip_one_weight(weights: Path) -> None:
    content = bytearray(weights.read_bytes())
    content[0] ^= 0x40  # same length, so the model still loads, with another weight
    weights.write_bytes(bytes(content))


def test_onnx_fingerprint_covers_external_data(registry, tmp_path):
    path = _onnx_with_external_data(tmp_path)
    before = open_model(registry, path).sha256
    _flip_one_weight(tmp_path / "weights.bin")
    assert open_model(registry, path).sha256 != before


def test_onnx_resume_refused_after_external_data_changed(data, tmp_path):
    path = _onnx_with_external_data(tmp_path)
    out = tmp_path / "out"
    first = _run(path, data, out)
    assert first.exit_code == 0, first.output
    _flip_one_weight(tmp_path / "weights.bin")
    resumed = _run(path, data, out, "--resume")
    assert resumed.exit_code == 2, resumed.output
    assert "cannot resume" in resumed.output
