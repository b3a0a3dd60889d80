"""ONNX models, converted to PyTorch with onnx2torch so white-box attacks get gradients."""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path
from typing import Any, ClassVar

import torch

from auditor.errors import InputError
from auditor.interfaces import ModelLoader, ModelOptions
from plugins.models._torchfile import first_line

MISSING_DEPENDENCY = "ONNX models need the optional dependency: pip install 'medaudit[onnx]'"
# ONNX ops onnx2torch implements with torchvision.
TORCHVISION_OPS: frozenset[str] = frozenset({"NonMaxSuppression", "RoiAlign"})
_STUB_MARKER = "__medaudit_stub__"
CONVERTER_OPSET = 17  # the newest opset onnx2torch 1.5 covers for most ops


def _needs_torchvision(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError(
        "this ONNX model uses NonMaxSuppression/RoiAlign, which need torchvision; "
        "install a torchvision build that matches your torch"
    )


def _install_torchvision_stub() -> dict[str, types.ModuleType]:
    """Put a minimal ``torchvision`` into ``sys.modules`` and return what it replaced.

    onnx2torch imports torchvision at import time, but only its NMS and RoIAlign
    converters use it (``torchvision.ops.nms``, ``box_convert``, ``roi_align``). medaudit
    ships a CPU torch that no torchvision wheel matches, and a mismatched torchvision fails
    on import, which would make every ONNX model unloadable. With the stand-in, only
    models that contain those two ops fail, with a message that says why."""
    replaced = {k: v for k, v in sys.modules.items() if k == "torchvision" or k.startswith("torchvision.")}
    for key in replaced:  # a failed import can leave half-initialised submodules behind
        del sys.modules[key]
    ops = types.ModuleType("torchvision.ops")
    ops.nms = ops.box_convert = ops.roi_align = _needs_torchvision  # type: ignore[attr-defined]
    stub = types.ModuleType("torchvision")
    stub.ops = ops  # type: ignore[attr-defined]
    setattr(stub, _STUB_MARKER, True)
    sys.modules["torchvision"], sys.modules["torchvision.ops"] = stub, ops
    return replaced


def _import_onnx2torch() -> tuple[Any, Any, bool]:
    """(onnx, onnx2torch, torchvision_is_stub)."""
    try:
        onnx = importlib.import_module("onnx")
        importlib.import_module("onnx.version_converter")
    except ImportError:
        raise InputError(MISSING_DEPENDENCY) from None
    if sys.modules.get("onnx2torch") is not None:
        stubbed = bool(getattr(sys.modules["onnx2torch"], _STUB_MARKER, False))
        return onnx, sys.modules["onnx2torch"], stubbed
    stubbed = False
    replaced: dict[str, types.ModuleType] = {}
    try:
        importlib.import_module("torchvision")
    except Exception:  # ImportError, or RuntimeError/AttributeError from a mismatched build
        replaced = _install_torchvision_stub()
        stubbed = True
    try:
        onnx2torch = importlib.import_module("onnx2torch")
    except ImportError:
        raise InputError(MISSING_DEPENDENCY) from None
    finally:
        if stubbed:
            # onnx2torch keeps its own references; other code must not see the stand-in.
            for key in ("torchvision", "torchvision.ops"):
                sys.modules.pop(key, None)
            sys.modules.update(replaced)
    setattr(onnx2torch, _STUB_MARKER, stubbed)
    return onnx, onnx2torch, stubbed


class OnnxLoader(ModelLoader):
    name: ClassVar[str] = "onnx"
    suffixes: ClassVar[tuple[str, ...]] = (".onnx",)
    description: ClassVar[str] = "ONNX model, converted to PyTorch with onnx2torch (optional: medaudit[onnx])"

    def load(self, path: Path, options: ModelOptions) -> torch.nn.Module:
        onnx, onnx2torch, stubbed = _import_onnx2torch()
        try:
            proto = onnx.load(str(path))  # protobuf: parsing it runs no code from the file
        except Exception as exc:
            raise InputError(f"cannot read {path} as ONNX: {first_line(exc)}") from None
        if stubbed:
            used = sorted(TORCHVISION_OPS & {node.op_type for node in proto.graph.node})
            if used:
                raise InputError(
                    f"{path} uses {', '.join(used)}, which onnx2torch implements with torchvision, "
                    "and torchvision does not import here; install a torchvision matching your torch"
                )
        try:
            module = _convert(onnx, onnx2torch, proto)
        except Exception as exc:  # onnx2torch raises NotImplementedError for unsupported ops
            raise InputError(
                f"cannot convert {path} to PyTorch for white-box attacks: {first_line(exc)}"
            ) from None
        return module.to(options.device).eval()

    def input_size(self, path: Path) -> tuple[int, int] | None:
        """(H, W) of the first graph input when both are fixed numbers (not symbolic)."""
        onnx, _, _ = _import_onnx2torch()
        graph = onnx.load(str(path), load_external_data=False).graph
        initialisers = {init.name for init in graph.initializer}
        inputs = [i for i in graph.input if i.name not in initialisers]  # old exporters list weights as inputs
        if not inputs:
            return None
        dims = inputs[0].type.tensor_type.shape.dim
        if len(dims) != 4 or not all(d.HasField("dim_value") and d.dim_value > 0 for d in dims[2:]):
            return None
        return int(dims[2].dim_value), int(dims[3].dim_value)

    def companion_files(self, path: Path) -> list[Path]:
        """The external-data files the model's tensors are stored in. ``onnx.load`` has
        already refused any that lies outside the model's folder or is a symbolic link."""
        onnx, _, _ = _import_onnx2torch()
        proto = onnx.load(str(path), load_external_data=False)
        files = {path.parent / location for location in _external_locations(proto.graph)}
        for function in proto.functions:
            for node in function.node:
                files.update(path.parent / loc for loc in _attribute_locations(node))
        return sorted(files)


def _attribute_locations(node: Any) -> set[str]:
    found: set[str] = set()
    for attribute in node.attribute:
        for tensor in [attribute.t, *attribute.tensors]:
            found.update(_tensor_location(tensor))
        for graph in [attribute.g, *attribute.graphs]:
            found.update(_external_locations(graph))
    return found


def _tensor_location(tensor: Any) -> set[str]:
    return {entry.value for entry in tensor.external_data if entry.key == "location"}


def _external_locations(graph: Any) -> set[str]:
    """Locations of every tensor of ``graph`` stored outside the .onnx file: initializers,
    sparse initializers and tensors in node attributes, subgraphs included."""
    found: set[str] = set()
    tensors = [*graph.initializer]
    tensors += [part for sparse in graph.sparse_initializer for part in (sparse.values, sparse.indices)]
    for tensor in tensors:
        found.update(_tensor_location(tensor))
    for node in graph.node:
        found.update(_attribute_locations(node))
    return found


def _opset(proto: Any) -> int:
    return max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)


def _convert(onnx: Any, onnx2torch: Any, proto: Any) -> torch.nn.Module:
    """onnx2torch has converters up to opset 17 for most ops; current exporters write 18+,
    where ops such as Constant got new versions with the same semantics. Downgrading with
    onnx's own version converter is the documented way around it."""
    try:
        return onnx2torch.convert(proto)
    except NotImplementedError:
        if _opset(proto) <= CONVERTER_OPSET:
            raise
        first_error = sys.exc_info()[1]
    try:
        downgraded = onnx.version_converter.convert_version(proto, CONVERTER_OPSET)
    except Exception:
        raise first_error from None  # the original message names the op that is missing
    return onnx2torch.convert(downgraded)
