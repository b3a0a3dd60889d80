"""``medaudit transfer``: a source x target matrix of attack success (transferability)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from auditor import sandbox
from auditor.cli.common import RichProgress, handle_errors, stdout_to_stderr
from auditor.config import AuditConfig, parse_eps, parse_list, parse_size
from auditor.errors import UsageError
from auditor.out_lock import refuse_existing_audit
from auditor.registry import get_registry

TRANSFER_HELP = """Craft adversarial images on each model and show them to every other.

For each eps, PGD (or --attack autoattack) at --budget runs on each model (the source)
from the images' true labels; every model (the target) then classifies the results. Writes
results.json (the matrix per eps: success = share of the target's clean-correct images it
misclassifies, with 95% Wilson intervals, and the target's accuracy) and report.html /
report.pdf with a heat map per eps. The diagonal is white-box success; an off-diagonal
cell is what an attacker without the target's weights achieves with the source's.

All models must take the same input (shape, channels) and classes; each is opened as
`medaudit run` opens it (formats detected, --trust-model for pickles).

Examples:

  medaudit transfer a.pt b.onnx c.pt --data pneumoniamnist.npz --split test --limit 200 --eps 2,4,8

  medaudit transfer vendor.pt ours.pt --data isic2017/labels.csv --split val --attack autoattack
"""


@handle_errors
def transfer(
    models: Annotated[list[Path], typer.Argument(metavar="MODEL_A MODEL_B [MODEL_C ...]", help="Two or more model files of the same input and classes.")],
    data: Annotated[Path, typer.Option("--data", "-d", help="Labelled data, as for `medaudit run`.")],
    eps: Annotated[Optional[str], typer.Option(help="L-inf budgets in /255 units, e.g. 2,4,8 (default: the modality's).")] = None,
    attack: Annotated[str, typer.Option(help="White-box attack crafted on each source: pgd or autoattack.")] = "pgd",
    budget: Annotated[str, typer.Option(help="quick | standard | thorough (the attack's steps; see README).")] = "standard",
    modality: Annotated[str, typer.Option(help="Modality preset: channels, input size and eps grid defaults.")] = "dermoscopy",
    split: Annotated[Optional[str], typer.Option(help="Split to use (CSV split column, npz prefix).")] = None,
    classes: Annotated[Optional[str], typer.Option(help="Comma-separated class names in label order.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="A seeded, stratified sample of N images.")] = None,
    input_size: Annotated[Optional[str], typer.Option(help="Resize images to N or HxW (default: as `medaudit run` decides).")] = None,
    channels: Annotated[Optional[int], typer.Option(help="Input channels (default: from the first model).")] = None,
    trust_model: Annotated[bool, typer.Option("--trust-model", help="Allow whole pickled nn.Modules. This EXECUTES CODE from the model files.")] = False,
    seed: Annotated[int, typer.Option(help="Seed for sampling and attacks.")] = 0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N.")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Images per model call.")] = 32,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for results.json and the report.")] = Path("medaudit-transfer"),
    report_format: Annotated[str, typer.Option(help="Reports to write: html,pdf, or none.")] = "html,pdf",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the results already in --out.")] = False,
    no_sandbox: Annotated[bool, typer.Option("--no-sandbox", help="Run the models in this process (no Landlock sandbox).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the matrix as JSON on stdout.")] = False,
) -> None:
    from auditor.audit import locked_out_dir
    from auditor.engine.transfer import prepare_models, transfer_matrix
    from auditor.reporting import render_reports
    from auditor.results import write_results

    registry = get_registry()
    formats = [] if report_format.strip().lower() == "none" else (parse_list(report_format, "--report-format") or [])
    for fmt in formats:
        registry.get("reporters", fmt)
    if attack not in ("pgd", "autoattack"):
        raise UsageError(f"--attack: '{attack}' is not pgd or autoattack")
    if len(models) < 2:
        raise UsageError("medaudit transfer needs at least two models")
    for path in [*models, data]:
        if not path.exists():
            raise UsageError(f"{path} does not exist")
    config = AuditConfig(
        model=models[0], data=data, out=out, split=split, classes=parse_list(classes, "--classes"), limit=limit,
        input_size=parse_size(input_size), channels=channels, modality=modality, trust_model=trust_model,
        eps_255=parse_eps(eps) if eps is not None else None, budget=budget, seed=seed, device=device,
        batch_size=batch_size, formats=formats, checks=False,
    )
    refuse_existing_audit(out, resume=False, overwrite=overwrite)
    code = sandbox.run_in_child([out], no_sandbox=no_sandbox)
    if code is not None:  # the sandboxed child ran this same command
        raise typer.Exit(code)
    progress = RichProgress(quiet=quiet or as_json)
    with locked_out_dir(out, progress.note), stdout_to_stderr():
        preps = prepare_models(config, list(models), attack, registry, progress)
        results = transfer_matrix(preps, attack, progress, " ".join(shlex.quote(a) for a in sys.argv))
        write_results(out, results)
        written = render_reports(results, out, formats, registry, progress=progress)
    if as_json:
        typer.echo(json.dumps({"out": [str(p) for p in written], "models": results["models"],
                               "matrix": results["matrix"]}, indent=1))
    elif not quiet:
        progress.note(f"wrote {', '.join(str(p) for p in written)}")
