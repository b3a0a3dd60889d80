"""``torch.export`` programs (``torch.export.save`` -> ``.pt2``)."""

from __future__ import annotations

import io
import json
import os
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import torch

from auditor.errors import InputError
from auditor.interfaces import ModelLoader, ModelOptions
from plugins.models._pt2_scan import archive_errors, document_errors
from plugins.models._torchfile import first_line, zip_names
from plugins.models._unsafe_ops import first_of


class _Refused(Exception):
    """Something in the archive would run code from the file; refused."""


class _NoGlobalsUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise _Refused(f"it holds a pickled Python object ({module}.{name})")


class _SafePickle:
    """Stands in for the ``pickle`` module inside torch's pt2 reader: ``loads`` refuses globals."""

    def __getattr__(self, name: str) -> Any:
        return getattr(pickle, name)

    @staticmethod
    def loads(data: bytes, **kwargs: Any) -> Any:
        return _NoGlobalsUnpickler(io.BytesIO(data), **kwargs).load()


def _refuse_aoti(*args: Any, **kwargs: Any) -> Any:
    raise _Refused("it contains an AOTInductor-compiled model (a native shared library)")


def _refuse_errors(errors: list[str]) -> None:
    if errors:
        raise _Refused(f"torch would evaluate text from the file: {first_of(errors)}")


def _checked(parse: Any) -> Any:
    """Wraps torch's JSON-to-dataclass readers: the bytes torch itself parses are checked
    too, so a zip that reads differently in Python's zipfile and torch's reader gains nothing."""

    def wrapper(cls: Any, data: Any) -> Any:
        document = json.loads(data) if isinstance(data, (bytes, str)) else data
        _refuse_errors(document_errors(document))
        return parse(cls, data)

    return wrapper


_FORCE = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"
_FORCE_NO = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


@contextmanager
def _no_code_from_file() -> Iterator[None]:
    """``torch.export.load`` is not safe on untrusted files (torch 2.13): it calls
    ``torch.load(weights_only=False)`` on pickled weights and constants, ``pickle.loads``
    on opaque constants, and dlopens AOTInductor libraries. We force weights-only
    ``torch.load`` through torch's own switch, swap the reader's ``pickle`` for one that
    refuses globals and refuse AOTInductor payloads. Text torch evaluates (sizes, guards,
    operator and argument names) is checked by :mod:`plugins.models._pt2_scan`, on the
    archive beforehand and again on the very bytes torch parses. The environment variable is
    process-wide; it is set only for the duration of the load and only ever makes other
    loads stricter. If torch's internals move, we refuse rather than load unguarded."""
    try:
        from torch._export.serde import serialize
        from torch.export.pt2_archive import _package as reader
    except ImportError:
        reader = serialize = None
    hooks = (
        (reader, ("pickle", "_load_aoti", "_dict_to_dataclass")),
        (serialize, ("_bytes_to_dataclass",)),
    )
    if any(module is None or not all(hasattr(module, n) for n in names) for module, names in hooks):
        raise _Refused(f"torch {torch.__version__} changed torch.export internals medaudit guards")
    saved = {k: os.environ.get(k) for k in (_FORCE, _FORCE_NO)}
    saved_reader = reader.pickle, reader._load_aoti, reader._dict_to_dataclass
    saved_parse = serialize._bytes_to_dataclass
    os.environ[_FORCE] = "1"
    os.environ.pop(_FORCE_NO, None)  # torch refuses to run with both set
    reader.pickle, reader._load_aoti = _SafePickle(), _refuse_aoti
    reader._dict_to_dataclass = _checked(reader._dict_to_dataclass)  # payload configs
    serialize._bytes_to_dataclass = _checked(saved_parse)  # programs
    try:
        yield
    finally:
        reader.pickle, reader._load_aoti, reader._dict_to_dataclass = saved_reader
        serialize._bytes_to_dataclass = saved_parse
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _training_ops(module: torch.nn.Module) -> list[str]:
    """Ops the graph runs in training mode: the exported graph is frozen in the mode
    ``export`` saw, and ``.eval()`` cannot change it afterwards."""
    graph = getattr(module, "graph", None)
    found = []
    for node in getattr(graph, "nodes", []):
        target = str(node.target)
        if node.op != "call_function":
            continue
        if target == "aten.batch_norm.default" and len(node.args) > 5 and node.args[5] is True:
            found.append("batch_norm")
        elif target in ("aten.dropout.default", "aten.feature_dropout.default") and len(node.args) > 2 and node.args[2] is True:
            found.append("dropout")
        elif target in ("aten._native_batch_norm_legit.default", "aten.native_dropout.default"):
            found.append(target.split(".")[1])
    return sorted(set(found))


class _Frozen(torch.nn.Module):
    """Holds an exported graph module. ``train()``/``eval()`` on an exported module raise
    NotImplementedError, which would break every ``.eval()`` on a wrapper around it; the
    graph's mode is fixed at export time, so switching modes is a no-op here."""

    def __init__(self, graph_module: torch.nn.Module) -> None:
        super().__init__()
        self.graph_module = graph_module

    def train(self, mode: bool = True) -> "_Frozen":
        self.training = mode
        return self

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.graph_module(*args, **kwargs)


class ExportLoader(ModelLoader):
    """``torch.export.load(path).module()``, without running code from the file."""

    name: ClassVar[str] = "export"
    suffixes: ClassVar[tuple[str, ...]] = (".pt2",)
    description: ClassVar[str] = "torch.export program (torch.export.save)"

    def detect(self, path: Path) -> bool:
        return path.suffix.lower() in self.suffixes and bool(zip_names(path))

    def load(self, path: Path, options: ModelOptions) -> torch.nn.Module:
        try:
            _refuse_errors(archive_errors(path))
            with _no_code_from_file():
                program = torch.export.load(str(path))
                # module() compiles the (checked) guards_code with exec: keep it inside the guard
                graph_module = program.module()
        except _Refused as exc:
            raise InputError(
                f"{path} was refused: {exc}; save the model with torch.export.save, or as TorchScript or ONNX"
            ) from None
        except pickle.UnpicklingError as exc:
            raise InputError(
                f"{path} was refused: it holds pickled Python objects ({first_line(exc)[:200]}); "
                "re-export it with plain tensors"
            ) from None
        except Exception as exc:  # torch raises many types for a corrupt or foreign archive
            raise InputError(f"cannot load {path} as a torch.export program: {first_line(exc)}") from None
        training = _training_ops(graph_module)
        if training:
            raise InputError(
                f"{path} was exported in training mode ({', '.join(training)}); "
                "call model.eval() before torch.export.export and save it again"
            )
        return _Frozen(graph_module.to(options.device))
