"""Operators a model from an untrusted file may not call: they reach the filesystem, the
network, other threads or the Python interpreter instead of computing on tensors.

Found by listing ``torch._C._jit_get_all_schemas()`` and the ``prim::`` node kinds of
torch 2.13 and reading what each does. Printing (``prim::Print``, ``aten::_print``,
``aten::warn``) is allowed: it only writes to the console. Operators outside the
built-in namespaces are refused as a whole (see :data:`BUILTIN_NAMESPACES`): a custom
operator is native code medaudit knows nothing about.
"""

from __future__ import annotations

REFUSED_OPS: dict[str, str] = {
    "aten::from_file": "maps a file into a tensor (reads it, and with shared=True overwrites it)",
    "aten::save": "writes a file",
    "aten::_load": "reads a file",
    "prim::fork": "starts a task on another thread",
    "prim::forkClosure": "starts a task on another thread",
    "aten::wait": "waits on a task started on another thread",
    "prim::awaitable": "defers a call to another thread",
    "prim::awaitable_nowait": "defers a call to another thread",
    "prim::awaitable_wait": "waits on a deferred call",
    "prim::rpc_async": "calls another process over the network",
    "prim::rpc_sync": "calls another process over the network",
    "prim::rpc_remote": "calls another process over the network",
    "prim::PythonOp": "calls Python",
    "prim::IgnoredPythonOp": "calls Python",
}
# aten (ATen ops), prim (TorchScript's control flow and containers), prims (export's
# primitive decompositions), quantized ops and the profiler's record_function markers.
BUILTIN_NAMESPACES: frozenset[str] = frozenset({"aten", "prim", "prims", "quantized", "profiler"})


def refusal(kind: str) -> str | None:
    """Why the operator ``kind`` (``namespace::name``) is refused, or None when it is allowed."""
    if kind in REFUSED_OPS:
        return REFUSED_OPS[kind]
    namespace = kind.split("::", 1)[0]
    if namespace not in BUILTIN_NAMESPACES:
        return f"is a {namespace}:: operator outside PyTorch's built-in namespaces"
    return None


def first_of(findings: list[str]) -> str:
    """The first finding, and how many more there are: one line for the error message."""
    more = f" (and {len(findings) - 1} more)" if len(findings) > 1 else ""
    return f"{findings[0][:300]}{more}"
