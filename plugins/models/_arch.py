"""Build a network from ``--arch module:callable`` and load a state dict into it."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import torch

from auditor.errors import InputError, UsageError

_SHOWN_KEYS = 5


def _import(module_name: str) -> object:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # The console script does not put the working directory on sys.path (``python -m``
        # does); users expect ``--arch mynet:build`` to find ./mynet.py either way.
        cwd = os.getcwd()
        if exc.name != module_name.split(".")[0] or cwd in sys.path:
            raise
        sys.path.insert(0, cwd)
        return importlib.import_module(module_name)


def build_arch(spec: str) -> torch.nn.Module:
    """Import ``module`` and call ``callable()`` with no arguments."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"--arch must look like module:callable (e.g. mynets:resnet18), got '{spec}'")
    try:
        module = _import(module_name)
    except Exception as exc:  # any import-time failure is the user's module, not ours
        raise UsageError(f"--arch {spec}: cannot import '{module_name}': {type(exc).__name__}: {exc}") from None
    target: object = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise UsageError(f"--arch {spec}: '{module_name}' has no attribute '{attr}'")
        target = getattr(target, part)
    if not callable(target):
        raise UsageError(f"--arch {spec}: '{attr}' is not callable")
    try:
        net = target()
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UsageError(f"--arch {spec}: calling {attr}() raised {type(exc).__name__}: {first}") from None
    if not isinstance(net, torch.nn.Module):
        raise UsageError(f"--arch {spec}: {attr}() returned {type(net).__name__}, not a torch.nn.Module")
    return net


def _strip_data_parallel_prefix(state: dict[str, torch.Tensor], net: torch.nn.Module) -> dict[str, torch.Tensor]:
    # Checkpoints saved from nn.DataParallel / DDP prefix every key with "module.".
    expected = net.state_dict().keys()
    if state and all(k.startswith("module.") for k in state) and not any(k.startswith("module.") for k in expected):
        return {k[len("module."):]: v for k, v in state.items()}
    return state


def _few(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN_KEYS])
    return shown + (f" (+{len(keys) - _SHOWN_KEYS} more)" if len(keys) > _SHOWN_KEYS else "")


def load_weights(net: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, spec: str) -> torch.nn.Module:
    """``load_state_dict`` with every key accounted for (strict), as an InputError."""
    state = _strip_data_parallel_prefix(state, net)
    expected = set(net.state_dict().keys())
    missing = sorted(expected - state.keys())
    unexpected = sorted(state.keys() - expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s): {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s): {_few(unexpected)}")
        raise InputError(f"{path} does not match --arch {spec}: {'; '.join(parts)}")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = next((ln for ln in lines if "size mismatch" in ln), lines[-1] if lines else type(exc).__name__)
        raise InputError(f"{path} does not match --arch {spec}: {detail}") from None
    return net
