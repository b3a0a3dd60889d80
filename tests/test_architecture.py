"""The shape ARCHITECTURE.md promises, checked: the import-linter contracts hold, modules
stay around 400 lines and functions around 80 (a CLI command's option list excepted)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 420
MAX_FUNCTION_LINES = 80


def _python_files() -> list[Path]:
    return sorted((ROOT / "auditor").rglob("*.py"))


def test_import_contracts_hold():
    tool = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(tool).exists():
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    result = subprocess.run([tool], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_core_modules_stay_small():
    long = {str(p.relative_to(ROOT)): n for p in _python_files() if (n := p.read_text().count("\n")) > MAX_MODULE_LINES}
    assert long == {}


def _is_cli_command(node: ast.FunctionDef, path: Path) -> bool:
    """A Typer command: its signature is the option list, which only grows with options."""
    return path.parent.name == "cli" and any(isinstance(a.annotation, ast.Subscript) and
                                             getattr(a.annotation.value, "id", "") == "Annotated"
                                             for a in node.args.args)


def test_functions_stay_short():
    long = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not _is_cli_command(node, path):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    assert long == []
