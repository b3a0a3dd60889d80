"""``medaudit demo``: the whole product on a built-in synthetic example, offline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from auditor.cli.common import handle_errors
from auditor.cli.run import execute
from auditor.config import AuditConfig, parse_list
from auditor.registry import get_registry


@handle_errors
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("medaudit-demo"),
    seed: Annotated[int, typer.Option(help="Seed for the synthetic data, training and attacks.")] = 0,
    budget: Annotated[str, typer.Option(help="Attack budget.")] = "quick",
    report_format: Annotated[str, typer.Option(help="Reports to write: html,pdf or none.")] = "html,pdf",
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the headline results as JSON on stdout.")] = False,
) -> None:
    """Generate synthetic dermoscopy-like images (labelled synthetic in the report), train a
    small CNN in seconds, run the full attack battery with --budget quick and the dermoscopy
    corruption families at severities 1-5, and write results.json, report.html and
    report.pdf. Fully offline; about a minute on 2 CPU cores."""
    from auditor.demo import build_demo

    model_path, data_dir, facts = build_demo(out / "demo-inputs", seed=seed)
    formats = [] if report_format == "none" else (parse_list(report_format, "--report-format") or [])
    config = AuditConfig(
        model=model_path, data=data_dir, out=out, modality="dermoscopy", input_size=(32, 32),
        channels=3, budget=budget, seed=seed, device="cpu", formats=formats,
        # the demo shows the natural-robustness section too: the dermoscopy preset's families
        corruptions=list(get_registry().get("modalities", "dermoscopy").corruptions),
        extra={"synthetic": True, "training": facts},
    )
    execute(config, quiet=quiet, as_json=as_json, command=f"medaudit demo --out {out} --seed {seed} --budget {budget}")
