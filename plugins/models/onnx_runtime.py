"""ONNX models run by ONNX Runtime as an opaque, query-only target (``--runtime onnxruntime``):
the exact runtime a vendor deploys, instead of the onnx2torch conversion the ``onnx`` loader
makes for white-box attacks. Score-based attacks only; the engine skips the rest and says why."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from auditor.errors import InputError, UsageError
from auditor.interfaces import ModelLoader, ModelOptions
from auditor.query_target import OUTPUT_KINDS, QueryTarget
from plugins.models._torchfile import first_line

MISSING = "--runtime onnxruntime needs the optional dependency: pip install 'medaudit[onnxruntime]'"
# the op that makes the graph's first output: what it holds when --outputs does not say
OUTPUT_OPS = {"Softmax": "probabilities", "LogSoftmax": "logits", "ArgMax": "label"}
ORT_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16}


class OrtTarget(QueryTarget):
    """One ONNX Runtime inference session (CPU); every ``run`` counts as one request."""

    kind = "ONNX Runtime session"

    def __init__(self, session: Any, outputs: str, classes: int | None, nhwc: bool, identity: dict[str, Any]) -> None:
        super().__init__(classes)
        self.session, self.outputs, self.nhwc = session, outputs, nhwc
        first = session.get_inputs()[0]
        self.input_name, self.dtype = first.name, ORT_TYPES[first.type]
        self._identity = identity
        self.images = self.requests = 0

    def identity(self) -> dict[str, Any]:
        return dict(self._identity)

    def usage(self) -> dict[str, Any]:
        return {"images": self.images, "requests": self.requests}

    def query(self, images: np.ndarray) -> np.ndarray:
        batch = images.transpose(0, 2, 3, 1) if self.nhwc else images
        try:
            out = self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=self.dtype)})[0]
        except Exception as exc:  # the runtime's own errors: a bad model or input, not a medaudit bug
            raise InputError(f"ONNX Runtime failed on a batch of shape {tuple(batch.shape)}: {first_line(exc)}") from None
        self.images += len(images)
        self.requests += 1
        out = np.asarray(out)
        if out.shape[:1] != (len(images),):
            raise InputError(f"ONNX Runtime returned shape {out.shape} for a batch of {len(images)}")
        return out


class OnnxRuntimeLoader(ModelLoader):
    name: ClassVar[str] = "onnxruntime"
    suffixes: ClassVar[tuple[str, ...]] = ()  # never detected: asked for with --runtime onnxruntime
    description: ClassVar[str] = ("ONNX model run by ONNX Runtime (CPU) as a query-only target "
                                  "(--runtime onnxruntime; optional: medaudit[onnxruntime])")

    def __init__(self) -> None:
        self._loaded: dict[str, OrtTarget] = {}

    def detect(self, path: Path) -> bool:
        return False

    def load(self, path: Path, options: ModelOptions) -> torch.nn.Module:
        try:
            ort = importlib.import_module("onnxruntime")
        except ImportError:
            raise InputError(MISSING) from None
        try:
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # protobuf parse errors, unsupported ops: the file's fault
            raise InputError(f"ONNX Runtime cannot load {path}: {first_line(exc)}") from None
        first = session.get_inputs()[0]
        shape = list(first.shape)
        if first.type not in ORT_TYPES or len(shape) != 4:
            raise InputError(f"{path}: input '{first.name}' is {first.type} of shape {shape}; medaudit sends "
                             "float images (N, C, H, W) or (N, H, W, C)")
        nhwc = shape[3] in (1, 3, 4) and shape[1] not in (1, 3, 4)
        extra = dict(getattr(options, "extra", None) or {})
        outputs = extra.get("outputs") or _output_kind(path)
        if outputs not in OUTPUT_KINDS:
            raise UsageError(f"--outputs: '{outputs}' is not logits, probabilities or label")
        out_shape = session.get_outputs()[0].shape
        classes = out_shape[-1] if len(out_shape) == 2 and isinstance(out_shape[-1], int) else extra.get("classes")
        meta = session.get_modelmeta()
        identity = {"runtime": f"onnxruntime {ort.__version__}", "producer": str(meta.producer_name)[:120],
                    "graph": str(meta.graph_name)[:120], "input_name": str(first.name)[:120],
                    "input_layout": "NHWC" if nhwc else "NCHW"}
        target = OrtTarget(session, outputs, classes, nhwc, identity)
        target._dims = shape  # noqa: SLF001 - read back by input_size below
        self._loaded[str(path)] = target
        return target

    def input_size(self, path: Path) -> tuple[int, int] | None:
        target = self._loaded.get(str(path))
        if target is None:
            return None
        dims = target._dims  # noqa: SLF001
        h, w = (dims[1], dims[2]) if target.nhwc else (dims[2], dims[3])
        return (h, w) if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0 else None

    def details(self, path: Path) -> dict[str, Any] | None:
        target = self._loaded.get(str(path))
        if target is None:
            return None
        dims = target._dims  # noqa: SLF001
        channels = dims[3] if target.nhwc else dims[1]
        return {**target.identity(), "input_channels": channels if isinstance(channels, int) else None}


def _output_kind(path: Path) -> str:
    """What the graph's first output holds, from the op that makes it (a Softmax at the end:
    probabilities); logits otherwise. Needs the ``onnx`` package to read the graph; without
    it, logits."""
    try:
        onnx = importlib.import_module("onnx")
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception:  # noqa: BLE001 - onnx missing or unreadable here; ONNX Runtime loaded it
        return "logits"
    output = graph.output[0].name if graph.output else None
    op = next((node.op_type for node in graph.node if output in node.output), None)
    return OUTPUT_OPS.get(op or "", "logits")
