"""What a loaded TorchScript module would call, checked before it runs.

TorchScript code is plain text in the archive (``code/__torch__/*.py``), so anyone can edit
a model to call ``torch.from_file(path, True, n)`` (which maps, and then overwrites, any file)
and the result still loads. ``torch.jit.load`` itself runs no model code; running
``forward`` does. So, after loading and before the first call, every method of the module
and of each submodule (and their forward hooks) is inlined and every node, nested blocks
and subgraphs included, is checked against :mod:`plugins.models._unsafe_ops`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from plugins.models._unsafe_ops import refusal

_CUSTOM_CLASS = "__torch__.torch.classes."  # torchbind classes: native code, any behaviour


def _graphs(module: torch.jit.ScriptModule) -> Iterator[tuple[str, Any]]:
    for name, sub in module.named_modules():
        prefix = f"{name}." if name else ""
        for method in sub._c._method_names():
            yield prefix + method, sub._c._get_method(method).graph
        for kind in ("_get_forward_hooks", "_get_forward_pre_hooks"):
            for hook in getattr(sub._c, kind)():
                yield f"{prefix}{getattr(hook, 'name', 'hook')}", hook.graph


def _nodes(block: Any) -> Iterator[Any]:
    for node in block.nodes():
        yield node
        for inner in node.blocks():
            yield from _nodes(inner)
        for attribute in node.attributeNames():
            if node.kindOf(attribute) == "g":  # prim::fork, DifferentiableGraph, ...
                yield from _nodes(node.g(attribute))


def _node_refusal(node: Any, module_types: set[str]) -> str | None:
    kind = node.kind()
    why = refusal(kind)
    if why is not None:
        return why
    for value in list(node.outputs()) + list(node.inputs()):
        if value.type().annotation_str.startswith(_CUSTOM_CLASS):
            return f"uses the custom class {value.type().annotation_str} (native code)"
    if kind in ("prim::CallFunction", "prim::CallMethod"):
        # Inlining resolves every call it can see; what is left is dispatched at run time.
        # Calls on submodules (module interfaces) are fine: their methods are checked too.
        receiver = next(iter(node.inputs()), None)
        producer = receiver.node().kind() if receiver is not None else ""
        name = receiver.type().annotation_str if receiver is not None else ""
        if kind == "prim::CallMethod" and (producer == "prim::GetAttr" or name in module_types):
            return None
        return "calls code that cannot be inspected before it runs"
    return None


def refused_calls(module: torch.jit.ScriptModule) -> list[str]:
    """``"method: op (why)"`` for every refused operation the module could run; [] when none."""
    module_types = {sub._c._type().annotation_str for sub in module.modules()}
    found: dict[str, str] = {}
    for where, graph in _graphs(module):
        inlined = graph.copy()
        torch._C._jit_pass_inline(inlined)
        for node in _nodes(inlined):
            why = _node_refusal(node, module_types)
            if why is not None:
                found.setdefault(node.kind(), f"{where}: {node.kind()} ({why})")
    return list(found.values())
