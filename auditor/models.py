"""Opening a model file: format detection, loading, normalisation and a probe forward pass.

The loaders themselves are plugins (``medaudit_register_model_loaders``); this module picks
one, loads the file, fingerprints it and checks that the model behaves like the contract
in :mod:`auditor.interfaces` says (images in [0, 1] in, logits out).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from auditor.deadline import model_call
from auditor.errors import InputError, MedauditError, UsageError
from auditor.interfaces import ModelLoader, ModelOptions
from auditor.query_target import query_target
from auditor.registry import Registry

KIND = "model_loaders"
# Generic loaders claim any torch.save file, so every other loader (a third-party one for
# a specific checkpoint layout included) gets to look first.
FALLBACK_LOADERS: tuple[str, ...] = ("state-dict", "pickle")
_CHUNK = 1 << 20
_PROB_TOLERANCE = 1e-3


# ------------------------------------------------------------------------- loading
def _loaders_in_detection_order(registry: Registry) -> list[ModelLoader]:
    loaders: list[ModelLoader] = registry.all(KIND)
    return sorted(loaders, key=lambda loader: loader.name in FALLBACK_LOADERS)  # stable


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"model file not found: {path}")
    if not path.is_file():
        raise InputError(f"{path} is not a file; pass the model file itself")


def detect_format(registry: Registry, path: str | Path) -> str:
    """Name of the first loader that recognises ``path``."""
    path = Path(path)
    _check_file(path)
    for loader in _loaders_in_detection_order(registry):
        if loader.detect(path):
            return loader.name
    known = ", ".join(registry.names(KIND)) or "none"
    raise InputError(f"cannot tell the model format of {path}; pass --format (known: {known})")


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_sha256(path: Path, companions: Sequence[Path] = ()) -> str:
    """The model's fingerprint: the file's sha256 alone when it is self-contained (so it
    matches ``sha256sum``), else a sha256 over the names and hashes of the file and of every
    companion (ONNX external data), in a stable order, so no part can change unnoticed."""
    if not companions:
        return sha256_file(path)

    def name(file: Path) -> str:
        return file.relative_to(path.parent).as_posix() if file.is_relative_to(path.parent) else str(file)

    parts = [(path.name, sha256_file(path))] + sorted((name(Path(c)), sha256_file(c)) for c in companions)
    return hashlib.sha256("".join(f"{digest}  {name}\n" for name, digest in parts).encode()).hexdigest()


class NormalizedModel(torch.nn.Module):
    """``model((x[:, order] - mean) / std)``, per channel, so attacks keep working in [0, 1]
    units of the stored image. ``channel_order`` (e.g. (2, 1, 0): RGB to BGR for Caffe-style
    models) is an indexing op, so gradients reach the input unchanged in kind."""

    def __init__(self, model: torch.nn.Module, mean: Sequence[float], std: Sequence[float],
                 channel_order: Sequence[int] | None = None) -> None:
        super().__init__()
        self.channel_order = [int(c) for c in channel_order] if channel_order is not None else None
        mean_t = torch.as_tensor(list(mean), dtype=torch.float32).reshape(1, -1, 1, 1)
        std_t = torch.as_tensor(list(std), dtype=torch.float32).reshape(1, -1, 1, 1)
        if mean_t.numel() == 0 or std_t.numel() == 0:
            raise UsageError("--mean and --std need at least one value each")
        if mean_t.numel() != std_t.numel() and 1 not in (mean_t.numel(), std_t.numel()):
            raise UsageError(f"--mean has {mean_t.numel()} values but --std has {std_t.numel()}; give one per channel")
        if not bool(torch.all(std_t > 0)):
            raise UsageError("--std values must be > 0")
        self.model = model
        self.register_buffer("mean", mean_t)
        self.register_buffer("std", std_t)

    def forward(self, x: torch.Tensor) -> Any:
        if self.channel_order is not None:
            if x.shape[1] != len(self.channel_order):
                raise UsageError(f"--preprocess reorders {len(self.channel_order)} channels (RGB to BGR) but the "
                                 f"images have {x.shape[1]}; use --channels {len(self.channel_order)} or another preset")
            x = x[:, self.channel_order]
        return self.model((x - self.mean) / self.std)


# --preprocess: a framework's input convention as the (mean, std) NormalizedModel applies to
# [0, 1] images, so attacks and eps stay in units of the stored image.
PREPROCESS_PRESETS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "tf": ((0.5,), (0.5,)),  # Keras applications' "tf" mode: x * 2 - 1, in [-1, 1]
    "torch": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # ImageNet mean/std
    "raw255": ((0.0,), (1.0 / 255.0,)),  # plain 0-255 pixel values
    # Keras applications' "caffe" mode (VGG, ResNet50): BGR, ImageNet mean subtracted in 0-255
    "caffe": ((103.939 / 255.0, 116.779 / 255.0, 123.68 / 255.0), (1.0 / 255.0,)),
}
# presets whose model reads the channels in another order: index of each model channel in RGB
PREPROCESS_CHANNEL_ORDER: dict[str, tuple[int, ...]] = {"caffe": (2, 1, 0)}


def preprocess_normalization(name: str) -> tuple[list[float], list[float]]:
    """(mean, std) of a ``--preprocess`` preset."""
    if name not in PREPROCESS_PRESETS:
        raise UsageError(f"--preprocess: unknown preset '{name}' (known: {', '.join(PREPROCESS_PRESETS)})")
    mean, std = PREPROCESS_PRESETS[name]
    return list(mean), list(std)


def preprocess_channel_order(name: str | None) -> tuple[int, ...] | None:
    """The channel order a ``--preprocess`` preset feeds the model (None: as stored, RGB)."""
    return PREPROCESS_CHANNEL_ORDER.get(name) if name else None


@dataclass
class LoadedModel:
    module: torch.nn.Module  # eval mode, on the device, parameters frozen
    path: Path
    sha256: str
    format: str
    loader: str  # name of the plugin that supplied the loader
    executes_code: bool
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    input_size: tuple[int, int] | None = None  # (H, W) the file declares (ModelLoader.input_size)
    details: dict[str, Any] | None = None  # loader facts for results.json (e.g. Keras version)


def open_model(
    registry: Registry,
    path: str | Path,
    *,
    format: str | None = None,
    arch: str | None = None,
    trust_model: bool = False,
    device: str = "cpu",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    extra: dict[str, Any] | None = None,
    channel_order: Sequence[int] | None = None,
) -> LoadedModel:
    if is_model_url(path):  # a service endpoint: kept as text (a Path would fold its "//")
        loaded = _open_query_target(registry, str(path), format, device, extra or {})
        if mean is not None or std is not None:  # the service expects normalised images
            loaded.mean, loaded.std = tuple(mean or (0.0,)), tuple(std or (1.0,))
            loaded.module = NormalizedModel(loaded.module, loaded.mean, loaded.std).eval()
        return loaded
    path = Path(path)
    _check_file(path)
    name = format or detect_format(registry, path)
    loader: ModelLoader = registry.get(KIND, name)
    module = loader.load(path, ModelOptions(arch=arch, trust_model=trust_model, device=device, extra=extra or {}))
    if not isinstance(module, torch.nn.Module):
        raise InputError(f"{path}: loader '{name}' returned {type(module).__name__}, not a torch.nn.Module")
    if mean is not None or std is not None or channel_order is not None:
        mean = tuple(float(v) for v in (mean if mean is not None else (0.0,)))
        std = tuple(float(v) for v in (std if std is not None else (1.0,)))
        module = NormalizedModel(module, mean, std, channel_order)
    module = module.to(device).eval()
    for param in module.parameters():
        param.requires_grad_(False)
    return LoadedModel(
        module=module,
        path=path,
        sha256=model_sha256(path, getattr(loader, "companion_files", lambda _: [])(path)),
        format=name,
        loader=registry.provider(KIND, name),
        executes_code=bool(loader.executes_code),
        mean=tuple(mean) if mean is not None else None,
        std=tuple(std) if std is not None else None,
        input_size=getattr(loader, "input_size", lambda _: None)(path),
        details=getattr(loader, "details", lambda _: None)(path),
    )


def is_model_url(path: object) -> bool:
    """An http(s):// model argument: a model behind an inference service."""
    return str(path).lower().startswith(("http://", "https://"))


def _open_query_target(registry: Registry, url: str, format: str | None, device: str,
                       extra: dict[str, Any]) -> LoadedModel:
    """A service endpoint: the first loader that claims the URL (or ``--format``) returns a
    query-only target. It has no file to hash: its ``sha256`` covers the URL and what the
    service says about the model (name, versions, platform, input); the behavioural
    fingerprint (:func:`auditor.query_target.behaviour_fingerprint`) covers the rest."""
    loaders = [registry.get(KIND, format)] if format else _loaders_in_detection_order(registry)
    loader = next((item for item in loaders if _claims_url(item, url)), None)
    if loader is None:
        raise UsageError(f"no model loader takes a URL{f' (--format {format})' if format else ''}; "
                         "an Open Inference Protocol endpoint needs the built-in kserve-v2 loader")
    module = loader.load(url, ModelOptions(device=device, extra=extra))  # type: ignore[arg-type]
    if query_target(module) is None:
        raise InputError(f"loader '{loader.name}' returned a {type(module).__name__} for a URL, not a query target")
    details = getattr(loader, "details", lambda _: None)(url)
    identity = json.dumps({"url": url, "details": details}, sort_keys=True, default=str)
    return LoadedModel(
        module=module.eval(), path=url, sha256=hashlib.sha256(identity.encode()).hexdigest(),  # type: ignore[arg-type]
        format=loader.name, loader=registry.provider(KIND, loader.name), executes_code=False,
        input_size=getattr(loader, "input_size", lambda _: None)(url), details=details,
    )


def _claims_url(loader: ModelLoader, url: str) -> bool:
    try:
        return bool(loader.detect(url))  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - a file loader's detect reads Path.suffix: not a URL loader
        return False


# --------------------------------------------------------------------------- probe
@dataclass
class ModelProbe:
    output_shape: tuple[int, ...]
    task: str  # "classification" | "segmentation"
    num_classes: int
    binary: bool  # a single output channel (sigmoid-style); num_classes is then 2
    looks_like_probabilities: bool
    probability_kind: str | None  # "softmax" | "sigmoid" | None (logits)
    finite: bool


def infer_input_channels(module: torch.nn.Module) -> int | None:
    """Best effort: ``in_channels`` of the first Conv2d (TorchScript copies included)."""
    for sub in module.modules():
        if isinstance(sub, torch.nn.Conv2d):
            return int(sub.in_channels)
        if getattr(sub, "original_name", None) == "Conv2d":  # a scripted Conv2d
            in_channels = getattr(sub, "in_channels", None)
            if isinstance(in_channels, int):
                return in_channels
    return None


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if isinstance(exc, torch.jit.Error) and lines:
        # TorchScript puts its own traceback first and the model's error on the last line.
        return lines[-1].removeprefix("builtins.")
    return lines[0] if lines else "(no message)"


def is_out_of_memory(exc: BaseException) -> bool:
    """An accelerator out-of-memory error, as torch raises it (a RuntimeError subclass on
    CUDA, a plain RuntimeError saying so on other backends)."""
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def call_model(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)``, with the model's own failures reported as a bad model (InputError)
    naming the batch, rather than as a bug in medaudit. Out-of-memory errors pass through
    unchanged, so callers can retry with a smaller batch. ``--model-timeout`` watches it."""
    try:
        with model_call():
            out = module(x)
    except MedauditError:
        raise
    except Exception as exc:  # the model's own code: anything can come out
        if is_out_of_memory(exc):
            raise
        detail = _first_line(exc)
        if not isinstance(exc, torch.jit.Error) or ": " not in detail:  # TorchScript's last line names the type
            detail = f"{type(exc).__name__}: {detail}"
        raise InputError(f"the model raised {detail} on a batch of shape {tuple(x.shape)}") from None
    if not isinstance(out, torch.Tensor) or out.dim() == 0 or out.shape[0] != x.shape[0]:
        got = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
        raise InputError(
            f"the model returned {got} for a batch of {x.shape[0]}; its output must have one row per image"
        )
    return out


_CHANNEL_RE = re.compile(r"to have (\d+) channels")


def _channel_error(exc: BaseException, module: torch.nn.Module, channels: int) -> InputError | None:
    text = str(exc)
    if "channels" not in text:
        return None
    match = _CHANNEL_RE.search(text)
    expected = int(match.group(1)) if match else infer_input_channels(module)
    if expected is None or expected == channels:
        return InputError(
            f"model does not accept {channels}-channel input ({_first_line(exc)}); "
            "use --channels or a matching --modality"
        )
    return InputError(
        f"model expects {expected} channels but got {channels}; use --channels or a matching --modality"
    )


def _probabilities(out: torch.Tensor, class_dim: int) -> str | None:
    if not bool(((out >= 0) & (out <= 1)).all()):
        return None
    if out.shape[class_dim] == 1:
        return "sigmoid"
    sums = out.sum(dim=class_dim)
    if bool(((sums - 1).abs() <= _PROB_TOLERANCE).all()):
        return "softmax"
    return "sigmoid" if out.dim() == 4 else None


def _has_input_gradient(module: torch.nn.Module, x: torch.Tensor) -> bool:
    xg = x.clone().requires_grad_(True)
    try:
        with torch.enable_grad():
            out = module(xg)
    except Exception:  # noqa: BLE001 - the forward pass without gradients worked; judge nothing here
        return True
    return not isinstance(out, torch.Tensor) or out.requires_grad


def probe_model(
    module: torch.nn.Module,
    input_shape: tuple[int, int, int],
    device: str | torch.device = "cpu",
    batch: int = 4,
    seed: int = 0,
    *,
    allow_nonfinite: bool = False,
) -> ModelProbe:
    """One forward pass on seeded uniform [0, 1] inputs; what the output says about the model."""
    channels, height, width = (int(v) for v in input_shape)
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand((batch, channels, height, width), generator=generator).to(device)
    try:
        with torch.no_grad():
            out = module(x)
    except Exception as exc:  # the model's own code: anything can come out
        channel_error = _channel_error(exc, module, channels) if isinstance(exc, RuntimeError) else None
        if channel_error is not None:
            raise channel_error from None
        raise InputError(
            f"model raised {type(exc).__name__} on a {tuple(x.shape)} input batch: {_first_line(exc)}"
        ) from None
    if not isinstance(out, torch.Tensor):
        raise InputError(
            f"model returned {type(out).__name__}, not a tensor; medaudit needs a model that returns logits"
        )
    shape = tuple(int(v) for v in out.shape)
    out = out.detach().float()
    finite = bool(torch.isfinite(out).all())
    if not finite and not allow_nonfinite:
        raise InputError(f"model returned NaN or Inf on random inputs in [0, 1] (output shape {shape})")
    expected = f"expected (N, K) logits or (N, K, {height}, {width}) segmentation maps"
    if len(shape) not in (2, 4) or shape[0] != batch:
        raise InputError(f"model returned shape {shape} for a batch of {batch}; {expected}")
    if len(shape) == 4 and shape[2:] != (height, width):
        raise InputError(f"model returned shape {shape} for {height}x{width} inputs; {expected}")
    if query_target(module) is None and not _has_input_gradient(module, x):  # a query target has none by design
        raise InputError(
            "the model's output has no gradient with respect to its input (a detached, no_grad or "
            "quantised model?); white-box attacks, the validity checks and the targeted attacks need "
            "one: audit the float model with its autograd graph"
        )
    task = "classification" if len(shape) == 2 else "segmentation"
    binary = shape[1] == 1
    kind = _probabilities(out, 1) if finite else None
    return ModelProbe(
        output_shape=shape,
        task=task,
        num_classes=2 if binary else shape[1],
        binary=binary,
        looks_like_probabilities=kind is not None,
        probability_kind=kind,
        finite=finite,
    )


class SingleLogitAsTwoClasses(torch.nn.Module):
    """Turns a one-logit binary classifier (N, 1) into two logits [0, z].

    softmax([0, z])[1] == sigmoid(z), so probabilities and decisions are unchanged, and
    every attack and metric can treat the model like any K-class classifier."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.model(x).reshape(x.shape[0], 1)
        return torch.cat([torch.zeros_like(z), z], dim=1)
