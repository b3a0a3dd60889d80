"""``--arch timm:NAME``: a timm network for a state dict, its ``num_classes`` and
``in_chans`` read from the weights, so a fine-tuned timm checkpoint needs no user code.

timm imports torchvision when it is imported (``FrozenBatchNorm2d``, its data transforms),
and no torchvision wheel matches the CPU torch build medaudit installs: a mismatched one
fails at import. Building and running a network needs none of it, so when torchvision
cannot be imported, timm is imported behind a stand-in whose every attribute is an inert
class (and ``torchvision`` is taken out of ``sys.modules`` again afterwards, so nothing
else mistakes it for the real one). timm's own data pipeline is never used here.
Install: ``pip install --no-deps timm`` then ``pip install huggingface_hub safetensors``
(a plain ``pip install timm`` pulls torchvision and, with it, another torch build)."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from typing import Any

import torch

from auditor.errors import InputError, UsageError

MISSING = "--arch timm:NAME needs timm: pip install --no-deps timm && pip install huggingface_hub safetensors"


class _Inert(type):
    """A class whose attributes are inert classes: what timm's import-time references to
    torchvision (``transforms.InterpolationMode.BILINEAR``, ...) resolve to."""

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Inert(name, (object,), {})


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec: Any) -> types.ModuleType:
        module = types.ModuleType(spec.name)
        module.__path__ = []  # type: ignore[attr-defined]

        def attribute(name: str) -> Any:
            if name.startswith("__"):
                raise AttributeError(name)
            return _Inert(name, (object,), {})

        module.__getattr__ = attribute  # type: ignore[attr-defined]
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def import_timm() -> Any:
    if "timm" in sys.modules:
        return sys.modules["timm"]
    if importlib.util.find_spec("timm") is None:
        raise UsageError(MISSING)
    try:
        importlib.import_module("torchvision")
        stand_in = None
    except Exception:  # absent, or built for another torch: timm gets the stand-in
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        stand_in = _StandInFinder()
        sys.meta_path.insert(0, stand_in)
    try:
        return importlib.import_module("timm")
    except Exception as exc:
        raise UsageError(f"{MISSING} ({type(exc).__name__}: {exc})") from None
    finally:
        if stand_in is not None:
            sys.meta_path.remove(stand_in)
            for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
                del sys.modules[name]


def _shapes(net: torch.nn.Module, state: dict[str, torch.Tensor]) -> dict[str, int]:
    """num_classes from the classifier's weight, in_chans from the first convolution's."""
    params = dict(net.named_parameters())
    found: dict[str, int] = {}
    classifier = net.get_classifier() if hasattr(net, "get_classifier") else None
    weight = getattr(classifier, "weight", None)
    key = next((k for k, p in params.items() if weight is not None and p is weight), None)
    if key is not None and key in state and state[key].dim() >= 2:
        found["num_classes"] = int(state[key].shape[0])
    first_conv = next((k for k, p in params.items() if p.dim() == 4), None)
    if first_conv is not None and first_conv in state and state[first_conv].dim() == 4:
        found["in_chans"] = int(state[first_conv].shape[1])
    return found


def build_timm(name: str, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    timm = import_timm()
    if name not in timm.list_models():
        raise UsageError(f"--arch timm:{name}: timm {timm.__version__} has no model '{name}' "
                         "(see timm.list_models())")
    try:
        probe = timm.create_model(name, pretrained=False)
        return timm.create_model(name, pretrained=False, **_shapes(probe, state))
    except Exception as exc:  # timm's own refusal (e.g. an in_chans it cannot take)
        raise InputError(f"--arch timm:{name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
