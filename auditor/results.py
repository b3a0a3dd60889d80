"""``results.json``: the single source of truth of an audit.

Written atomically (write to a temporary file in the same folder, fsync, rename) after
every attack x eps step, so a crash never leaves a half-written file and a rerun with
``--resume`` continues from the last completed step.

Timestamps and timings live in their own fields (``created``, ``updated``, ``timing``,
``time_s``, ``passes``-free) so two runs with one seed compare equal once
:func:`strip_volatile` removes them.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from auditor.errors import InputError, MedauditError

SCHEMA_VERSION = "1.0"
RESULTS_FILE = "results.json"

# Keys whose values change from run to run even with the same seed.
VOLATILE_KEYS = frozenset({"created", "updated", "time_s", "attack_time_s", "timing", "wall_time_s", "overhead", "environment"})


def _clean(obj: Any) -> Any:
    """JSON has no NaN/Inf: store them as null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def dumps(results: dict[str, Any]) -> str:
    return json.dumps(_clean(results), indent=1, sort_keys=False, allow_nan=False)


def file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give a new file under the current umask
    (``mkstemp`` makes 0600 files: a report nobody else on the machine could read)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old or the new file, never a mix."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise InputError(f"cannot write to output folder {path.parent}: {exc.strerror or exc}") from None
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)  # replaces a symlink planted at `path` itself, never its target
    except BaseException as exc:  # SIGINT/SIGTERM mid-write too: no stray temp file beside results.json
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise


def write_results(out_dir: Path, results: dict[str, Any]) -> Path:
    path = Path(out_dir) / RESULTS_FILE
    write_atomic(path, dumps(results))
    return path


def read_results(path: Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.is_file():
        raise InputError(f"no results file at {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or "schema_version" not in data:
        raise InputError(f"{path} is not a medaudit results file (no schema_version)")
    major = str(data["schema_version"]).split(".")[0]
    if major != SCHEMA_VERSION.split(".")[0]:
        raise MedauditError(
            f"{path} has schema version {data['schema_version']}; this medaudit reads {SCHEMA_VERSION}"
        )
    return data


def number_or_none(value: Any) -> float | None:
    """A value read from results.json to plot or subtract: a hostile or broken file may
    hold text (or a bool) where a number belongs, which counts as missing."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return value
    return None


def strip_volatile(obj: Any) -> Any:
    """A copy of ``obj`` without timestamps, timings and environment facts."""
    if isinstance(obj, dict):
        return {k: strip_volatile(v) for k, v in obj.items() if k not in VOLATILE_KEYS}
    if isinstance(obj, list):
        return [strip_volatile(v) for v in obj]
    return obj
