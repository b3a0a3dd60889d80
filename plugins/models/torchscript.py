"""TorchScript archives (``torch.jit.save``)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import ClassVar

import torch

from auditor.errors import InputError
from auditor.interfaces import ModelLoader, ModelOptions
from plugins.models._script_ops import refused_calls
from plugins.models._torchfile import TORCHSCRIPT_SUFFIXES, first_line, is_torchscript_archive
from plugins.models._unsafe_ops import first_of


class TorchScriptLoader(ModelLoader):
    """``torch.jit.load``. Its C++ unpickler only resolves TorchScript types, never
    arbitrary Python globals, so loading an untrusted archive does not run Python code.
    The model's own code can still reach files, threads and the network through a few
    operators; models that call them are refused unless ``--trust-model``."""

    name: ClassVar[str] = "torchscript"
    suffixes: ClassVar[tuple[str, ...]] = TORCHSCRIPT_SUFFIXES
    description: ClassVar[str] = "TorchScript archive (torch.jit.save)"

    def detect(self, path: Path) -> bool:
        # .pt/.pth are also used by torch.save; only the archive's code/ folder tells them apart.
        return path.suffix.lower() in self.suffixes and is_torchscript_archive(path)

    def load(self, path: Path, options: ModelOptions) -> torch.nn.Module:
        try:
            with warnings.catch_warnings():
                # torch 2.13 deprecates TorchScript; users cannot act on that warning here.
                warnings.simplefilter("ignore", DeprecationWarning)
                module = torch.jit.load(str(path), map_location=options.device)
        except Exception as exc:  # torch raises RuntimeError, ValueError or c10 errors here
            raise InputError(f"cannot load {path} as TorchScript: {first_line(exc)}") from None
        refused = [] if options.trust_model else refused_calls(module)
        if refused:
            raise InputError(
                f"{path} was refused: its code calls an operation that acts outside the model, "
                f"{first_of(refused)}; re-run with --trust-model only if you trust its author"
            )
        return module.eval()
