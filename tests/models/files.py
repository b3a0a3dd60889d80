"""Writers for every model format, and hostile files, used by the model-loading tests."""

from __future__ import annotations

import importlib.util
import warnings
import zipfile
from pathlib import Path
from typing import Callable

import pytest
import torch


def save_torchscript(model: torch.nn.Module, path: Path) -> Path:
    torch.jit.save(torch.jit.script(model), str(path))
    return path


def save_export(model: torch.nn.Module, path: Path, channels: int = 3) -> Path:
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(
        model, (torch.rand(2, channels, 16, 16),), dynamic_shapes={"x": {0: batch}}
    )
    torch.export.save(program, str(path))
    return path


def save_onnx(model: torch.nn.Module, path: Path, channels: int = 3) -> Path:
    """The dynamo exporter needs onnxscript; the TorchScript-based one does not."""
    dynamo = importlib.util.find_spec("onnxscript") is not None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (torch.rand(2, channels, 16, 16),),
                str(path),
                input_names=["x"],
                output_names=["logits"],
                dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
                dynamo=dynamo,
            )
    except Exception as exc:  # an exporter that cannot run here is not what we test
        pytest.skip(f"torch.onnx.export is not usable here: {type(exc).__name__}: {exc}")
    return path


class CreatesFile:
    """Unpickling this calls ``open(path, "w")``: proof that code from the file ran."""

    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self) -> tuple[Callable[..., object], tuple[str, str]]:
        return (open, (self.target, "w"))


def rewrite_zip(source: Path, dest: Path, edit: Callable[[str, bytes], bytes | None], extra: dict[str, bytes] | None = None) -> Path:
    """Copy a zip archive member by member; ``edit`` may replace or (None) drop a member."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as zout:
        for name in zin.namelist():
            data = edit(name, zin.read(name))
            if data is not None:
                zout.writestr(name, data)
        for name, data in (extra or {}).items():
            zout.writestr(name, data)
    return dest
