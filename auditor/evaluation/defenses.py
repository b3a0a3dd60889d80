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
from dataclasses import dataclass, field
from typing import Any

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
