"""Evaluating a preprocessing defense honestly: the defended model, the adaptive attack
surface (BPDA, EoT), the non-adaptive transfer numbers and the undefended baseline.

``medaudit run --defense jpeg:quality=75`` audits ``model(defense(x))``. Non-adaptive
numbers for preprocessing defenses are known to mislead (Athalye, Carlini & Wagner,
"Obfuscated Gradients Give a False Sense of Security", ICML 2018; Tramer et al., "On
Adaptive Attacks to Adversarial Example Defenses", NeurIPS 2020), so:

* the audit's main numbers (``results["worst_case"]``, ``results["attacks"]``) are the
  **adaptive** ones: every attack runs against the defended model, through the defense.
  Non-differentiable preprocessing (JPEG, bit depth, TV) is crossed with BPDA: the
  forward pass applies the defense, the backward pass treats it as the identity.
  Randomised defenses are attacked with EoT: the attack differentiates the mean logits
  over ``eot_samples`` draws of the randomness (default 8);
* ``results["defense"]["non_adaptive"]`` holds the numbers a defense's advocate would
  quote: the same attacks, budgets and seeds, computed on the undefended model and
  evaluated on the defended one (transfer, cascade mode);
* ``results["defense"]["undefended"]`` is the baseline: those adversarial examples
  evaluated on the undefended model (the audit without the defense);
* ``gain_disappears_under_adaptive`` is true when, at some eps, the non-adaptive attack
  shows a gain of more than :data:`GAIN_TOLERANCE` over the baseline and the adaptive
  attack leaves no more than that.

Randomised defenses are evaluated deterministically: a prediction draws its noise from a
generator seeded by the audit seed and the image's bytes (a majority vote over
``samples`` copies for randomised smoothing), and EoT draws come from the global torch
generator, which the engine seeds for every attack step.

Spec syntax: ``name`` or ``name:key=value,key=value``; the keys are the defense's own
parameters plus ``eot_samples`` for randomised defenses.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from auditor.errors import UsageError

GAIN_TOLERANCE = 0.05  # "within a few points": 5 percentage points of accuracy
DEFAULT_EOT_SAMPLES = 8
MAX_EOT_SAMPLES = 1000
USAGE = "give --defense NAME or NAME:key=value,key=value (e.g. jpeg:quality=75)"


# ------------------------------------------------------------------------- parsing
@dataclass
class DefenseSpec:
    """A parsed ``--defense`` value: the registered defense and its checked parameters."""

    name: str
    defense: Any  # auditor.interfaces.Defense
    params: dict[str, Any]
    eot_samples: int | None  # randomised defenses only
    text: str

    @property
    def title(self) -> str:
        shown = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.params.items())
        return f"{self.name} ({shown})" if shown else self.name


def _parse_pairs(text: str, name: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise UsageError(f"--defense {name}: '{part}' is not key=value; {USAGE}")
        key, value = (s.strip() for s in part.split("=", 1))
        if not key or not value:
            raise UsageError(f"--defense {name}: '{part}' needs both a key and a value; {USAGE}")
        if key in pairs:
            raise UsageError(f"--defense {name}: '{key}' is given twice")
        pairs[key] = value
    return pairs


def parse_defense(text: str, registry: Any) -> DefenseSpec:
    """``"jpeg:quality=75"`` -> :class:`DefenseSpec`. Every mistake is a one-line
    :class:`~auditor.errors.UsageError` (exit code 2)."""
    raw = (text or "").strip()
    name, _, rest = raw.partition(":")
    name = name.strip()
    if not name:
        raise UsageError(f"--defense: no defense named; {USAGE}")
    known = registry.names("defenses")
    if name not in known:
        raise UsageError(f"--defense: unknown defense '{name}' (known: {', '.join(sorted(known)) or 'none'})")
    defense = registry.get("defenses", name)
    pairs = _parse_pairs(rest, name)
    eot_text = pairs.pop("eot_samples", None)
    eot: int | None = None
    if eot_text is not None and not defense.randomized:
        raise UsageError(f"--defense {name}: eot_samples applies to randomised defenses only ({name} is deterministic)")
    if defense.randomized:
        eot = DEFAULT_EOT_SAMPLES
        if eot_text is not None:
            try:
                eot = int(eot_text)
            except ValueError:
                raise UsageError(f"--defense {name}: eot_samples={eot_text!r} is not an integer") from None
            if not 1 <= eot <= MAX_EOT_SAMPLES:
                raise UsageError(f"--defense {name}: eot_samples must be between 1 and {MAX_EOT_SAMPLES}")
    resolve = getattr(defense, "resolve", None)
    params = resolve(pairs) if callable(resolve) else dict(pairs)
    try:
        defense.build(params)  # third-party defenses check their own parameters here
    except UsageError:
        raise
    except (TypeError, ValueError, KeyError) as exc:
        raise UsageError(f"--defense {name}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    return DefenseSpec(name=name, defense=defense, params=params, eot_samples=eot, text=raw)


# -------------------------------------------------------------------------- wrappers
class StraightThrough(nn.Module):
    """BPDA with the identity (Athalye et al., ICML 2018): the forward pass is
    ``transform(x)``, the backward pass the identity, so gradient attacks see through a
    non-differentiable preprocessing step."""

    def __init__(self, transform: nn.Module) -> None:
        super().__init__()
        self.transform = transform

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            y = self.transform(x.detach())
        return x + (y - x).detach()


class Preprocessed(nn.Module):
    """``model(transform(x))``."""

    def __init__(self, model: nn.Module, transform: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.transform = transform

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.transform(x))


class ExpectationOverTransformation(nn.Module):
    """EoT (Athalye et al., ICML 2018): the mean of ``model(transform(x))`` over
    ``samples`` independent draws of a randomised ``transform``, in one batched pass.
    Its input gradient is the average of the per-draw gradients of the logits, so its
    variance falls as 1/samples. Draws come from the global torch generator."""

    def __init__(self, model: nn.Module, transform: nn.Module, samples: int) -> None:
        super().__init__()
        self.model = model
        self.transform = transform
        self.samples = int(samples)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        copies = x.unsqueeze(0).expand(self.samples, *x.shape).reshape(self.samples * n, *x.shape[1:])
        out = self.model(self.transform(copies))
        return out.reshape(self.samples, n, *out.shape[1:]).mean(0)


def content_seed(seed: int, image: torch.Tensor) -> int:
    """A 63-bit seed from the audit seed and an image's bytes: the same image gets the
    same draw whatever batch it arrives in."""
    digest = hashlib.sha256(str(int(seed)).encode() + image.detach().float().cpu().numpy().tobytes()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class SeededRandomized(nn.Module):
    """Prediction through a randomised defense, deterministic per image.

    Each image gets its own generator state (:func:`content_seed`); with ``votes`` > 1 the
    output is the log of the smoothed vote shares of ``votes`` noisy copies (the class most
    copies vote for has the largest value), otherwise the logits of a single draw. The vote
    passes the gradient of the copies' mean logits straight through, so code that times or
    differentiates the model still works (attacks use :class:`ExpectationOverTransformation`)."""

    def __init__(self, model: nn.Module, transform: nn.Module, votes: int, seed: int) -> None:
        super().__init__()
        self.model = model
        self.transform = transform
        self.votes = int(votes)
        self.seed = int(seed)

    def _draw(self, image: torch.Tensor, copies: int) -> torch.Tensor:
        devices = [image.device] if image.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(content_seed(self.seed, image))
            return self.transform(image.unsqueeze(0).expand(copies, *image.shape).contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for image in x:
            logits = self.model(self._draw(image, self.votes))
            if self.votes == 1:
                outs.append(logits[0])
                continue
            k = logits.shape[1]
            counts = torch.bincount(logits.argmax(1), minlength=k).to(logits.dtype)
            mean = logits.mean(0)
            outs.append(torch.log((counts + 0.5) / (self.votes + 0.5 * k)) + (mean - mean.detach()))
        return torch.stack(outs)


@dataclass
class DefendedModels:
    """The three views of a defended model an honest evaluation needs."""

    spec: DefenseSpec
    undefended: nn.Module  # the model alone
    predict: nn.Module  # what the audit evaluates: the model behind the defense
    attack: nn.Module  # what adaptive attacks differentiate (BPDA / EoT where needed)
    adaptive_method: str  # "direct" | "bpda" | "eot" | "bpda+eot"
    votes: int = 1
    seed: int = 0
    facts: dict[str, Any] = field(default_factory=dict)


def build_defended(spec: DefenseSpec, model: nn.Module, seed: int = 0) -> DefendedModels:
    """Wrap ``model`` (images in [0,1] -> logits) behind ``spec``'s defense."""
    defense = spec.defense
    transform = defense.build(spec.params).eval()
    votes = int(getattr(defense, "vote_samples", lambda p: 1)(spec.params))
    differentiable = bool(defense.differentiable)
    surface = transform if differentiable else StraightThrough(transform)
    if defense.randomized:
        predict: nn.Module = SeededRandomized(model, transform, votes, seed)
        attack: nn.Module = ExpectationOverTransformation(model, surface, spec.eot_samples or DEFAULT_EOT_SAMPLES)
        method = "eot" if differentiable else "bpda+eot"
    else:  # one module: BPDA's forward pass is the defense itself
        predict = attack = Preprocessed(model, surface)
        method = "direct" if differentiable else "bpda"
    return DefendedModels(spec=spec, undefended=model, predict=predict.eval(), attack=attack.eval(),
                          adaptive_method=method, votes=votes, seed=seed)


ADAPTIVE_TEXT = {
    "direct": "attacks differentiate through the defense itself (it is differentiable)",
    "bpda": "BPDA: the defense is applied in the forward pass and treated as the identity in the backward pass",
    "eot": "EoT: attacks differentiate the mean logits over {eot} draws of the defense's randomness",
    "bpda+eot": "BPDA and EoT: identity backward pass, mean logits over {eot} draws",
}


# ------------------------------------------------------------- engine integration
def attach_defense(config: Any, registry: Any, loaded: Any, task: str) -> DefendedModels | None:
    """Put ``config.defense`` in front of ``loaded.module`` (the audit then predicts
    through it). None when no defense was asked for."""
    if not getattr(config, "defense", None):
        return None
    spec = parse_defense(config.defense, registry)
    if task != "classification":
        raise UsageError("--defense: preprocessing defenses are evaluated for classification models only")
    setup = build_defended(spec, loaded.module, seed=config.seed)
    loaded.module = setup.predict
    return setup


def attack_surface(prep: Any) -> nn.Module:
    """The module attacks run against: the adaptive view of a defended model, else the model."""
    defense = getattr(prep, "defense", None)
    return defense.attack if defense is not None else prep.model.module


def _worst(robust: np.ndarray, eps_255: float, n: int) -> dict[str, Any]:
    from auditor.stats import proportion_ci

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
    from auditor.accounting import CountingModel, PassCounter
    from auditor.engine import step_seed
    from auditor.interfaces import AttackContext
    from plugins.attacks._common import project

    prep, setup = audit.prep, audit.prep.defense
    counter = PassCounter()
    ctx = AttackContext(model=CountingModel(setup.undefended, counter).eval(), device=prep.device,
                        num_classes=prep.num_classes, input_shape=prep.input_shape, task=prep.task,
                        seed=audit.config.seed, batch_size=audit.config.batch_size, counter=counter)
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
                for chunk_no, chunk in enumerate(audit._chunks(candidates)):
                    x, y, _ = audit._batch(chunk)
                    params["seed"] = step_seed(audit.config.seed, attack.name, eps_255, chunk_no)
                    torch.manual_seed(params["seed"])
                    np.random.seed(params["seed"])
                    x_adv = project(attack.run(ctx, x, y, eps, params).x_adv.detach().to(x.dtype), x, eps)
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
    from auditor.harden import evidence_from_log, log_path_for

    log = log_path_for(Path(model_path))
    if not log.is_file():
        return []
    import json

    try:
        return [evidence_from_log(json.loads(log.read_text()))]
    except (OSError, ValueError, KeyError, TypeError):
        return []
