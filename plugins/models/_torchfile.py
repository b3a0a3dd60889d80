"""Shared helpers for files written by ``torch.save`` / ``torch.jit.save``.

Nothing here unpickles with arbitrary globals: detection goes through
``torch.load(weights_only=True)``, whose unpickler only rebuilds tensors and plain
containers, and reads zip member *names* without unpickling anything.
"""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from auditor.errors import InputError

TORCH_SUFFIXES: tuple[str, ...] = (".pt", ".pth", ".ckpt", ".bin", ".tar")
TORCHSCRIPT_SUFFIXES: tuple[str, ...] = (".pt", ".pth", ".ts", ".torchscript")
STATE_DICT_KEYS: tuple[str, ...] = ("state_dict", "model_state_dict", "model")

_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")
# torch.jit.save writes "<root>/code/__torch__*.py"; torch.save never writes a code/ folder.
_TORCHSCRIPT_CODE_RE = re.compile(r"^(?:[^/]+/)?code/__torch__")


def zip_names(path: Path) -> list[str]:
    """Member names of a zip archive, or [] when ``path`` is not one."""
    try:
        if not zipfile.is_zipfile(path):
            return []
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return []


def is_torchscript_archive(path: Path) -> bool:
    names = zip_names(path)
    has_code = any(_TORCHSCRIPT_CODE_RE.match(n) for n in names)
    has_pickle = any(n.endswith(("/data.pkl", "/constants.pkl")) or n in ("data.pkl", "constants.pkl") for n in names)
    return has_code and has_pickle


class PickledObject(Exception):
    """The file needs globals outside torch's weights-only allow-list."""

    def __init__(self, global_name: str) -> None:
        super().__init__(global_name)
        self.global_name = global_name


def pickled_global(exc: BaseException) -> str | None:
    """The disallowed global named by a weights-only ``UnpicklingError``, else None."""
    if not isinstance(exc, pickle.UnpicklingError):
        return None
    text = str(exc)
    if "global" not in text.lower():
        return None
    match = _GLOBAL_RE.search(text)
    return match.group(1) if match else "an unknown global"


class _NoGlobals(pickle.Unpickler):
    """Stops at the first global: every way a pickle can call code goes through
    ``find_class`` first (the "Restricting Globals" recipe in the pickle docs)."""

    def find_class(self, module: str, name: str) -> Any:
        raise PickledObject(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        return None


def _first_global(path: Path) -> str | None:
    """The first global a plain (non-zip) pickle names. torch's weights-only unpickler
    gives up on protocol 4+ framing before it reaches the globals, so ask our own."""
    if zipfile.is_zipfile(path):
        return None
    try:
        with path.open("rb") as fh:
            _NoGlobals(fh).load()
    except PickledObject as exc:
        return exc.global_name
    except Exception:  # not a pickle at all, or a truncated one
        return None
    return None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def safe_load(path: Path, device: str = "cpu", *, mmap: bool = False) -> Any:
    """``torch.load(weights_only=True)``. Raises :class:`PickledObject` when the file holds
    Python objects (loading them would run code) and ``InputError`` when it is unreadable."""
    try:
        with warnings.catch_warnings():
            # "Detected pickle protocol 4": torch's heads-up for plain pickles, which we
            # handle below; nothing a user can act on.
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            try:
                return torch.load(path, weights_only=True, map_location=device, mmap=mmap)
            except RuntimeError as exc:
                # mmap only works for the zip format; legacy (pre-1.6) files take the slow path.
                if not mmap or "mmap" not in str(exc):
                    raise
                return torch.load(path, weights_only=True, map_location=device)
    except pickle.UnpicklingError as exc:
        name = pickled_global(exc) or _first_global(path)
        if name is not None:
            raise PickledObject(name) from None
        raise InputError(f"cannot read {path}: {first_line(exc)}") from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise InputError(f"cannot read {path} as a PyTorch file: {first_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - torch's unpickler meets corrupt bytes with any error
        # (IndexError "pop from empty list", KeyError, struct.error, ...): still a bad file
        raise InputError(f"cannot read {path} as a PyTorch file: {type(exc).__name__}: {first_line(exc)}") from None


def classify(path: Path) -> str | None:
    """'state-dict', 'pickle' or None (not a torch.save file, or not one we understand).
    Memory-maps the file so detection stays cheap for large checkpoints."""
    try:
        obj = safe_load(path, mmap=True)
    except PickledObject:
        return "pickle"
    except InputError:
        return None
    return "state-dict" if extract_state_dict(obj) is not None else None


def _is_tensor_dict(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def extract_state_dict(obj: Any) -> dict[str, torch.Tensor] | None:
    """The tensors of a bare state dict or of a checkpoint ``{'state_dict': ..., ...}``."""
    if _is_tensor_dict(obj):
        return obj
    if isinstance(obj, dict):
        for key in STATE_DICT_KEYS:
            if _is_tensor_dict(obj.get(key)):
                return obj[key]
    return None


def pickled_module_message(path: Path, global_name: str) -> str:
    return (
        f"{path} is a pickled module (it needs {global_name}); loading it runs code from the file. "
        "Re-run with --trust-model only if you trust its author."
    )
