"""A --defense audit's evidence beside the adaptive numbers: the same attacks computed on the
undefended model and evaluated on the defended one (non-adaptive) and on the undefended
one (baseline), the gain table, its verdict, and hardening evidence logged by ``harden``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from auditor.accounting import CountingModel, PassCounter
from auditor.hardening.evidence import evidence_from_log, log_path_for
from auditor.evaluation.defenses import ADAPTIVE_TEXT, GAIN_TOLERANCE, DefendedModels
from auditor.interfaces import AttackContext
from auditor.stats import proportion_ci
from auditor.steps import attack_chunk, step_seed


def _worst(robust: np.ndarray, eps_255: float, n: int) -> dict[str, Any]:

    k = int(robust.sum())
    return {"eps_255": eps_255, "robust_accuracy": k / n, "n_robust": k, "n": n,
            "ci95": list(proportion_ci(k, n)), "ci_method": "wilson"}


@torch.no_grad()
def _predict(audit: Any, module: nn.Module, indices: np.ndarray) -> np.ndarray:
    preds = []
    for chunk in audit._chunks(indices):
        x, _, _ = audit._batch(chunk)
        preds.append(module(x).argmax(1).cpu().numpy())
    return np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)


def transfer_pass(audit: Any) -> dict[str, Any]:
    """The non-adaptive numbers and the undefended baseline in one pass: every attack of
    the audit (same budgets, seeds, eps grid, cascade) runs on the undefended model; each
    adversarial example is evaluated on the defended and on the undefended model."""

    prep, setup = audit.prep, audit.prep.defense
    counter = PassCounter()
    ctx = AttackContext(model=CountingModel(setup.undefended, counter).eval(), device=prep.device,
                        num_classes=prep.num_classes, input_shape=prep.input_shape, task=prep.task,
                        seed=audit.config.seed, batch_size=audit.config.batch_size, counter=counter)
    ctx.extra.update(prep.attack_extra)  # e.g. the --surrogate model transfer attacks craft on
    n, labels = audit.n, audit.labels
    correct = {"defended": audit.correct.copy(), "undefended": _predict(audit, setup.undefended, np.arange(n)) == labels}
    broken = {view: np.zeros(n, dtype=bool) for view in correct}
    views = {"defended": audit.prep.model.module, "undefended": setup.undefended}
    per_attack: dict[str, list[dict[str, Any]]] = {view: [] for view in correct}
    worst: dict[str, list[dict[str, Any]]] = {view: [] for view in correct}
    t0 = time.perf_counter()
    for eps_255 in prep.eps_255:
        eps = eps_255 / 255.0
        for attack in prep.attacks:
            open_ = np.zeros(n, dtype=bool)
            for view in correct:
                open_ |= correct[view] & ~broken[view]
            candidates = np.nonzero(open_)[0]
            params = dict(prep.params[attack.name])
            with audit.progress.task(f"non-adaptive {attack.name} eps={eps_255:g}/255", len(candidates)) as task:
                for chunk in audit._chunks(candidates):
                    x, y, _ = audit._batch(chunk)
                    seed = step_seed(audit.config.seed, attack.name, eps_255)
                    _, x_adv, _, _ = attack_chunk(attack, ctx, x, y, eps, params, seed, chunk)
                    with torch.no_grad():
                        for view, module in views.items():
                            fooled = (module(x_adv).argmax(1) != y).cpu().numpy()
                            broken[view][chunk[fooled]] = True
                    task.advance(len(chunk))
            for view in correct:
                k = int((correct[view] & ~broken[view]).sum())
                per_attack[view].append({"attack": attack.name, "eps_255": eps_255, "robust_accuracy": k / n,
                                         "n_robust": k, "cumulative": True})
        for view in correct:
            worst[view].append(_worst(correct[view] & ~broken[view], eps_255, n))
    elapsed = time.perf_counter() - t0
    return {
        view: {"clean_accuracy": float(correct[view].mean()), "worst_case": worst[view], "attacks": per_attack[view]}
        for view in correct
    } | {"time_s": elapsed, "passes": counter.snapshot()}


def _gain_rows(adaptive: list[dict[str, Any]], non_adaptive: list[dict[str, Any]],
               undefended: list[dict[str, Any]], tolerance: float) -> list[dict[str, Any]]:
    rows = []
    for a, na, u in zip(adaptive, non_adaptive, undefended):
        gain_na = na["robust_accuracy"] - u["robust_accuracy"]
        gain_a = a["robust_accuracy"] - u["robust_accuracy"]
        rows.append({"eps_255": a["eps_255"], "undefended": u["robust_accuracy"],
                     "non_adaptive": na["robust_accuracy"], "adaptive": a["robust_accuracy"],
                     "gain_non_adaptive": gain_na, "gain_adaptive": gain_a,
                     "disappears": bool(gain_na > tolerance and gain_a <= tolerance)})
    return rows


def _verdict(rows: list[dict[str, Any]], tolerance: float) -> str:
    if any(r["disappears"] for r in rows):
        at = ", ".join(f"{r['eps_255']:g}/255" for r in rows if r["disappears"])
        return f"the gain seen under non-adaptive attacks disappears under the adaptive attack (at {at})"
    if not any(r["gain_non_adaptive"] > tolerance or r["gain_adaptive"] > tolerance for r in rows):
        return "no gain over the undefended model, even against non-adaptive attacks"
    held = ", ".join(f"{r['eps_255']:g}/255" for r in rows if r["gain_adaptive"] > tolerance)
    return f"a gain of more than {tolerance:.0%} holds under the adaptive attack at {held}"


def _pct(value: float) -> str:
    return f"{100 * value:.0f}%"


def defense_results(audit: Any, results: dict[str, Any]) -> dict[str, Any]:
    """``{"defense": ..., "defenses": [...]}`` for a defended audit (after its attack
    steps). ``defenses`` also carries the evidence of a ``medaudit harden`` log found next
    to the model; ``{}`` when there is neither. The module docstring explains the numbers."""
    hardening = hardening_evidence_for_model(audit.prep.model.path)
    setup: DefendedModels | None = getattr(audit.prep, "defense", None)
    if setup is None:
        return {"defenses": hardening} if hardening else {}
    spec, defense = setup.spec, setup.spec.defense
    transfer = transfer_pass(audit)
    adaptive = {"clean_accuracy": results["clean"]["accuracy"],
                "worst_case": [{k: w[k] for k in ("eps_255", "robust_accuracy", "n_robust", "n", "ci95", "ci_method")}
                               for w in results["worst_case"]],
                "method": setup.adaptive_method,
                "description": ADAPTIVE_TEXT[setup.adaptive_method].format(eot=spec.eot_samples),
                "eot_samples": spec.eot_samples}
    non_adaptive = {**transfer["defended"],
                    "description": "attacks computed on the undefended model, evaluated on the defended one"}
    undefended = {**transfer["undefended"],
                  "description": "the same adversarial examples evaluated on the model without the defense"}
    rows = _gain_rows(adaptive["worst_case"], non_adaptive["worst_case"], undefended["worst_case"], GAIN_TOLERANCE)
    block = {
        "name": spec.name, "title": spec.title, "spec": spec.text, "family": defense.family,
        "description": defense.description, "reference": getattr(defense, "reference", ""),
        "params": spec.params, "differentiable": bool(defense.differentiable),
        "randomized": bool(defense.randomized), "vote_samples": setup.votes,
        "seed": setup.seed if defense.randomized else None,
        "main_numbers": "adaptive",
        "adaptive": adaptive, "non_adaptive": non_adaptive, "undefended": undefended,
        "gain": rows, "gain_tolerance": GAIN_TOLERANCE,
        "gain_disappears_under_adaptive": any(r["disappears"] for r in rows),
        "verdict": _verdict(rows, GAIN_TOLERANCE),
        "transfer_pass": {"time_s": transfer["time_s"], "passes": transfer["passes"]},
    }
    at = rows[len(rows) // 2] if rows else None
    message = (f"Adaptive attack ({setup.adaptive_method.upper()}); without the defense: clean "
               f"{_pct(undefended['clean_accuracy'])}")
    if at is not None:
        message += (f", {_pct(at['undefended'])} at {at['eps_255']:g}/255; non-adaptive attacks suggest "
                    f"{_pct(at['non_adaptive'])} at {at['eps_255']:g}/255")
    message += f". Verdict: {block['verdict']}."
    evidence = {
        "name": spec.name, "title": f"{defense.description} [{spec.title}]", "family": defense.family,
        "source": "this audit", "numbers": "adaptive",
        "clean_accuracy": adaptive["clean_accuracy"],
        "worst_case": [{"eps_255": w["eps_255"], "robust_accuracy": w["robust_accuracy"]} for w in adaptive["worst_case"]],
        "baseline": {"clean_accuracy": undefended["clean_accuracy"],
                     "worst_case": [{"eps_255": w["eps_255"], "robust_accuracy": w["robust_accuracy"]}
                                    for w in undefended["worst_case"]]},
        "non_adaptive": {"clean_accuracy": non_adaptive["clean_accuracy"],
                         "worst_case": [{"eps_255": w["eps_255"], "robust_accuracy": w["robust_accuracy"]}
                                        for w in non_adaptive["worst_case"]]},
        "gain_disappears_under_adaptive": block["gain_disappears_under_adaptive"],
        "message": message,
    }
    return {"defense": block, "defenses": hardening + [evidence]}


def hardening_evidence_for_model(model_path: str | Path) -> list[dict[str, Any]]:
    """Evidence from a ``medaudit harden`` log next to the audited model, if there is one."""


    log = log_path_for(Path(model_path))
    if not log.is_file():
        return []
    import json

    try:
        return [evidence_from_log(json.loads(log.read_text()))]
    except (OSError, ValueError, KeyError, TypeError):
        return []
