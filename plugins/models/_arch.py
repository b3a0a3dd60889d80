"""Build a network from ``--arch module:callable`` and load a state dict into it.

``--arch`` imports, and so runs, the named module: it is code the user chose to trust, like
``--trust-model``. Installed modules are always found before the working directory."""

from __future__ import annotations

import importlib
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Iterator

import torch

from auditor.errors import InputError, UsageError

_SHOWN_KEYS = 5


@contextmanager
def _working_directory_last() -> Iterator[None]:
    """The working directory at the END of sys.path while the --arch module is imported and
    its builder called, then removed again.

    The console script does not put the working directory on sys.path (``python -m``
    does); users expect ``--arch mynet:build`` to find ./mynet.py either way. Placed last, a
    stray ./scipy.py or ./matplotlib.py can never shadow an installed module (imported by
    the user's module or by medaudit later), and once the network is built no later
    import can reach into the folder at all."""
    cwd = os.getcwd()
    if cwd in sys.path:  # already there (python -m, PYTHONPATH): not ours to move
        yield
        return
    sys.path.append(cwd)
    importlib.invalidate_caches()
    try:
        yield
    finally:
        if cwd in sys.path:
            sys.path.remove(cwd)


def _shadow_hint(module: ModuleType, module_name: str) -> str:
    """Why ./name.py was not used: an installed module of that name always wins."""
    local = Path.cwd() / f"{module_name.split('.')[0]}.py"
    origin = Path(getattr(module, "__file__", "") or "")
    if local.is_file() and origin.resolve() != local.resolve():
        return f" (./{local.name} is ignored: an installed module '{module_name}' comes first; rename your file)"
    return ""


def build_arch(spec: str) -> torch.nn.Module:
    """Import ``module`` and call ``callable()`` with no arguments."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"--arch must look like module:callable (e.g. mynets:resnet18), got '{spec}'")
    with _working_directory_last():
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # any import-time failure is the user's module, not ours
            raise UsageError(f"--arch {spec}: cannot import '{module_name}': {type(exc).__name__}: {exc}") from None
        target: object = module
        for part in attr.split("."):
            if not hasattr(target, part):
                hint = _shadow_hint(module, module_name)
                raise UsageError(f"--arch {spec}: '{module_name}' has no attribute '{attr}'{hint}")
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
