"""The audit configuration and the parsers for option strings."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from auditor.errors import UsageError

MODES = ("cascade", "independent")


def parse_eps(text: str) -> list[float]:
    """``"2,4,6,8"`` (in /255 units) -> sorted unique list of floats. Rejects junk and
    negatives with a one-line message."""
    values = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        if part.endswith("/255"):
            part = part[: -len("/255")]
        try:
            value = float(part)
        except ValueError:
            raise UsageError(f"--eps: '{part}' is not a number (give /255 units, e.g. --eps 2,4,8)") from None
        if not math.isfinite(value) or value <= 0:
            raise UsageError(f"--eps: {part} must be a positive number of /255 units")
        if value > 255:
            raise UsageError(f"--eps: {part}/255 is larger than the whole [0,1] range")
        values.append(value)
    if not values:
        raise UsageError("--eps: give at least one value, e.g. --eps 2,4,6,8")
    return sorted(set(values))


def parse_list(text: str | None, option: str) -> list[str] | None:
    if text is None:
        return None
    items = [p.strip() for p in str(text).split(",") if p.strip()]
    if not items:
        raise UsageError(f"{option}: the list is empty")
    return items


def parse_floats(text: str | None, option: str) -> list[float] | None:
    items = parse_list(text, option)
    if items is None:
        return None
    try:
        return [float(v) for v in items]
    except ValueError:
        raise UsageError(f"{option}: expected comma-separated numbers, got '{text}'") from None


def parse_severities(text: str) -> list[int]:
    """``"1,3,5"`` -> [1, 3, 5]: corruption severities, whole numbers from 1 to 5."""
    values = []
    for part in parse_list(text, "--severities") or []:
        if not part.isdigit() or not 1 <= int(part) <= 5:
            raise UsageError(f"--severities: '{part}' is not a severity from 1 to 5 (e.g. --severities 1,3,5)")
        values.append(int(part))
    return sorted(set(values))


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``"64"`` -> (64, 64); ``"576x560"`` -> (576, 560) as (H, W)."""
    if text is None:
        return None
    parts = str(text).lower().replace(",", "x").split("x")
    try:
        dims = [int(p) for p in parts if p.strip()]
    except ValueError:
        raise UsageError(f"--input-size: '{text}' is not a size (e.g. 64 or 576x560)") from None
    if len(dims) == 1:
        dims = dims * 2
    if len(dims) != 2 or min(dims) < 1 or max(dims) > 8192:
        raise UsageError(f"--input-size: '{text}' is not a size between 1 and 8192 (e.g. 64 or 576x560)")
    return dims[0], dims[1]


def parse_backends(text: str | None, known_attacks: dict[str, Any]) -> dict[str, str]:
    """``"native"`` sets every attack that has it; ``"cw=art,zoo=native"`` sets single ones."""
    if not text:
        return {}
    out: dict[str, str] = {}
    for part in parse_list(text, "--backend") or []:
        if "=" in part:
            name, backend = (s.strip() for s in part.split("=", 1))
            if name not in known_attacks:
                raise UsageError(f"--backend: unknown attack '{name}'")
            if backend not in known_attacks[name].backends:
                raise UsageError(
                    f"--backend: attack '{name}' has backends {', '.join(known_attacks[name].backends)}, not '{backend}'"
                )
            out[name] = backend
        else:
            if part not in ("art", "native"):
                raise UsageError(f"--backend: '{part}' is not art or native (or give attack=backend)")
            for name, attack in known_attacks.items():
                if part in attack.backends:
                    out.setdefault(name, part)
    return out


def resolve_device(text: str) -> torch.device:
    text = (text or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {text}: no CUDA GPU is available here (use --device cpu)")
        dev = torch.device(text)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(f"--device {text}: only {torch.cuda.device_count()} GPU(s) present")
        return dev
    raise UsageError(f"--device: '{text}' is not auto, cpu, cuda or cuda:N")


@dataclass
class AuditConfig:
    model: Path
    data: Path
    out: Path = Path("medaudit-report")
    model_format: str | None = None
    arch: str | None = None
    custom_objects: str | None = None  # --custom-objects: Keras classes from a module the user names (runs it)
    trust_model: bool = False
    mean: list[float] | None = None
    std: list[float] | None = None
    preprocess: str | None = None  # --preprocess preset that set mean/std (auditor.models.PREPROCESS_PRESETS)
    data_format: str | None = None
    split: str | None = None
    classes: list[str] | None = None
    limit: int | None = None
    input_size: tuple[int, int] | None = None
    channels: int | None = None
    modality: str = "dermoscopy"
    task: str | None = None
    eps_255: list[float] | None = None
    attacks: list[str] | None = None
    budget: str = "standard"
    seed: int = 0
    device: str = "auto"
    batch_size: int = 32
    mode: str = "cascade"
    backends: dict[str, str] = field(default_factory=dict)
    formats: list[str] = field(default_factory=lambda: ["html", "pdf"])
    resume: bool = False
    allow_probabilities: bool = False
    roi: Path | None = None
    positive_class: str | None = None  # clinical metrics; default from the modality
    fail_under: list[str] = field(default_factory=list)  # acceptance criteria (auditor.gates)
    junit: Path | None = None  # write the gates as JUnit XML here
    checks: bool = True  # run the validity checks (auditor.evaluation.checks)
    check_samples: int = 48  # clean-correct samples the checks attack
    defense: str | None = None  # --defense spec, e.g. "jpeg:quality=75" (auditor.evaluation.defenses)
    surrogate: Path | None = None  # --surrogate: transfer attacks craft on this model (auditor.transfer)
    detector_fit: Path | None = None  # fit a Mahalanobis detector on this data and evaluate it (auditor.evaluation.detection)
    detector_fit_split: str | None = "train"
    detector_fit_limit: int | None = 2000
    detector_samples: int = 64  # clean-correct audit images the detector is evaluated on
    detectors: list[str] | None = None  # None: mahalanobis, kd-bu and lid (auditor.evaluation.detection.DETECTORS)
    uap: bool = False  # universal perturbations (auditor.evaluation.universal)
    uap_fit: Path | None = None  # fit them on this data; else on a seeded half of --data
    uap_fit_split: str | None = None
    uap_fit_limit: int | None = 256
    saliency: bool = False  # integrated-gradients saliency, clean vs adversarial (auditor.evaluation.saliency)
    saliency_samples: int = 16
    follow_symlinks: bool = False  # read data files whose real path leaves --data (plugins.data.common.DataRoot)
    model_timeout: float | None = 600.0  # seconds one model call may take (auditor.deadline); None/0: no limit
    max_time: float | None = None  # --max-time: stop at a step boundary after this many seconds (auditor.stopping)
    # query-only targets (auditor.query_target): what the outputs are (--outputs; changes numbers)
    outputs: str | None = None
    # the service connection: rate limit, concurrency, auth sources (names, never secrets); no number depends on it
    service: dict[str, Any] = field(default_factory=dict)
    max_queries: int | None = None  # --max-queries: stop at a step boundary within this many images queried
    extra: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)  # --metadata: device, intended use, owner (auditor.metadata)
    corruptions: list[str] = field(default_factory=list)  # corruption families (auditor.engine.corruption); []: none
    severities: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    # --engine ray and its options (auditor.engine.ray_engine); {}: local. Changes no number.
    engine: dict[str, Any] = field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        """The parts of the configuration that change the numbers (resume checks these)."""
        data = asdict(self)
        for key in ("out", "formats", "resume", "device", "fail_under", "junit", "model_timeout",
                    "follow_symlinks", "metadata", "max_time", "service", "max_queries", "engine"):  # metadata names the device; it changes no number
            data.pop(key, None)
        return json.loads(json.dumps(data, default=str))


def config_hash(identity: dict[str, Any], model_sha256: str, data_fingerprint: str) -> str:
    blob = json.dumps({"config": identity, "model": model_sha256, "data": data_fingerprint}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()
