"""``medaudit run``: audit one model on one labelled data set."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from auditor import sandbox
from auditor.cli.common import RichProgress, err_console, handle_errors, printable, stdout_to_stderr
from auditor.cli.engine_options import engine_settings, ray_unconfined
from auditor.cli.headline import print_headline
from auditor.cli.plan_view import show_plan
from auditor.cli.service_options import service_settings
from auditor.config import (AuditConfig, parse_backends, parse_eps, parse_floats, parse_list,
                            parse_severities, parse_size)
from auditor.engine.record import record_rendering
from auditor.errors import EXIT_GATE_FAILED, EXIT_INCOMPLETE, UsageError
from auditor.gates import load_criteria_file, parse_criteria
from auditor.metadata import load_metadata
from auditor.models import preprocess_normalization
from auditor.out_lock import refuse_existing_audit
from auditor.registry import get_registry
from auditor.stopping import parse_duration

RUN_HELP = """Audit a model's adversarial robustness and write results.json plus reports.

Examples:

  medaudit run model.pt --data isic2017/labels.csv --split val --modality dermoscopy

  medaudit run weights.pth --arch auditor.architectures:resnet18 --data test/ --attacks pgd --eps 2,8

  medaudit run model.onnx --data pneumoniamnist.npz --split test --modality chest-xray --budget quick

  medaudit run model.pt --data isic2017/labels.csv --split val --defense jpeg:quality=75 --attacks fgsm,pgd

  medaudit run model.pt --data isic2017 --split val --positive-class 1 --fail-under worst_case@4=0.50,checks=no-fail --junit gates.xml

Exit code 1 when an acceptance gate (--fail-under) fails; the reports are written first.
"""


def summary_for_stdout(results: dict[str, Any], written: list[str]) -> dict[str, Any]:
    """The machine-readable answer of ``--json``: headline numbers, no per-sample data."""
    strip = lambda entry: {k: v for k, v in entry.items() if k not in ("samples", "confusion")}  # noqa: E731
    return {
        "out": written,
        "status": results.get("status"),
        "verdict": (results.get("gates") or {}).get("verdict"),
        "gates": results.get("gates"),
        "checks": {k: (results.get("checks") or {}).get(k) for k in ("verdict", "summary")},
        "summary": results.get("summary"),
        "clean": {k: v for k, v in (results.get("clean") or {}).items() if k != "confusion"},
        "worst_case": [strip(w) for w in results.get("worst_case", [])],
        "attacks": [strip(a) for a in results.get("attacks", [])],
        "defense": results.get("defense"),
    }


def execute(config: AuditConfig, *, quiet: bool, as_json: bool, command: str | None = None,
            template_dirs: list[Path] | None = None) -> dict[str, Any]:
    """Run the audit, render the reports, print the outcome. Shared by ``run`` and ``demo``."""
    from auditor.audit import locked_out_dir, run_audit
    from auditor.deadline import model_timeout
    from auditor.reporting import render_reports

    registry = get_registry()
    progress = RichProgress(quiet=quiet or as_json)
    # one run per --out; the model's own prints (fd 1 included) go to stderr, not into --json
    with locked_out_dir(Path(config.out), progress.note), stdout_to_stderr():
        with model_timeout(config.model_timeout):
            results = run_audit(config, registry, progress=progress, command=command)
        rendering_started = time.perf_counter()
        written = render_reports(results, config.out, config.formats, registry, progress=progress,
                                 template_dirs=list(template_dirs or []))
        record_rendering(results, Path(config.out), time.perf_counter() - rendering_started, config.formats)
    # A report that could not be written is said even under --quiet: a CI job that asked for a
    # PDF must not find out later that only report.html exists (the reason was noted above).
    names = {p.name for p in written}
    unwritten = [fmt for fmt in config.formats if registry.get("reporters", fmt).filename not in names]
    if unwritten:
        err_console.print(f"medaudit: warning: {', '.join(unwritten)} report not written; results.json is complete: "
                          f"re-render with `medaudit report {printable(str(config.out))}`",
                          markup=False, highlight=False, soft_wrap=True)
    if config.junit and results.get("gates"):
        written.append(Path(config.junit))
    if not quiet:  # on stderr, so stdout stays the --json answer alone
        print_headline(results, err_console)
    if as_json:
        typer.echo(json.dumps(summary_for_stdout(results, [str(p) for p in written]), indent=1))
    elif not quiet:
        progress.note(f"wrote {', '.join(str(p) for p in written)}")
    if results.get("status") == "incomplete":  # before the gates: they must not pass a partial audit
        reason = (results.get("incomplete") or {}).get("reason") or "stopped early"
        err_console.print(f"medaudit: audit INCOMPLETE: {printable(reason)}; "
                          f"{len((results.get('incomplete') or {}).get('not_run') or [])} steps did not run; "
                          "rerun with --resume to continue", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_INCOMPLETE)
    gates = results.get("gates")
    if config.fail_under and not gates:
        raise UsageError("--fail-under: acceptance gates are evaluated for classification audits only")
    if gates and gates["verdict"] == "fail":
        if not as_json:
            failed = [c["label"] + ": " + c["message"] for c in gates["criteria"] if not c["passed"]]
            err_console.print(f"medaudit: acceptance gate failed: {printable('; '.join(failed))}", markup=False,
                              highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_GATE_FAILED)
    return results


@handle_errors
def run(
    model: Annotated[str, typer.Argument(help="Model file: TorchScript, .pt2, .onnx, a state dict (with --arch) or a pickled module (with --trust-model); or http(s)://host:port/v2/models/NAME, a model behind an Open Inference Protocol (KServe v2) service, audited through queries only.")],
    data: Annotated[Path, typer.Option("--data", "-d", help="Labelled data: class folders, CSV manifest, MedMNIST .npz or image+mask folders.")],
    modality: Annotated[str, typer.Option(help="Modality preset (see `medaudit modalities`): sets channels, input size, eps grid and report text.")] = "dermoscopy",
    task: Annotated[Optional[str], typer.Option(help="classification or segmentation (default: detected from the model's output shape).")] = None,
    model_format: Annotated[Optional[str], typer.Option("--format", help="Model format, overriding detection: torchscript, export, onnx, state-dict, pickle.")] = None,
    arch: Annotated[Optional[str], typer.Option(help="module:callable that builds the architecture for a state dict, e.g. auditor.architectures:resnet18, or timm:NAME (a timm network, num_classes and in_chans read from the weights). This IMPORTS AND RUNS that module's code (found in the installed packages first, then the working directory).")] = None,
    custom_objects: Annotated[Optional[str], typer.Option("--custom-objects", help="Keras: the custom layers/functions the model file names, from a module YOU name: file.py, file.py:NAME or module:NAME (a dict name -> class; NAME defaults to custom_objects). This IMPORTS AND RUNS that module's code (like --arch); safe_mode stays on.")] = None,
    trust_model: Annotated[bool, typer.Option("--trust-model", help="Allow loading a whole pickled nn.Module. This EXECUTES CODE from the model file: use only for files from authors you trust.")] = False,
    mean: Annotated[Optional[str], typer.Option(help="Per-channel mean the model expects, e.g. 0.485,0.456,0.406; medaudit wraps the model so attacks work in [0,1].")] = None,
    std: Annotated[Optional[str], typer.Option(help="Per-channel std the model expects (with --mean).")] = None,
    preprocess: Annotated[Optional[str], typer.Option(help="The model's input convention instead of --mean/--std: tf (x*2-1), torch (ImageNet mean/std), raw255 (0-255), caffe (BGR, ImageNet mean subtracted in 0-255).")] = None,
    data_format: Annotated[Optional[str], typer.Option(help="Data layout, overriding detection: folder, csv, npz, seg-folders, ...")] = None,
    follow_symlinks: Annotated[bool, typer.Option("--follow-symlinks", help="Read data files (in --data and --detector-fit) whose real path, through a symbolic link or '..', lies outside the data folder; refused by default.")] = False,
    split: Annotated[Optional[str], typer.Option(help="Split to audit (CSV split column, MedMNIST train/val/test).")] = None,
    classes: Annotated[Optional[str], typer.Option(help="Comma-separated class names in label order.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Audit a seeded, stratified sample of N images.")] = None,
    input_size: Annotated[Optional[str], typer.Option(help="Resize images to N or HxW (default: the size the model file declares, else the size all images share, else the modality's).")] = None,
    channels: Annotated[Optional[int], typer.Option(help="Input channels (default: from the model's first conv, else the modality).")] = None,
    roi: Annotated[Optional[Path], typer.Option(help="Segmentation: folder of region-of-interest masks (e.g. field of view) restricting metrics. Classification (CSV data): lesion masks for --saliency, matched by file name.")] = None,
    missed_fraction: Annotated[Optional[float], typer.Option("--missed-fraction", help="Segmentation: a lesion counts as missed when the predicted lesion area falls below this fraction of the true one (default 0.5).")] = None,
    eps: Annotated[Optional[str], typer.Option(help="L-inf budgets in /255 units, e.g. 2,4,6,8 (default: the modality's).")] = None,
    attacks: Annotated[Optional[str], typer.Option(help="Comma-separated attacks (default: fgsm,pgd,cw,autoattack,square,zoo).")] = None,
    corruptions: Annotated[str, typer.Option("--corruptions", help="Natural and acquisition corruptions beside the attacks: default (the modality's families, see `medaudit modalities --json`), none, or family names, e.g. defocus-blur,jpeg (see `medaudit plugins`). Classification only.")] = "none",
    severities: Annotated[str, typer.Option("--severities", help="Corruption severities to audit, from 1 (mild) to 5 (severe), e.g. 1,3,5.")] = "1,2,3,4,5",
    budget: Annotated[str, typer.Option(help="quick | standard | thorough: iterations, restarts and queries of every attack (see README).")] = "standard",
    backend: Annotated[Optional[str], typer.Option(help="art or native for every attack that has it, or per attack: cw=art,zoo=native.")] = None,
    independent: Annotated[bool, typer.Option("--independent", help="Run every attack at every eps on every sample (per-attack table) instead of the default cascade.")] = False,
    seed: Annotated[int, typer.Option(help="Seed for sampling and attacks: same seed, same numbers.")] = 0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N.")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Images per model call.")] = 32,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for results.json and the reports.")] = Path("medaudit-report"),
    report_format: Annotated[str, typer.Option(help="Reports to write: html,pdf (any registered reporter), or none.")] = "html,pdf",
    template_dir: Annotated[Optional[list[Path]], typer.Option("--template-dir", help="Folder of report templates searched before the built-ins; repeatable (as in `medaudit report`).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted audit in --out (refused if model, data or configuration changed).")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the audit already in --out (by default a folder holding results.json is refused, exit 2).")] = False,
    allow_probabilities: Annotated[bool, typer.Option("--allow-probabilities", help="Audit a model that outputs probabilities instead of logits (results flagged).")] = False,
    positive_class: Annotated[Optional[str], typer.Option("--positive-class", help="Class name of the disease for sensitivity, specificity, AUROC and targeted attacks (default: the modality's, e.g. melanoma, matched ignoring case; classes named 0/1 are never guessed: without a match there are no clinical metrics).")] = None,
    fail_under: Annotated[Optional[list[str]], typer.Option("--fail-under", help="Acceptance criterion, repeatable or comma-separated: worst_case@4=0.50, pgd@2=0.60, sensitivity@2=0.80, checks=no-fail, corruption@3=0.80 (accuracy at corruption severity 3, worst case over families; corruption:NAME@3 for one family). Append :lower (:upper for rates) to gate on the 95% interval's end, e.g. worst_case@4=0.5:lower. Exit 1 when one fails. Failed validity checks are reported but exit 0 unless checks=no-fail (or checks=no-warn) is given.")] = None,
    fail_under_file: Annotated[Optional[Path], typer.Option("--fail-under-file", help="TOML or JSON file of criteria: fail_under = [\"worst_case@4=0.50\", ...] or a table metric = threshold.")] = None,
    junit: Annotated[Optional[Path], typer.Option("--junit", help="Write the acceptance gates as JUnit XML (one test case per criterion) for CI.")] = None,
    skip_checks: Annotated[bool, typer.Option("--skip-checks", help="Do not run the evaluation validity checks (they attack a small subsample).")] = False,
    check_samples: Annotated[int, typer.Option("--check-samples", help="Clean-correct samples the validity checks attack.")] = 48,
    defense: Annotated[Optional[str], typer.Option("--defense", help="Audit the model behind a preprocessing defense, e.g. jpeg:quality=75, median:size=3, bit-depth:bits=4, tv:weight=0.05, random-smoothing:sigma=0.05,samples=32,eot_samples=8. Main numbers are adaptive (BPDA/EoT); non-adaptive ones and the undefended baseline are added.")] = None,
    surrogate: Annotated[Optional[Path], typer.Option("--surrogate", help="A second model (any format medaudit loads; images in [0, 1]) to craft PGD and AutoAttack examples on and show to the target: transfer attacks (transfer-pgd, transfer-autoattack), black-box for the target, in the cascade and the worst case; each row records the surrogate's file name and sha256.")] = None,
    detector_fit: Annotated[Optional[Path], typer.Option("--detector-fit", help="Also evaluate an adversarial-example detector (Mahalanobis distance on penultimate features) fitted on this clean, labelled data (same format as --data): detection AUROC per attack and eps, and against an attacker who evades it.")] = None,
    detector_fit_split: Annotated[Optional[str], typer.Option("--detector-fit-split", help="Split of --detector-fit to fit on (empty: all of it).")] = "train",
    detector_samples: Annotated[int, typer.Option("--detector-samples", help="Clean-correct audit images the detector is evaluated on.")] = 64,
    detectors: Annotated[str, typer.Option("--detectors", help="Detectors fitted with --detector-fit, comma-separated: mahalanobis (Lee et al. 2018), kd-bu (kernel density + Bayesian uncertainty, Feinman et al. 2017), lid (local intrinsic dimensionality, Ma et al. 2018); each also faces its own adaptive attacker.")] = "mahalanobis,kd-bu,lid",
    uap: Annotated[bool, typer.Option("--uap", help="Also fit one universal adversarial perturbation per eps (Moosavi-Dezfooli et al. 2017; batched) and report its fooling rate and accuracy (Dice) under it; fitted on --uap-fit, else on a seeded half of --data and evaluated on the other half. Backend: --backend uap=native|art.")] = False,
    uap_fit: Annotated[Optional[Path], typer.Option("--uap-fit", help="Data to fit the universal perturbation on (same format as --data; implies --uap); the audited images are then the evaluation set.")] = None,
    uap_fit_split: Annotated[Optional[str], typer.Option("--uap-fit-split", help="Split of --uap-fit to fit on (default: all of it).")] = None,
    uap_fit_limit: Annotated[int, typer.Option("--uap-fit-limit", help="Seeded, stratified sample of at most N --uap-fit images.")] = 256,
    saliency: Annotated[bool, typer.Option("--saliency", help="Integrated-gradients saliency (captum) of the clean and adversarial image side by side in the gallery, and per eps how much saliency stays inside the lesion (masks: a CSV 'mask' column or --roi). Needs: pip install 'medaudit[saliency]'.")] = False,
    saliency_samples: Annotated[int, typer.Option("--saliency-samples", help="Clean-correct images the per-eps saliency summary attacks (PGD) and explains.")] = 16,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the headline results as JSON on stdout.")] = False,
    model_timeout_s: Annotated[float, typer.Option("--model-timeout", help="Seconds one model call may take before the audit ends with exit 3 (resumable with --resume); 0: no limit.")] = 600.0,
    no_sandbox: Annotated[bool, typer.Option("--no-sandbox", help="Run the model in this process instead of a child that cannot write outside --out or reach the network (Linux Landlock); also MEDAUDIT_SANDBOX=off.")] = False,
    plan: Annotated[bool, typer.Option("--plan", help="Print what the audit would cost and stop: passes per attack x eps (upper bound and the cascade's expected bound from a 16-image probe), the measured time of one pass here, the estimated wall time, and what would bring it under --max-time (--budget quick, --limit N, fewer attacks, a GPU). Attacks nothing at scale; writes nothing.")] = False,
    max_time: Annotated[Optional[str], typer.Option("--max-time", help="Stop cleanly before the next step (attack x eps, check) once this much time is spent, e.g. 90s, 20m, 2h: results.json and the reports say status incomplete and which steps did not run; exit 5; --resume continues.")] = None,
    metadata: Annotated[Optional[Path], typer.Option("--metadata", help="TOML file naming the device for the report's cover and traceability table: device_name, device_version, manufacturer, intended_use, intended_population, audit_owner (all strings, all optional). Not part of --resume's identity.")] = None,
    outputs: Annotated[Optional[str], typer.Option("--outputs", help="Query-only target: what its output holds: logits, probabilities (audited as log-probabilities) or label (only label-only attacks apply). Default: from the service's metadata (an integer output is a label; an output named *prob*/*logit*), else exit 2 asking for it.")] = None,
    runtime: Annotated[Optional[str], typer.Option("--runtime", help="onnxruntime: audit an .onnx file through ONNX Runtime (CPU), the exact deployed runtime, as a query-only target (score-based attacks only) instead of converting it to PyTorch.")] = None,
    max_queries: Annotated[Optional[int], typer.Option("--max-queries", help="Query-only target: stop before the next step once N images have been queried (probe, fingerprints, clean pass and attacks); status incomplete, --resume continues; a running step finishes, so the total may pass N by one step.")] = None,
    rate_limit: Annotated[Optional[float], typer.Option("--rate-limit", help="Service: at most R requests per second.")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", help="Service: K requests in flight (a batch is split into K requests).")] = 1,
    auth_env: Annotated[Optional[str], typer.Option("--auth-env", help="Service: name of the environment variable holding a bearer token (sent as 'Authorization: Bearer ...' to the target host only; never written to results, reports or logs).")] = None,
    auth_header_file: Annotated[Optional[Path], typer.Option("--auth-header-file", help="Service: file of 'Header-Name: value' lines sent with every request to the target host only (e.g. an API key); never written out.")] = None,
    request_timeout: Annotated[float, typer.Option("--request-timeout", help="Service: seconds one request may take before it is retried (timeouts, 429 and 5xx are retried 6 times with exponential backoff and jitter).")] = 60.0,
    engine: Annotated[str, typer.Option("--engine", help="local (default) or ray: shard the attack steps by samples over Ray workers (classification and segmentation; same numbers as local). Needs: pip install 'medaudit[ray]', and --no-sandbox (Ray's workers run outside the sandbox).")] = "local",
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="--engine ray: join this cluster (auto, ray://HOST:PORT, HOST:PORT); default: start a local Ray instance.")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", help="--engine ray: worker actors (default: as many as the cluster's CPUs or GPUs fit).")] = None,
    gpus_per_worker: Annotated[float, typer.Option("--gpus-per-worker", help="--engine ray: GPUs per worker (fractions share a GPU), e.g. 1 or 0.5.")] = 0.0,
    cpus_per_worker: Annotated[int, typer.Option("--cpus-per-worker", help="--engine ray: CPUs per worker; also its torch threads.")] = 1,
    shards: Annotated[Optional[int], typer.Option("--shards", help="--engine ray: shards of samples (default: 4 per worker); each is checkpointed into --out/shards/ when it finishes.")] = None,
) -> None:
    registry = get_registry()
    formats = [] if report_format.strip().lower() == "none" else (parse_list(report_format, "--report-format") or [])
    for fmt in formats:
        registry.get("reporters", fmt)
    if (mean is None) != (std is None):
        raise UsageError("--mean and --std go together")
    if preprocess is not None and mean is not None:
        raise UsageError("--preprocess sets the mean and std: give it or --mean/--std, not both")
    mean_std = (preprocess_normalization(preprocess) if preprocess
                else (parse_floats(mean, "--mean"), parse_floats(std, "--std")))
    if task is not None and task not in ("classification", "segmentation"):
        raise UsageError(f"--task: '{task}' is not classification or segmentation")
    engine_block = engine_settings(engine, ray_address, workers, gpus_per_worker, cpus_per_worker, shards)
    target = service_settings(model, model_format=model_format, runtime=runtime, outputs=outputs,
                              max_queries=max_queries, rate_limit=rate_limit, concurrency=concurrency,
                              auth_env=auth_env, auth_header_file=auth_header_file, request_timeout=request_timeout)
    if not data.exists():
        raise UsageError(f"data path {data} does not exist")
    if defense is not None:
        from auditor.evaluation.defenses import parse_defense

        parse_defense(defense, registry)  # a bad spec exits 2 before anything is loaded
    criteria = list(fail_under or [])
    if fail_under_file is not None:
        criteria += load_criteria_file(fail_under_file)
    parse_criteria(criteria)  # syntax errors exit 2 before anything is loaded
    from auditor.engine.corruption import parse_corruptions  # here: the engine is imported on use

    corruption_names = parse_corruptions(corruptions, registry, modality)  # unknown names exit 2 here too
    severity_list = parse_severities(severities)
    if junit is not None and not criteria:
        raise UsageError("--junit writes the acceptance gates: give --fail-under or --fail-under-file too")
    if check_samples < 1:
        raise UsageError("--check-samples must be at least 1")
    if surrogate is not None and not surrogate.exists():
        raise UsageError(f"--surrogate: {surrogate} does not exist")
    if detector_fit is not None and not detector_fit.exists():
        raise UsageError(f"--detector-fit: {detector_fit} does not exist")
    if uap_fit is not None and not uap_fit.exists():
        raise UsageError(f"--uap-fit: {uap_fit} does not exist")
    if uap_fit_limit < 1 or saliency_samples < 1:
        raise UsageError("--uap-fit-limit and --saliency-samples must be at least 1")
    if saliency:
        from auditor.evaluation.saliency import require_captum

        require_captum()  # a missing library exits 2 now, not after the attacks
    if detector_samples < 2:
        raise UsageError("--detector-samples must be at least 2")
    detector_names = parse_list(detectors, "--detectors") or []
    unknown_detectors = [d for d in detector_names if d not in ("mahalanobis", "kd-bu", "lid")]
    if unknown_detectors or not detector_names:
        raise UsageError(f"--detectors: '{(unknown_detectors or [''])[0]}' is not mahalanobis, kd-bu or lid")
    if missed_fraction is not None and not 0.0 < missed_fraction <= 1.0:
        raise UsageError(f"--missed-fraction: {missed_fraction:g} must be in (0, 1]")
    if model_timeout_s < 0:
        raise UsageError("--model-timeout must be 0 (no limit) or a number of seconds")
    for folder in template_dir or []:
        if not folder.is_dir():
            raise UsageError(f"--template-dir: {folder} is not a folder")
    config = AuditConfig(
        model=target.model, data=data, out=out, model_format=target.model_format, arch=arch, trust_model=trust_model,
        mean=mean_std[0], std=mean_std[1], preprocess=preprocess, data_format=data_format,
        split=split, classes=parse_list(classes, "--classes"), limit=limit, input_size=parse_size(input_size),
        channels=channels, modality=modality, task=task, eps_255=parse_eps(eps) if eps is not None else None,
        attacks=parse_list(attacks, "--attacks"), budget=budget, seed=seed, device=device,
        corruptions=corruption_names, severities=severity_list,
        batch_size=batch_size, mode="independent" if independent else "cascade",
        backends=parse_backends(backend, registry.attacks), formats=formats, resume=resume,
        allow_probabilities=allow_probabilities, roi=roi, positive_class=positive_class, fail_under=criteria,
        junit=junit, checks=not skip_checks, check_samples=check_samples,
        defense=defense, detector_fit=detector_fit, detector_fit_split=detector_fit_split or None,
        surrogate=surrogate,
        uap=uap or uap_fit is not None, uap_fit=uap_fit, uap_fit_split=uap_fit_split, uap_fit_limit=uap_fit_limit,
        saliency=saliency, saliency_samples=saliency_samples,
        detector_samples=detector_samples, detectors=detector_names, model_timeout=model_timeout_s, follow_symlinks=follow_symlinks,
        extra={"missed_fraction": missed_fraction} if missed_fraction is not None else {},
        metadata=load_metadata(metadata) if metadata is not None else {},  # a bad file exits 3 before any loading
        max_time=parse_duration(max_time) if max_time is not None else None,
        custom_objects=custom_objects,
        outputs=outputs, service=target.service, max_queries=max_queries, engine=engine_block,
    )
    if plan:  # loads the model and data, times one pass, probes 16 images; writes nothing to --out
        code = sandbox.run_in_child([], no_sandbox=no_sandbox)
        if code is not None:
            raise typer.Exit(code)
        show_plan(config, quiet=quiet, as_json=as_json)
        return
    refuse_existing_audit(out, resume=resume, overwrite=overwrite)
    # Everything above only read the command line; the model is loaded from here on.
    # a service runs no model code here, and the sandbox has no network to reach it with
    code = sandbox.run_in_child([out, *([junit.parent] if junit else [])], no_sandbox=no_sandbox or target.url,
                                unconfined=ray_unconfined(engine_block, no_sandbox, trust_model))
    if code is not None:  # the sandboxed child ran this same command
        raise typer.Exit(code)
    execute(config, quiet=quiet, as_json=as_json, template_dirs=template_dir)
