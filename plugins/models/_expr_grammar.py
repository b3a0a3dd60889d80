"""Strict grammars for the expression strings inside a ``torch.export`` archive.

``torch.export.load`` hands every symbolic size (``expr_str``) to ``sympy.sympify``, which
evaluates it as Python, and compiles the program's ``guards_code`` with ``exec``. Both are
text from the file. Before torch sees them, each string is parsed with :mod:`ast` (never
evaluated) and every node is checked against an allow-list of what torch's own printers
write: ``sympy.srepr`` for sizes (``Mul(Integer(2), Symbol('s0', integer=True,
positive=True))``; older archives used ``str``: ``2*s0``) and torch's guard printer for
guards (``L['x'].size()[0] % 2 == 0``). No attribute access, no subscripts (guards aside),
no calls except the named functions, no strings except symbol names and float digits.
"""

from __future__ import annotations

import ast
import re

MAX_LENGTH = 20_000  # torch's expressions are short; this bounds parsing work
_MAX_DIGITS = 40  # integer literals (sizes, strides) fit in far fewer digits
_MAX_EXPONENT = 64  # Pow(s0, Integer(2)) yes; a huge power would stall sympy instead

# sympy classes as sympy.srepr prints them, plus the str() spellings of older archives.
_SYMPY_CALLS = frozenset({
    "Symbol", "Integer", "Rational", "Float", "Add", "Mul", "Pow", "Max", "Min", "Mod",
    "floor", "ceiling", "Abs", "sqrt", "Equality", "Unequality", "StrictLessThan", "LessThan",
    "StrictGreaterThan", "GreaterThan", "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "And", "Or", "Not",
    "Piecewise", "ExprCondPair",
})
# torch.utils._sympy.functions: the names torch's deserializer passes to sympify (torch 2.13).
_TORCH_CALLS = frozenset({
    "FloorDiv", "ModularIndexing", "Where", "PythonMod", "CleanDiv", "CeilToInt", "FloorToInt",
    "CeilDiv", "LShift", "RShift", "PowByNatural", "FloatPow", "FloatTrueDiv", "IntTrueDiv",
    "IsNonOverlappingAndDenseIndicator", "TruncToFloat", "TruncToInt", "RoundToInt",
    "RoundDecimal", "ToFloat", "Identity",
})
SIZE_FUNCTIONS = _SYMPY_CALLS | _TORCH_CALLS
_SIZE_CONSTANTS = frozenset({"oo", "zoo", "nan", "true", "false", "True", "False", "int_oo"})
# Symbols torch creates: s0, u3 (unbacked), zf1, zuf0 (floats), ...
_SYMBOL_RE = re.compile(r"[a-z]{1,4}\d{1,9}")
_NAME_ARG_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_FLOAT_ARG_RE = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|[-+]?(inf|nan)")

_GUARD_CALLS = frozenset({"max", "min", "abs", "int", "float", "round"})
_GUARD_MATH = frozenset({"floor", "ceil", "trunc", "isnan", "sqrt", "inf", "nan", "log2"})
_GUARD_METHODS = frozenset({"size", "stride", "storage_offset"})

_OPERATORS = (
    ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.BitAnd, ast.BitOr,
    ast.USub, ast.UAdd, ast.Invert, ast.Not, ast.And, ast.Or,
    ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE,
)


class Refused(Exception):
    """The string is not an expression torch writes; the message says what was found."""


def _parse(text: str) -> ast.expr:
    if not isinstance(text, str):
        raise Refused(f"expected a string, found {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise Refused(f"{len(text)} characters long")
    try:
        return ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError) as exc:
        raise Refused(f"not an expression ({type(exc).__name__})") from None


def _check_int(node: ast.Constant) -> None:
    if len(str(abs(node.value))) > _MAX_DIGITS:
        raise Refused("an integer literal with too many digits")


def _check_operators(node: ast.AST) -> bool:
    """True when ``node`` is an operator or operator-expression handled generically."""
    if isinstance(node, _OPERATORS + (ast.operator, ast.unaryop, ast.boolop, ast.cmpop)):
        if not isinstance(node, _OPERATORS):
            raise Refused(f"the operator {type(node).__name__}")
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        _check_small_exponent(node.right)
    return isinstance(node, (ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.expr_context))


def _check_small_exponent(node: ast.AST) -> None:
    value = node
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "Integer" and value.args:
        value = value.args[0]
    if isinstance(value, ast.UnaryOp) and isinstance(value.op, ast.USub):
        value = value.operand
    if not (isinstance(value, ast.Constant) and type(value.value) is int and value.value <= _MAX_EXPONENT):
        raise Refused("a power whose exponent is not a small integer")


def _check_size_call(node: ast.Call, strings: set[int]) -> None:
    """``strings`` collects the string arguments found acceptable (by ``id``)."""
    name = node.func.id if isinstance(node.func, ast.Name) else None
    if name not in SIZE_FUNCTIONS:
        raise Refused(f"a call to {ast.unparse(node.func)[:60]!r}")
    if name == "Pow" and len(node.args) == 2:
        _check_small_exponent(node.args[1])
    for keyword in node.keywords:  # Symbol('s0', integer=True), Float('0.5', precision=53)
        if keyword.arg is None or keyword.arg.startswith("_") or not _NAME_ARG_RE.fullmatch(keyword.arg):
            raise Refused("a call with ** or a private keyword")
        value = keyword.value
        if not (isinstance(value, ast.Constant) and type(value.value) in (bool, int)):
            raise Refused(f"the keyword {keyword.arg}= with a value that is not a flag")
    for arg in node.args:
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            pattern = _NAME_ARG_RE if name == "Symbol" else _FLOAT_ARG_RE if name == "Float" else None
            if pattern is None or not pattern.fullmatch(arg.value):
                raise Refused(f"the string {arg.value[:40]!r} passed to {name}")
            strings.add(id(arg))


def check_size_expr(text: str) -> None:
    """Refuse ``text`` unless it is a symbolic size, stride or condition torch could have written."""
    root = _parse(text)
    strings: set[int] = set()
    for node in ast.walk(root):  # breadth first: a call is seen before its arguments
        if _check_operators(node) or isinstance(node, ast.keyword):
            continue  # keywords: checked with their call
        if isinstance(node, ast.Call):
            _check_size_call(node, strings)
        elif isinstance(node, ast.Name):
            if not (_SYMBOL_RE.fullmatch(node.id) or node.id in _SIZE_CONSTANTS or node.id in SIZE_FUNCTIONS):
                raise Refused(f"the name {node.id!r}")
        elif isinstance(node, ast.Constant):
            if type(node.value) is int:
                _check_int(node)
            elif type(node.value) is str and id(node) not in strings:
                raise Refused(f"the string {node.value[:40]!r}")
            elif type(node.value) not in (float, bool, str):
                raise Refused(f"a {type(node.value).__name__} literal")
        else:
            raise Refused(f"Python syntax torch never writes here ({type(node).__name__})")


def _input_path(node: ast.AST) -> bool:
    """``L['x']``, ``L['x'][0]``, ``L['x'].size()[2]``: a reference to an input's size."""
    while True:
        if isinstance(node, ast.Name):
            return node.id == "L"
        if isinstance(node, ast.Subscript):
            key = node.slice
            ok = isinstance(key, ast.Constant) and (
                type(key.value) is int or (isinstance(key.value, str) and _NAME_ARG_RE.fullmatch(key.value))
            )
            if not ok:
                return False
            node = node.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.args or node.keywords or node.func.attr not in _GUARD_METHODS:
                return False
            node = node.func.value
        else:
            return False


def check_guard(text: str) -> None:
    """Refuse ``text`` unless it is a shape guard as torch prints them for ``guards_code``."""
    root = _parse(text)
    pending = [root]
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.Subscript, ast.Call)) and _input_path(node):
            continue  # an input's size: checked whole by _input_path
        if _check_operators(node):
            pass
        elif isinstance(node, ast.Call):
            func = node.func
            is_math = isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "math"
            if node.keywords or not (
                (isinstance(func, ast.Name) and func.id in _GUARD_CALLS) or (is_math and func.attr in _GUARD_MATH)
            ):
                raise Refused(f"a call to {ast.unparse(func)[:60]!r}")
            pending.extend(node.args)
            continue
        elif isinstance(node, ast.Attribute):
            if not (isinstance(node.value, ast.Name) and node.value.id == "math" and node.attr in _GUARD_MATH):
                raise Refused(f"the attribute {ast.unparse(node)[:60]!r}")
            continue
        elif isinstance(node, ast.Name):
            if node.id not in ("inf", "True", "False"):
                raise Refused(f"the name {node.id!r}")
        elif isinstance(node, ast.Constant):
            if type(node.value) is int:
                _check_int(node)
            elif type(node.value) not in (float, bool):
                raise Refused(f"a {type(node.value).__name__} literal")
        else:
            raise Refused(f"Python syntax torch never writes here ({type(node).__name__})")
        pending.extend(ast.iter_child_nodes(node))
