"""Keras 3 models (``.keras``, Keras ``.h5``), run on Keras' PyTorch backend.

With ``KERAS_BACKEND=torch`` a Keras 3 model is itself a ``torch.nn.Module`` whose outputs
carry autograd, so white-box attacks get gradients and TensorFlow is not needed.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from pathlib import Path
from typing import Any, ClassVar

import torch

from auditor.errors import InputError
from auditor.interfaces import ModelLoader, ModelOptions
from plugins.models._custom_objects import load_custom_objects
from plugins.models._torchfile import first_line

MISSING_DEPENDENCY = "Keras models need the optional dependency: pip install 'medaudit[keras]'"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
PROBABILITY_ACTIVATIONS: frozenset[str] = frozenset({"softmax", "sigmoid"})


def import_keras() -> Any:
    """Keras on its PyTorch backend. The backend is fixed when Keras is first imported, so
    the variable must be set before that, and a Keras already running on another backend
    cannot serve us."""
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = "torch"
    try:
        # Keras' first import brings absl and torch's logging, whose handlers keep the
        # sys.stderr of that moment and absl closes it at exit when it is no longer the
        # current one: under a test runner or an embedding application that is a borrowed,
        # short-lived stream ("I/O operation on closed file"). They get the process's own.
        with contextlib.redirect_stderr(sys.__stderr__ or sys.stderr), \
                contextlib.redirect_stdout(sys.__stdout__ or sys.stdout):
            keras = importlib.import_module("keras")
    except ImportError:
        raise InputError(MISSING_DEPENDENCY) from None
    backend = keras.backend.backend()
    if backend != "torch":
        raise InputError(
            f"Keras was already imported with the '{backend}' backend; medaudit needs its torch "
            "backend for gradients: unset KERAS_BACKEND or set it to 'torch'"
        )
    return keras


def _activation_name(activation: Any) -> str | None:
    name = getattr(activation, "__name__", None)
    return name if name in PROBABILITY_ACTIVATIONS else None


def strip_output_activation(keras: Any, model: Any) -> tuple[Any, str | None]:
    """(model returning pre-activation logits, name of the activation removed or None).
    Attacking saturated probabilities underestimates vulnerability, so a final softmax or
    sigmoid is taken off rather than audited."""
    last = model.layers[-1] if getattr(model, "layers", None) else None
    if last is None:
        return model, None
    if isinstance(last, keras.layers.Softmax):
        removed: str | None = "softmax"
    elif isinstance(last, keras.layers.Activation):
        removed = _activation_name(last.activation)
    else:
        removed = _activation_name(getattr(last, "activation", None))
        if removed is not None:
            # a Dense/Conv layer with a fused activation: ours to change, it was just loaded
            last.activation = keras.activations.linear
            return model, removed
        return model, None
    if removed is None or len(model.layers) < 2:
        return model, None
    try:  # a functional model: its graph up to the activation layer's input
        logits = keras.Model(inputs=model.inputs, outputs=last.input)
    except Exception:
        return model, None  # subclassed model without a graph: leave its outputs as they are
    return logits, removed


class KerasAdapter(torch.nn.Module):
    """medaudit's (N, C, H, W) in [0, 1] contract around a channels-last Keras model."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.permute(0, 2, 3, 1))


class KerasLoader(ModelLoader):
    name: ClassVar[str] = "keras"
    suffixes: ClassVar[tuple[str, ...]] = (".keras", ".h5", ".hdf5")
    description: ClassVar[str] = "Keras 3 model (.keras, .h5) on Keras' PyTorch backend (optional: medaudit[keras])"

    def __init__(self) -> None:
        self._facts: dict[Path, dict[str, Any]] = {}

    def detect(self, path: Path) -> bool:
        """The suffix and the container: a zip archive (.keras) or an HDF5 file (.h5)."""
        if not super().detect(path):
            return False
        with path.open("rb") as fh:
            head = fh.read(8)
        return head.startswith(b"PK\x03\x04") if path.suffix.lower() == ".keras" else head == HDF5_SIGNATURE

    def load(self, path: Path, options: ModelOptions) -> torch.nn.Module:
        keras = import_keras()
        spec = options.extra.get("custom_objects")
        custom = load_custom_objects(spec) if spec else None  # the user's module: imported, so run
        try:
            # safe_mode refuses Lambda layers carrying Python bytecode: loading them runs it
            model = keras.saving.load_model(str(path), compile=False, safe_mode=not options.trust_model,
                                            custom_objects=custom)
        except Exception as exc:  # corrupt archive, unknown class, Lambda in safe mode, ...
            hint = (" (pass --trust-model only if you trust its author)" if "safe_mode" in str(exc) else
                    "" if custom else " (a custom layer? name the module defining it with --custom-objects)"
                    if "deserialized" in str(exc) or "Unknown" in str(exc) else "")
            raise InputError(f"cannot load {path} as a Keras model: {first_line(exc)}{hint}") from None
        if not isinstance(model, torch.nn.Module):
            raise InputError(f"{path}: Keras returned {type(model).__name__}, not a torch module")
        model, removed = strip_output_activation(keras, model)
        shape = tuple(getattr(model, "input_shape", ()) or ())
        self._facts[path] = {
            "keras_version": keras.__version__, "keras_backend": keras.backend.backend(),
            "output_activation_removed": removed, "declared_input_shape": list(shape) or None,
            "custom_objects": {"spec": spec, "names": sorted(custom)} if custom else None,
        }
        if len(shape) == 4 and isinstance(shape[3], int):  # channels-last: (N, H, W, C)
            self._facts[path]["input_channels"] = int(shape[3])
        return KerasAdapter(model).to(options.device).eval()

    def details(self, path: Path) -> dict[str, Any]:
        """Loader facts for results.json: Keras version and backend, the declared input
        shape and the output activation taken off (audited on logits). Called after ``load``."""
        return dict(self._facts.get(path, {}))

    def input_size(self, path: Path) -> tuple[int, int] | None:
        """(H, W) of the declared (N, H, W, C) input when both are fixed."""
        shape = self._facts.get(path, {}).get("declared_input_shape") or []
        if len(shape) != 4 or not all(isinstance(d, int) and d > 0 for d in shape[1:3]):
            return None
        return int(shape[1]), int(shape[2])
