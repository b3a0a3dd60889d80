"""Opening a data set: choose the data source, by name or by asking each one to ``detect``.

Detection must be unambiguous: when two sources claim a path the user is asked to name
one (``--data-format``) rather than medaudit silently guessing, since reading a CSV-described
folder as class folders, say, would produce a plausible but wrong audit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from auditor.errors import InputError, UsageError
from auditor.imaging import IMAGE_SUFFIXES
from auditor.interfaces import DataOptions, DataSource, Dataset

KIND = "data_sources"


def choose_source(registry: Any, path: Path, options: DataOptions, source: str | None = None) -> DataSource:
    """The data source for ``path``: the one named ``source``, else the single one that detects it."""
    if source is not None:
        chosen: DataSource = registry.get(KIND, source)
        if options.task not in chosen.tasks:
            raise UsageError(
                f"data format '{source}' does not support {options.task} (it supports: {', '.join(chosen.tasks)})"
            )
        return chosen
    candidates = [s for s in registry.all(KIND) if options.task in s.tasks and s.detect(path, options)]
    if not candidates:
        known = ", ".join(registry.names(KIND)) or "none"
        if path.is_dir() and not _holds_data_files(path):
            raise InputError(
                f"data set is empty: '{path}' holds no image files ({', '.join(IMAGE_SUFFIXES)}), "
                "CSV manifest or .npz; check the path"
            )
        raise InputError(
            f"no data format recognises '{path}' for {options.task}; name one with --data-format ({known})"
        )
    if len(candidates) > 1:
        names = ", ".join(s.name for s in candidates)
        raise InputError(f"'{path}' matches several data formats ({names}); pick one with --data-format")
    registry.note(KIND, candidates[0].name)  # detected, not looked up: the audit's provenance still names it
    return candidates[0]


def _holds_data_files(folder: Path) -> bool:
    """Any file a built-in source could read, anywhere under ``folder`` (stops at the first)."""
    suffixes = set(IMAGE_SUFFIXES) | {".csv", ".npz"}
    return any(p.suffix.lower() in suffixes for p in folder.rglob("*") if p.is_file())


def open_dataset(registry: Any, path: str | Path, options: DataOptions, source: str | None = None) -> Dataset:
    """Open ``path`` with the chosen data source; a missing path is an :class:`InputError`."""
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"data path '{path}' does not exist; check the path")
    return choose_source(registry, path, options, source).open(path, options)
