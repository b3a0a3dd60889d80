"""``--custom-objects``: the Keras classes and functions a model file names but Keras does
not ship, taken from a module the user names, never from the model file.

Importing that module runs its code, as ``--arch`` does: the flag itself is the user's
consent (it names code they chose, not code inside the file they are auditing), so it
needs no ``--trust-model``; ``safe_mode`` stays on, and a ``Lambda`` layer's bytecode in the
model file is still refused without ``--trust-model``.

Spec: ``path/to/file.py`` or ``path/to/file.py:NAME`` (a file), or ``package.module:NAME``
(installed modules first, then the working directory, as for ``--arch``). ``NAME`` defaults
to ``custom_objects`` and must be a dict from the names in the model file to classes or
functions."""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

from auditor.errors import UsageError
from plugins.models._arch import _working_directory_last

DEFAULT_NAME = "custom_objects"


def _split(spec: str) -> tuple[str, str]:
    # "C:\\x.py" has no place here (POSIX paths); the last ':' separates the dict's name
    where, sep, name = spec.rpartition(":")
    if not sep:
        return spec, DEFAULT_NAME
    if not where or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise UsageError(f"--custom-objects must look like file.py, file.py:NAME or module:NAME, got '{spec}'")
    return where, name


def _import_file(path: Path, spec: str) -> ModuleType:
    if not path.is_file():
        raise UsageError(f"--custom-objects {spec}: {path} is not a file")
    module_name = "medaudit_custom_objects_" + re.sub(r"\W", "_", path.stem)
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise UsageError(f"--custom-objects {spec}: {path} is not a Python module")
    module = importlib.util.module_from_spec(loader_spec)
    loader_spec.loader.exec_module(module)
    return module


def load_custom_objects(spec: str) -> dict[str, Any]:
    """The dict ``spec`` names, checked: string keys, class or function values."""
    where, name = _split(str(spec).strip())
    try:
        if where.endswith(".py") or "/" in where:
            module = _import_file(Path(where), spec)
        else:
            with _working_directory_last():
                module = importlib.import_module(where)
    except UsageError:
        raise
    except Exception as exc:  # the user's module failed to import: their code, one line
        first = (str(exc).strip().splitlines() or [""])[0]
        raise UsageError(f"--custom-objects {spec}: importing it raised {type(exc).__name__}: {first}") from None
    objects = getattr(module, name, None)
    if not isinstance(objects, dict) or not objects:
        raise UsageError(f"--custom-objects {spec}: '{name}' in that module is not a non-empty dict of "
                         "name -> class or function")
    for key, value in objects.items():
        if not isinstance(key, str) or not callable(value):
            raise UsageError(f"--custom-objects {spec}: entry {key!r} is not a name -> class or function")
    return dict(objects)
