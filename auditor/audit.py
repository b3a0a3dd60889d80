"""Entry point from a configuration to a finished results dict, whatever the task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from auditor.config import AuditConfig
from auditor.errors import InputError
from auditor.progress import Progress
from auditor.registry import Registry


def ensure_out_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output folder {out}: {exc.strerror or exc}") from None
    probe = out / ".medaudit-write-test"
    try:
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise InputError(f"output folder {out} is not writable: {exc.strerror or exc}") from None


def run_audit(config: AuditConfig, registry: Registry, progress: Progress | None = None,
              command: str | None = None) -> dict[str, Any]:
    from auditor.engine import ClassificationAudit, prepare

    ensure_out_dir(Path(config.out))
    prep = prepare(config, registry, progress)
    if prep.task == "segmentation":
        from auditor.segmentation import SegmentationAudit

        return SegmentationAudit(prep, progress, command).run()
    return ClassificationAudit(prep, progress, command).run()
