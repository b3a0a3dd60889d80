"""``--arch module:callable`` and the working directory (issue 12, item 8).

The working directory may hold files the user never meant to run (a download folder, a
vendor's delivery). A module there that shares its name with an installed one must never
be imported instead of it; a module that exists only there is still found.

Each case runs in a fresh interpreter started the way the ``medaudit`` console script is
(its own folder first on sys.path, not the working directory), so that modules this test
process has already imported cannot hide the lookup.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

RUNNER = """
import json, sys
from auditor.errors import UsageError
from plugins.models._arch import build_arch
try:
    net = build_arch(sys.argv[1])
    outcome = type(net).__name__
except UsageError as exc:
    outcome = "UsageError: " + str(exc)
try:
    import leftover_helper  # only in the working directory: must not be reachable any more
    later = "imported from the working directory"
except ModuleNotFoundError:
    later = "not found"
print(json.dumps({"outcome": outcome, "later_import": later}))
"""

HOSTILE = """
from pathlib import Path
Path({marker!r}).write_text("ran")
raise SystemExit("hostile module ran")
"""


def _build_in(cwd: Path, spec: str, tmp_path: Path) -> dict[str, str]:
    """Run build_arch(spec) in a fresh interpreter in ``cwd``; the hostile scipy.py there
    would leave its marker (and end the interpreter) if it were ever imported."""
    runner_dir = tmp_path / "runner"
    runner_dir.mkdir(exist_ok=True)
    runner = runner_dir / "run_arch.py"
    runner.write_text(RUNNER)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONSAFEPATH", None)
    done = subprocess.run([sys.executable, str(runner), spec], cwd=cwd, env=env, capture_output=True, text=True)
    assert not (tmp_path / "hostile-ran.txt").exists(), "the working directory's scipy.py ran"
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _work_folder(tmp_path: Path) -> tuple[Path, Path]:
    cwd = tmp_path / "delivery"
    cwd.mkdir()
    marker = tmp_path / "hostile-ran.txt"
    # scipy is installed (ART needs it) and not imported by torch or the loader itself.
    (cwd / "scipy.py").write_text(HOSTILE.format(marker=str(marker)))
    (cwd / "leftover_helper.py").write_text("")
    return cwd, marker


def test_a_working_directory_module_never_shadows_an_installed_one(tmp_path: Path) -> None:
    cwd, marker = _work_folder(tmp_path)
    (cwd / "mynet.py").write_text("import scipy\nimport torch\n\ndef build():\n    return torch.nn.Linear(2, 2)\n")
    result = _build_in(cwd, "mynet:build", tmp_path)
    assert not marker.exists(), "the working directory's scipy.py ran instead of the installed scipy"
    assert result["outcome"] == "Linear"
    assert result["later_import"] == "not found"


def test_an_arch_named_like_an_installed_module_is_not_taken_from_the_working_directory(tmp_path: Path) -> None:
    cwd, marker = _work_folder(tmp_path)
    result = _build_in(cwd, "scipy:build", tmp_path)
    assert not marker.exists()
    assert result["outcome"].startswith("UsageError: --arch scipy:build: 'scipy' has no attribute 'build'")
    assert "./scipy.py is ignored" in result["outcome"]


def test_a_module_only_in_the_working_directory_is_still_found(tmp_path: Path) -> None:
    cwd, _ = _work_folder(tmp_path)
    (cwd / "layers_only_here.py").write_text("import torch\nWIDTH = 3\n")
    (cwd / "mynet.py").write_text(
        "import torch\nimport layers_only_here\n\ndef build():\n"
        "    return torch.nn.Linear(layers_only_here.WIDTH, 2)\n"
    )
    assert _build_in(cwd, "mynet:build", tmp_path)["outcome"] == "Linear"
