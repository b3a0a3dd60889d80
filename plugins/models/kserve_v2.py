"""A model behind an Open Inference Protocol (KServe v2) HTTP(S) endpoint, audited as a
query-only target: ``medaudit run http://host:8080/v2/models/NAME --data ...``.

The protocol is the one KServe, NVIDIA Triton, Seldon MLServer and OpenVINO Model Server
speak. ``GET /v2/models/NAME`` gives the input's name, datatype and shape (NCHW or NHWC);
each batch the engine asks for is one ``POST .../infer`` (split into ``--concurrency``
requests in flight when larger than one); the output tensor is read as logits,
probabilities or class labels (``--outputs``, else the output's datatype or name decides).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from auditor.errors import InputError, UsageError
from auditor.interfaces import ModelLoader, ModelOptions
from auditor.query_target import OUTPUT_KINDS, QueryTarget
from plugins.models._v2_client import ClientOptions, Endpoint, V2Client, is_url, parse_endpoint

FLOAT_TYPES = {"FP32": "<f4", "FP64": "<f8", "FP16": "<f2"}
INT_TYPES = frozenset({"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"})
MAX_HEADER_FILE = 64 * 1024


@dataclass
class InputSpec:
    name: str
    datatype: str
    layout: str  # "NCHW" | "NHWC"
    channels: int | None
    size: tuple[int, int] | None  # (H, W) when fixed


def _field(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise InputError(f"{where}: field '{key}' is missing or not a {getattr(kind, '__name__', 'value')}")
    return value


def input_spec(meta: dict[str, Any]) -> InputSpec:
    """The first input of the model metadata, as images: datatype and a 4-d shape."""
    inputs = _field(meta, "inputs", list, "model metadata")
    if not inputs:
        raise InputError("model metadata: field 'inputs' is empty")
    first = inputs[0]
    name = _field(first, "name", str, "model metadata inputs[0]")
    datatype = _field(first, "datatype", str, "model metadata inputs[0]")
    shape = _field(first, "shape", list, "model metadata inputs[0]")
    if datatype not in FLOAT_TYPES:
        raise InputError(f"model metadata inputs[0].datatype is {datatype[:20]!r}; medaudit sends images as "
                         "FP32, FP64 or FP16 (an integer input would round every perturbation away)")
    if len(shape) != 4 or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise InputError(f"model metadata inputs[0].shape must be 4 integers (N, C, H, W or N, H, W, C); "
                         f"got {str(shape)[:60]}")
    small = lambda d: d in (1, 3, 4)  # noqa: E731 - image channel counts
    layout = "NHWC" if small(shape[3]) and not small(shape[1]) else "NCHW"
    c, h, w = (shape[1], shape[2], shape[3]) if layout == "NCHW" else (shape[3], shape[1], shape[2])
    return InputSpec(name, datatype, layout, c if c > 0 else None, (h, w) if h > 0 and w > 0 else None)


def output_kind(meta: dict[str, Any], asked: str | None) -> tuple[str, str | None, int | None]:
    """(outputs, output name, classes) from ``--outputs`` or the metadata's first output."""
    outputs = meta.get("outputs") if isinstance(meta.get("outputs"), list) else []
    first = outputs[0] if outputs and isinstance(outputs[0], dict) else {}
    name = first.get("name") if isinstance(first.get("name"), str) else None
    shape = first.get("shape") if isinstance(first.get("shape"), list) else []
    classes = shape[-1] if len(shape) == 2 and isinstance(shape[-1], int) and shape[-1] > 0 else None
    if asked is not None:
        if asked not in OUTPUT_KINDS:
            raise UsageError(f"--outputs: '{asked}' is not logits, probabilities or label")
        return asked, name, classes
    lowered = (name or "").lower()
    if first.get("datatype") in INT_TYPES:
        return "label", name, classes
    for kind, words in (("probabilities", ("prob", "softmax")), ("logits", ("logit",))):
        if any(word in lowered for word in words):
            return kind, name, classes
    raise UsageError(f"the service's metadata does not say whether its output '{(name or '?')[:40]}' holds "
                     "logits, probabilities or class labels; pass --outputs logits|probabilities|label")


def auth_headers(extra: dict[str, Any]) -> dict[str, str]:
    """``Authorization: Bearer <token>`` from the variable ``--auth-env`` names, and/or
    ``Name: value`` lines of ``--auth-header-file``. Messages name the source, never a value."""
    headers: dict[str, str] = {}
    env = extra.get("auth_env")
    if env:
        token = os.environ.get(str(env), "")
        if not token.strip():
            raise UsageError(f"--auth-env: the environment variable {env} is not set or empty")
        headers["Authorization"] = f"Bearer {token.strip()}"
    path = extra.get("auth_header_file")
    if path:
        headers.update(_header_file(Path(path)))
    for key, value in headers.items():
        if any(c in key + value for c in "\r\n\0"):
            raise UsageError(f"auth header '{key[:40]}' holds a line break or NUL; give one header per line")
    return headers


def _header_file(path: Path) -> dict[str, str]:
    try:
        raw = path.read_bytes()[: MAX_HEADER_FILE + 1]
    except OSError as exc:
        raise UsageError(f"--auth-header-file: cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_HEADER_FILE:
        raise UsageError(f"--auth-header-file: {path} is larger than 64 KiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"--auth-header-file: {path} is not UTF-8 text") from None
    headers = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition(":")
        if not sep or not key.strip() or any(c.isspace() for c in key.strip()):
            raise UsageError(f"--auth-header-file: line {number} of {path} is not 'Header-Name: value'")
        headers[key.strip()] = value.strip()
    return headers


def client_options(extra: dict[str, Any]) -> ClientOptions:
    concurrency = int(extra.get("concurrency") or 1)
    rate = extra.get("rate_limit")
    if concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    if rate is not None and not float(rate) > 0:
        raise UsageError("--rate-limit must be a positive number of requests per second")
    return ClientOptions(timeout_s=float(extra.get("request_timeout") or 60.0), rate_limit=rate,
                         concurrency=concurrency, headers=auth_headers(extra),
                         retries=int(extra.get("retries", 6)))


class V2Target(QueryTarget):
    """One model on an Open Inference Protocol server."""

    kind = "inference service"

    def __init__(self, client: V2Client, spec: InputSpec, outputs: str, output_name: str | None,
                 classes: int | None, identity: dict[str, Any]) -> None:
        super().__init__(classes)
        self.client, self.spec, self.outputs, self.output_name = client, spec, outputs, output_name
        self._identity = identity
        self.images = 0
        self.infer_requests = 0  # answered ones; the client's count adds metadata calls and failed tries

    def identity(self) -> dict[str, Any]:
        return dict(self._identity)

    def usage(self) -> dict[str, Any]:
        return {"images": self.images, "requests": self.infer_requests, "attempts": self.client.requests,
                "retries": self.client.retries,
                "concurrency": self.client.options.concurrency, "rate_limit": self.client.options.rate_limit}

    def query(self, images: np.ndarray) -> np.ndarray:
        parts = np.array_split(images, min(self.client.options.concurrency, len(images))) if len(images) else []
        answers = self.client.map(self._infer, [p for p in parts if len(p)])
        return np.concatenate(answers) if answers else np.zeros((0, self.num_classes or 1), np.float32)

    def _infer(self, images: np.ndarray) -> np.ndarray:
        batch = images.transpose(0, 2, 3, 1) if self.spec.layout == "NHWC" else images
        tensor = {"name": self.spec.name, "shape": list(batch.shape), "datatype": self.spec.datatype,
                  "data": batch.astype(FLOAT_TYPES[self.spec.datatype]).ravel().tolist()}
        payload: dict[str, Any] = {"inputs": [tensor]}
        if self.output_name:
            payload["outputs"] = [{"name": self.output_name}]
        answer = self.client.request("POST", self.client.endpoint.model_path + "/infer", payload)
        with self.client._lock:  # noqa: SLF001 - the client's counter lock guards ours too
            self.images += len(images)
            self.infer_requests += 1
        return self.parse(answer, len(images))

    def parse(self, answer: dict[str, Any], n: int) -> np.ndarray:
        """The output tensor of an infer response, checked field by field (exit 3 naming it)."""
        outputs = _field(answer, "outputs", list, "infer response")
        chosen = [o for o in outputs if isinstance(o, dict) and o.get("name") == self.output_name] or outputs[:1]
        if not chosen:
            raise InputError("infer response: field 'outputs' is empty")
        out = chosen[0]
        shape = _field(out, "shape", list, "infer response outputs[0]")
        data = _field(out, "data", list, "infer response outputs[0]")
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape) or not shape:
            raise InputError(f"infer response outputs[0].shape is not a list of sizes: {str(shape)[:60]}")
        if not {type(v) for v in data} <= {int, float}:  # None, bool, strings, nesting: not the protocol's flat numbers
            raise InputError("infer response outputs[0].data holds values that are not numbers (a flat list)")
        values = np.asarray(data, dtype=np.float64)
        if values.size != int(np.prod(shape)):
            raise InputError(f"infer response outputs[0].data has {values.size} values; its shape {shape[:4]} "
                             f"needs {int(np.prod(shape))}")
        if shape[0] != n:
            raise InputError(f"infer response outputs[0].shape {shape[:4]} has {shape[0]} rows for a batch of {n}")
        if not np.isfinite(values).all():
            raise InputError("infer response outputs[0].data holds NaN or Inf")
        if self.outputs == "label":
            if values.size != n or not np.all(values == np.round(values)) or (values < 0).any():
                raise InputError(f"infer response outputs[0] should hold one class index per image (--outputs "
                                 f"label); got shape {shape[:4]}")
            return values.astype(np.int64)
        rows = values.reshape(n, -1)
        if self.num_classes is not None and rows.shape[1] != self.num_classes:
            raise InputError(f"infer response outputs[0].shape {shape[:4]}: {rows.shape[1]} scores per image, "
                             f"the model metadata declares {self.num_classes}")
        return rows.astype(np.float32)


class KServeV2Loader(ModelLoader):
    name: ClassVar[str] = "kserve-v2"
    description: ClassVar[str] = ("A model behind an Open Inference Protocol (KServe v2) http(s):// endpoint, "
                                  "audited through queries only")

    def __init__(self) -> None:
        self._loaded: dict[str, V2Target] = {}

    def detect(self, path: Path) -> bool:
        return is_url(path)

    def load(self, path: Path, options: ModelOptions) -> torch.nn.Module:
        extra = dict(getattr(options, "extra", None) or {})
        endpoint = parse_endpoint(str(path))
        client = V2Client(endpoint, client_options(extra))
        meta = client.request("GET", endpoint.model_path)
        spec = input_spec(meta)
        outputs, output_name, classes = output_kind(meta, extra.get("outputs"))
        classes = classes or extra.get("classes")  # --classes counts them when the metadata does not
        target = V2Target(client, spec, outputs, output_name, classes, _identity(client, endpoint, meta, spec))
        self._loaded[str(path)] = target
        return target

    def input_size(self, path: Path) -> tuple[int, int] | None:
        target = self._loaded.get(str(path))
        return target.spec.size if target else None

    def details(self, path: Path) -> dict[str, Any] | None:
        target = self._loaded.get(str(path))
        if target is None:
            return None
        return {**target.identity(), "input_channels": target.spec.channels}


def _identity(client: V2Client, endpoint: Endpoint, meta: dict[str, Any], spec: InputSpec) -> dict[str, Any]:
    """What the server and the model say about themselves (strings cut short: they are the
    service's words, not ours)."""
    try:
        server = client.request("GET", "/v2")
    except InputError:
        server = {}  # optional in practice: some gateways expose only the model routes
    short = lambda v: str(v)[:120] if v is not None else None  # noqa: E731
    versions = meta.get("versions") if isinstance(meta.get("versions"), list) else []
    return {
        "protocol": "Open Inference Protocol (KServe v2) REST", "endpoint": endpoint.where + endpoint.model_path,
        "model_name": short(meta.get("name")), "model_versions": [short(v) for v in versions[:10]],
        "platform": short(meta.get("platform")), "server_name": short(server.get("name")),
        "server_version": short(server.get("version")), "input_name": spec.name[:120],
        "input_datatype": spec.datatype, "input_layout": spec.layout,
    }
