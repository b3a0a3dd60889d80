"""Entry point from a configuration to a finished results dict, whatever the task."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from auditor.config import AuditConfig
from auditor.engine.classification import ClassificationAudit
from auditor.engine.corruption import resolve_families
from auditor.engine.prepare import prepare
from auditor.engine.ray_engine import RayClassificationAudit
from auditor.engine.ray_segmentation import RaySegmentationAudit
from auditor.engine.segmentation import SegmentationAudit
from auditor.errors import InputError
from auditor.numerics import caller_gpu_arithmetic
from auditor.out_lock import out_folder_lock
from auditor.progress import Progress
from auditor.registry import Registry


def ensure_out_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output folder {out}: {exc.strerror or exc}") from None
    # A fresh, randomly named file (O_CREAT|O_EXCL): a fixed name would follow a symlink
    # someone planted in a shared --out and truncate whatever it points to.
    try:
        fd, probe = tempfile.mkstemp(prefix=".medaudit-write-test.", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError(f"output folder {out} is not writable: {exc.strerror or exc}") from None


@contextmanager
def locked_out_dir(out: Path, note: Callable[[str], None] = lambda message: None) -> Iterator[None]:
    """``out`` created, checked writable and locked against a second medaudit for the block
    (exit 2 naming the PID of the run that holds it; see :mod:`auditor.out_lock`)."""
    ensure_out_dir(out)
    with out_folder_lock(out, note):
        yield


def run_audit(config: AuditConfig, registry: Registry, progress: Progress | None = None,
              command: str | None = None) -> dict[str, Any]:
    """Prepare the audit, then run the task's audit (results.json is written as it goes).
    On a GPU it runs in exact float32 (``prepare``); the caller's flags come back after."""
    ensure_out_dir(Path(config.out))
    with caller_gpu_arithmetic():
        prep = prepare(config, registry, progress)
        # --corruptions checked for every task: a segmentation audit refuses it (exit 2), not ignores it
        resolve_families(prep.registry, list(config.corruptions), list(config.severities), prep.input_shape[0],
                         prep.task)
        audit = SegmentationAudit if prep.task == "segmentation" else ClassificationAudit
        if config.engine.get("name") == "ray":
            audit = RaySegmentationAudit if prep.task == "segmentation" else RayClassificationAudit
        return audit(prep, progress, command).run()
