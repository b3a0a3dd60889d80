"""State dicts and checkpoints: tensors only, plus ``--arch module:callable``."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch

from auditor.errors import InputError
from auditor.interfaces import ModelLoader, ModelOptions
from plugins.models._arch import build_arch, load_weights
from plugins.models._timm import build_timm
from plugins.models._torchfile import (
    STATE_DICT_KEYS,
    TORCH_SUFFIXES,
    PickledObject,
    classify,
    extract_state_dict,
    pickled_module_message,
    safe_load,
)


class StateDictLoader(ModelLoader):
    """``torch.load(weights_only=True)``: rebuilds tensors and containers only, so the
    file cannot run code; the code comes from ``--arch``, which the user chose."""

    name: ClassVar[str] = "state-dict"
    suffixes: ClassVar[tuple[str, ...]] = TORCH_SUFFIXES
    description: ClassVar[str] = (
        "state dict or checkpoint (torch.save of tensors), needs --arch module:callable"
    )

    def detect(self, path: Path) -> bool:
        return path.suffix.lower() in self.suffixes and classify(path) == "state-dict"

    def load(self, path: Path, options: ModelOptions) -> torch.nn.Module:
        try:
            obj = safe_load(path, options.device)
        except PickledObject as exc:
            raise InputError(pickled_module_message(path, exc.global_name)) from None
        state = extract_state_dict(obj)
        if state is None:
            keys = "/".join(f"'{k}'" for k in STATE_DICT_KEYS)
            raise InputError(
                f"{path} holds a {type(obj).__name__}, not a state dict "
                f"(a dict of tensors, or a checkpoint with a {keys} entry of tensors)"
            )
        if not options.arch:
            raise InputError(
                f"{path} is a state dict (weights only); it needs --arch module:callable "
                "naming a function that builds the network"
            )
        return build_from_state_dict(path, state, options)


def build_from_state_dict(path: Path, state: dict[str, torch.Tensor], options: ModelOptions) -> torch.nn.Module:
    assert options.arch is not None
    if options.arch.startswith("timm:"):  # a timm network shaped by the weights (plugins.models._timm)
        net = load_weights(build_timm(options.arch[len("timm:"):], state), state, path, options.arch)
    else:
        net = load_weights(build_arch(options.arch), state, path, options.arch)
    return net.to(options.device).eval()
