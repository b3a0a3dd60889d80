"""Every string a ``torch.export`` archive gives torch to evaluate, checked before loading.

What torch 2.13's reader does with text from the file (``torch/_export/serde/serialize.py``,
``torch/export/_unlift.py``, ``torch/export/pt2_archive/_package.py``), and the check here:

* ``expr_str`` (sizes, strides, offsets, sym values): ``sympy.sympify``, i.e. ``eval`` ->
  :func:`check_size_expr`.
* ``guards_code``: pasted into Python source that ``module()`` compiles with ``exec`` ->
  :func:`check_guard`.
* node ``target`` and ``as_operator`` arguments: resolved by ``getattr`` from ``torch``,
  ``operator`` or ``math`` and called when the model runs (``torch.os.system`` resolves) ->
  :func:`check_target`: built-in op namespaces minus :mod:`._unsafe_ops`, and a short list
  of symbolic-size helpers.
* ``forward_arg_names``, parameter/buffer/constant names, dict keys of the input spec:
  pasted unescaped into the generated ``forward`` source (``def forward(self, <names>)``,
  ``getattr(self, "<name>")``) -> every other string and every key must be a plain name.
* ``metadata`` (stack traces, module paths) and ``as_string`` arguments: only ``getattr``
  on ``torch``/repr'd into code -> free text, without control characters.
* pickles and AOTInductor libraries: refused by ``exported.py``'s guard, not here.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from plugins.models._expr_grammar import Refused, check_guard, check_size_expr
from plugins.models._unsafe_ops import refusal

_NAME_RE = re.compile(r"[A-Za-z0-9_.:+\-]*")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u2029]")
_FREE_TEXT_KEYS = frozenset({"metadata", "as_string", "as_strings"})
_SPEC_KEYS = frozenset({"in_spec", "out_spec"})

_OP_RE = re.compile(r"torch\.ops\.(\w+)\.(\w+)(?:\.(\w+))?")
_HIGHER_ORDER = frozenset({
    "cond", "while_loop", "map_impl", "scan", "associative_scan", "invoke_subgraph",
    "wrap_with_set_grad_enabled", "wrap_with_autocast", "auto_functionalized",
    "auto_functionalized_v2", "out_dtype", "hints_wrapper",
})
_PYTHON_TARGETS = frozenset(
    {f"_operator.{name}" for name in (
        "add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "neg", "pos", "abs",
        "eq", "ne", "le", "ge", "lt", "gt", "and_", "or_", "xor", "not_", "lshift", "rshift",
        "getitem",
    )}
    | {f"math.{name}" for name in ("trunc", "floor", "ceil", "sqrt")}
    | {f"torch.sym_{name}" for name in ("not", "int", "float", "ite", "max", "min", "sqrt", "sum")}
    | {"torch._C._set_grad_enabled", "torch.amp.autocast_mode._enter_autocast",
       "torch.amp.autocast_mode._exit_autocast", "torch._assert"}
)


def check_target(text: Any) -> None:
    """Refuse an operator name unless it is a built-in tensor or size operation."""
    if not isinstance(text, str):
        raise Refused("an operator that is not a name")
    if text in _PYTHON_TARGETS:
        return
    match = _OP_RE.fullmatch(text)
    if match is None:
        raise Refused(f"the operator {text[:80]!r}")
    namespace, name = match.group(1), match.group(2)
    if namespace == "higher_order":
        if name not in _HIGHER_ORDER:
            raise Refused(f"the higher-order operator {text!r}")
        return
    why = refusal(f"{namespace}::{name}")
    if why is not None:
        raise Refused(f"the operator {text!r} ({why})")


def _check_name(text: str) -> None:
    if not _NAME_RE.fullmatch(text):
        raise Refused(f"{text[:60]!r} where torch writes a plain name")


def _check_free_text(text: str) -> None:
    if _CONTROL_RE.search(text):
        raise Refused("a control character (a line break Python would honour) in free text")


def _check_spec(text: str) -> None:
    """A pytree spec is JSON inside JSON; its strings become dict keys in generated code."""
    try:
        spec = json.loads(text)
    except ValueError:
        raise Refused("an input/output spec that is not JSON") from None
    for value in _strings(spec):
        if value.startswith(("[", "{")):  # a context is JSON text once more
            _check_spec(value)
        else:
            _check_name(value)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _walk(value: Any, path: str, key: str, errors: list[str]) -> None:
    def refuse(why: Refused) -> None:
        errors.append(f"{path}: {why}")

    if key in _FREE_TEXT_KEYS:
        for text in _strings(value):
            try:
                _check_free_text(text)
            except Refused as why:
                refuse(why)
        return
    if isinstance(value, dict):
        # range_constraints is keyed by printed sizes ("2*s0"); torch only looks them up
        check_key = check_size_expr if key == "range_constraints" else _check_name
        for child_key, child in value.items():
            try:
                check_key(str(child_key))
            except Refused as why:
                refuse(why)
            _walk(child, f"{path}.{child_key}" if path else str(child_key), str(child_key), errors)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            _walk(child, f"{path}[{index}]", key, errors)
    elif isinstance(value, str):
        checks = {"expr_str": check_size_expr, "guards_code": check_guard, "target": check_target,
                  "as_operator": check_target}
        check = checks.get(key, _check_spec if key in _SPEC_KEYS else _check_name)
        try:
            check(value)
        except Refused as why:
            refuse(why)


def document_errors(document: Any) -> list[str]:
    """Every field of a parsed archive JSON that torch would evaluate and that is refused."""
    errors: list[str] = []
    _walk(document, "", "", errors)
    return errors


def _evaluated(member: str) -> bool:
    """Archive JSON the reader turns into objects: programs and their payload configs."""
    inner = member.split("/", 1)[1] if "/" in member else member
    return inner.startswith("models/") or inner.endswith(("_config.json", "serialized_exported_program.json"))


def archive_errors(path: Path) -> list[str]:
    """What in the zip at ``path`` would make torch evaluate text from the file."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        seen: set[str] = set()
        for name in names:
            inner = name.split("/", 1)[-1]
            if inner in seen:
                # two members of one name: zip readers disagree on which one counts
                return [f"{name}: the archive holds this member twice"]
            seen.add(inner)
        errors: list[str] = []
        for name in filter(_evaluated, names):
            try:
                document = json.loads(archive.read(name))
            except ValueError:
                errors.append(f"{name}: not JSON")
                continue
            errors.extend(f"{name} {error}" for error in document_errors(document))
        return errors
