"""What every task's results.json records besides its numbers: the header (provenance, model,
data, modality), the resume state of an interrupted audit, the overhead of a step and the
environment the numbers were measured in."""

from __future__ import annotations

import platform
from importlib import metadata
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from auditor import __version__
from auditor.accounting import PassTimer
from auditor.errors import UsageError
from auditor.numerics import gpu_arithmetic
from auditor.progress import Progress
from auditor.results import RESULTS_FILE, SCHEMA_VERSION, read_results, write_results
from auditor.sandbox import environment_fact as sandbox_fact

if TYPE_CHECKING:
    from auditor.engine.prepare import Prepared


def results_header(prep: "Prepared", command: str | None, cfg_hash: str, n: int) -> dict[str, Any]:
    """The parts of ``results.json`` every task starts with: provenance, model, data,
    modality (each task adds its own ``config`` and result blocks)."""
    data_desc = dict(prep.dataset.describe())
    data_desc.update({
        "source": str(prep.config.data), "format": prep.dataset.format, "n_samples": n,
        "sha256": prep.dataset.fingerprint(), "split": prep.config.split or data_desc.get("split"),
        "limit": prep.config.limit, "synthetic": bool(prep.config.extra.get("synthetic")),
    })
    if prep.config.extra.get("training"):
        data_desc["training"] = prep.config.extra["training"]
    probabilities = prep.probe is not None and prep.probe.looks_like_probabilities
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "medaudit", "version": __version__},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "config_hash": cfg_hash,
        "status": "running",
        "model": {
            "path": str(prep.model.path), "name": Path(prep.model.path).name, "sha256": prep.model.sha256,
            "format": prep.model.format, "task": prep.task, "num_classes": prep.num_classes,
            "class_names": prep.class_names, "input_shape": list(prep.input_shape),
            # user (--input-size) | model (declared by its file) | data (every image's size) | modality (preset)
            "input_size_source": getattr(prep, "input_size_source", "modality"),
            "normalization": {"mean": prep.config.mean, "std": prep.config.std,
                              "preset": getattr(prep.config, "preprocess", None)},
            "outputs": "probabilities" if probabilities else "logits",
            # loader facts (Keras: version, backend, output activation audited without)
            "loader_details": getattr(prep.model, "details", None),
        },
        "data": data_desc,
        "modality": {
            "name": prep.modality.name, "title": prep.modality.title, "threats": prep.modality.threats,
            "defenses": list(prep.modality.defenses), "notes": prep.modality.notes,
            "positive_class": prep.modality.positive_class, "structure": prep.modality.structure,
        },
        "warnings": list(prep.warnings),
        "provenance": {"plugins": plugin_provenance(prep)},
        "metadata": dict(prep.config.metadata),  # --metadata, for the cover and traceability table
    }


def plugin_provenance(prep: "Prepared") -> list[dict[str, Any]]:
    """Every plugin component that contributed to the audit so far (model loader, data
    source, modality, attacks, defense, metrics) and the reporters the run will render
    with: name, registering plugin, its distribution and version. The engine refreshes it
    after the last step, when the checks and clinical attacks have looked theirs up."""
    registry = getattr(prep, "registry", None)
    if registry is None:
        return []
    return registry.provenance(extra=[("reporters", fmt) for fmt in prep.config.formats])


def resume_state(resume: bool, out: Path, cfg_hash: str, results: dict[str, Any],
                 progress: Progress) -> tuple[dict[tuple[str, float], dict[str, Any]], list[dict[str, Any]]]:
    """``--resume``: the finished attack steps and gallery of the audit in ``out``, keyed by
    (attack, eps); ``results`` keeps its creation time and counts the resume. Refused when
    the model, data or configuration changed (``config_hash``)."""
    if not resume or not (out / "results.json").is_file():
        return {}, []
    previous = read_results(out / "results.json")
    if previous.get("config_hash") != cfg_hash:
        raise UsageError(
            f"cannot resume {out}: the model, data or configuration changed since that audit "
            "started; use a new --out folder or drop --resume to start over"
        )
    done = {(e["attack"], float(e["eps_255"])): e for e in previous.get("attacks", [])}
    results["created"] = previous.get("created", results["created"])
    results["resumed"] = previous.get("resumed", 0) + 1
    progress.note(f"resuming: {len(done)} attack steps already done in {out}")
    return done, list(previous.get("gallery", []))


def overhead_block(timer: PassTimer | None, attack_time: float, elapsed: float, calls: dict[int, list[int]],
                   verify_calls: dict[int, list[int]]) -> dict[str, Any] | None:
    """``ratio``: the attack's wall time over what its counted passes cost, each call priced
    at its own batch size. ``step_ratio``: the whole step (data loading, the engine's check
    of every result, bookkeeping) over the same passes plus the check's."""
    if timer is None:
        return None
    ideal = timer.ideal_s(calls)
    ideal_step = ideal + timer.ideal_s(verify_calls)
    return {
        "ideal_s": ideal, "ratio": attack_time / ideal if ideal > 0 else None,
        "step_ideal_s": ideal_step, "step_ratio": elapsed / ideal_step if ideal_step > 0 else None,
        "calls_by_batch_size": {str(b): v for b, v in sorted(calls.items())},
    }


def environment(device: torch.device) -> dict[str, Any]:
    """Versions and machine the numbers were measured with. ART's version comes from its
    package metadata: importing ART costs seconds a segmentation audit need not pay."""
    try:
        art_version: str | None = metadata.version("adversarial-robustness-toolbox")
    except metadata.PackageNotFoundError:  # pragma: no cover - ART is a dependency
        art_version = None
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "art": art_version,
        "medaudit": __version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "device": str(device),
        "cpu_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["gpu_arithmetic"] = gpu_arithmetic(device)  # read, not set: prepare() set it
    env.update(sandbox_fact())  # how the model was confined (auditor.sandbox)
    return env


def _row(phase: str, seconds: Any, **extra: Any) -> dict[str, Any]:
    return {"phase": phase, **extra, "s": float(seconds or 0.0)}


def time_breakdown(results: dict[str, Any], wall_s: float, clean_s: float,
                   resumed: set[tuple[str, float]] | frozenset = frozenset()) -> dict[str, Any]:
    """Where the audit's wall time went, one row per phase, gathered from the seconds each
    block already records (an attack entry's ``time_s``, a check's ``cost``, the targeted,
    defense and detector blocks) rather than timed twice. A step restored by ``--resume``
    ran in an earlier process: its row says so and counts 0 s here. What no row names (data
    loading between steps, writes of results.json, bookkeeping) is the ``other`` row, so
    the rows sum to the wall time."""
    rows = [_row("clean pass", clean_s)]
    for entry in results.get("attacks") or []:
        key = (entry["attack"], float(entry["eps_255"]))
        rows.append(_row("attack", 0.0 if key in resumed else entry.get("time_s"), attack=entry["attack"],
                         eps_255=entry["eps_255"], resumed=key in resumed))
    for entry in (results.get("corruption") or {}).get("steps") or []:
        rows.append(_row("corruption", 0.0 if entry.get("resumed") else entry.get("time_s"),
                         corruption=entry["family"], severity=entry["severity"], resumed=bool(entry.get("resumed"))))
    for item in (results.get("checks") or {}).get("items") or []:
        rows.append(_row("check", (item.get("cost") or {}).get("time_s"), check=item["key"]))
    if results.get("targeted"):
        rows.append(_row("clinical targeted attacks", results["targeted"].get("time_s")))
    defense = results.get("defense") or {}
    if defense.get("transfer_pass"):
        rows.append(_row("defense (non-adaptive pass)", defense["transfer_pass"].get("time_s")))
    if results.get("detection"):
        rows.append(_row("detector", results["detection"].get("time_s")))
    named = sum(r["s"] for r in rows)
    rows.append(_row("other (data loading, writes, bookkeeping)", max(wall_s - named, 0.0)))
    for r in rows:
        r["share"] = r["s"] / wall_s if wall_s > 0 else None
    return {"breakdown": rows, "wall_s": wall_s, "named_s": named}


def breakdown_table(timing: dict[str, Any]) -> list[str]:
    """The breakdown as aligned text lines, for the terminal and the benchmark."""
    lines = [f"{'phase':<44} {'seconds':>9} {'share':>7}"]
    for r in timing.get("breakdown") or []:
        label = r["phase"]
        if "attack" in r:
            label += f" {r['attack']} eps {r['eps_255']:g}" + (" (resumed)" if r.get("resumed") else "")
        elif "corruption" in r:
            label += f" {r['corruption']} severity {r['severity']}" + (" (resumed)" if r.get("resumed") else "")
        elif "check" in r:
            label += f" {r['check']}"
        share = f"{100 * r['share']:6.1f}%" if r.get("share") is not None else "      -"
        lines.append(f"{label:<44} {r['s']:9.2f} {share}")
    lines.append(f"{'audit wall time':<44} {timing.get('wall_s', 0.0):9.2f}")
    rendering = timing.get("rendering")
    if rendering:
        lines.append(f"{'report rendering (' + ', '.join(rendering['formats']) + ', after the audit)':<44} "
                     f"{rendering['s']:9.2f}")
    return lines


def record_rendering(results: dict[str, Any], out: Path, seconds: float, formats: list[str]) -> None:
    """The reports' rendering time, added to a finished audit's ``results.json`` after they
    are written (reports render ``results`` as it was, and carry no digest of the file, so
    rewriting its volatile ``timing`` block changes nothing they say). Outside the audit's
    wall time: the breakdown's shares stay shares of the audit."""
    timing = results.get("timing")
    if results.get("status") != "complete" or not isinstance(timing, dict) or not formats:
        return
    timing["rendering"] = {"s": seconds, "formats": list(formats)}
    if (out / RESULTS_FILE).is_file():
        write_results(out, results)
