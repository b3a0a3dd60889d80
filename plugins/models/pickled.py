"""Whole pickled modules (``torch.save(model)``). Loading one runs code from the file."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, ClassVar

import torch

from auditor.errors import InputError
from auditor.interfaces import ModelLoader, ModelOptions
from plugins.models._torchfile import (
    TORCH_SUFFIXES,
    PickledObject,
    classify,
    extract_state_dict,
    first_line,
    pickled_module_message,
    safe_load,
)
from plugins.models.state_dict import build_from_state_dict

_MODULE_KEYS = ("model", "module", "net", "network")


def _find_module(obj: Any) -> torch.nn.Module | None:
    if isinstance(obj, torch.nn.Module):
        return obj
    if isinstance(obj, dict):
        for key in _MODULE_KEYS:
            if isinstance(obj.get(key), torch.nn.Module):
                return obj[key]
    return None


class PickleLoader(ModelLoader):
    """Only with ``--trust-model``. Without it we only ever run the weights-only unpickler,
    which stops at the first global the file names, before anything is called."""

    name: ClassVar[str] = "pickle"
    suffixes: ClassVar[tuple[str, ...]] = (*TORCH_SUFFIXES, ".pkl")
    description: ClassVar[str] = "pickled nn.Module (torch.save(model)); runs code, needs --trust-model"
    executes_code: ClassVar[bool] = True

    def detect(self, path: Path) -> bool:
        return path.suffix.lower() in self.suffixes and classify(path) == "pickle"

    def load(self, path: Path, options: ModelOptions) -> torch.nn.Module:
        if not options.trust_model:
            try:
                safe_load(path, options.device)
            except PickledObject as exc:
                raise InputError(pickled_module_message(path, exc.global_name)) from None
            # Tensors only: nothing to trust, the state-dict loader handles it.
            raise InputError(f"{path} holds only tensors; load it with --format state-dict --arch module:callable")
        try:
            if path.suffix.lower() == ".pkl":  # plain pickle.dump, not torch.save's container
                with path.open("rb") as fh:
                    obj = pickle.load(fh)
            else:
                obj = torch.load(path, weights_only=False, map_location=options.device)
        except Exception as exc:  # unpickling user classes can raise anything
            raise InputError(
                f"cannot unpickle {path}: {type(exc).__name__}: {first_line(exc)} "
                "(the classes it was saved with must be importable)"
            ) from None
        module = _find_module(obj)
        if module is not None:
            return module.to(options.device).eval()
        state = extract_state_dict(obj)
        if state is not None and options.arch:
            return build_from_state_dict(path, state, options)
        if state is not None:
            raise InputError(f"{path} holds a state dict; it needs --arch module:callable to build the network")
        raise InputError(f"{path} holds a {type(obj).__name__}, not a torch.nn.Module")
