"""Rendering results with the registered reporters (the engine never renders)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from auditor.errors import MedauditError
from auditor.interfaces import ReportOptions
from auditor.progress import Progress
from auditor.registry import Registry


def render_reports(results: dict[str, Any], out: Path, formats: list[str], registry: Registry,
                   progress: Progress | None = None, template_dirs: list[Path] | None = None) -> list[Path]:
    """Render every requested format into ``out``; returns the files written, results.json first.

    A reporter that fails because of the environment (e.g. WeasyPrint's system libraries)
    does not take the others down: its error is reported and the rest are written."""
    progress = progress or Progress()
    out = Path(out)
    written = [out / "results.json"] if (out / "results.json").exists() else []
    options = ReportOptions(template_dirs=list(template_dirs or []), base_dir=out)
    errors = []
    for fmt in formats:
        reporter = registry.get("reporters", fmt)
        with progress.task(f"rendering {reporter.filename}", None):
            try:
                written.append(reporter.render(results, out, options))
            except MedauditError as exc:
                errors.append(exc)
                progress.note(f"{fmt} report not written: {exc}")
    if errors and len(errors) == len(formats):
        raise errors[0]
    return written
