"""Contracts between the engine and plugins.

Images everywhere are float32 tensors (N, C, H, W) in [0, 1]; models take such images and
return logits: (N, K) for classification, (N, 1, H, W) or (N, K, H, W) for segmentation.
Any normalisation lives inside the model (see ``--mean``/``--std``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np
import torch

if TYPE_CHECKING:
    from auditor.accounting import PassCounter

TASKS = ("classification", "segmentation")


# --------------------------------------------------------------------------- data
@dataclass
class Batch:
    """A batch of samples, ready for the model.

    ``targets`` is (N,) int64 class indices for classification and (N, H, W) int64 class
    maps for segmentation (0 = background). ``roi`` is an optional (N, H, W) bool mask that
    restricts segmentation metrics (e.g. a field of view)."""

    images: torch.Tensor
    targets: torch.Tensor
    ids: list[str]
    indices: np.ndarray
    roi: torch.Tensor | None = None


@dataclass
class DataOptions:
    """What the user asked for when opening a data set."""

    channels: int = 3
    input_size: tuple[int, int] | None = None  # (H, W); None keeps the native size
    split: str | None = None
    classes: list[str] | None = None
    limit: int | None = None
    seed: int = 0
    task: str = "classification"
    roi: Path | None = None  # segmentation: folder of region-of-interest masks
    # read listed files whose real path (links, "..") leaves the data folder (--follow-symlinks)
    follow_symlinks: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class Dataset(ABC):
    """An indexable, streamable labelled data set. ``load`` decodes only what it is asked for."""

    source: str  # path as given by the user
    format: str  # data source name
    class_names: list[str]
    task: str = "classification"

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def targets(self) -> np.ndarray:
        """Classification labels of all samples, (N,) int64, without decoding images.
        Segmentation data sets return an array of zeros."""

    @abstractmethod
    def load(self, indices: Sequence[int]) -> Batch:
        """Decode the samples at ``indices`` (positions in this data set)."""

    @abstractmethod
    def fingerprint(self) -> str:
        """SHA-256 over the manifest / file list and the options that select samples."""

    def ids(self) -> list[str]:
        """Stable per-sample identifiers (file names relative to the source)."""
        return [str(i) for i in range(len(self))]

    def describe(self) -> dict[str, Any]:
        """Facts for ``results.json['data']`` beyond the ones the engine computes."""
        return {}

    def native_size(self) -> tuple[int, int] | None:
        """(H, W) that every image of this data set has, when the source knows it without
        decoding pixels (an array's shape, image file headers); None when sizes differ or
        are unknown. Audits run at this size unless the user or the model names one."""
        return None


class DataSource(ABC):
    """A data layout medaudit can read (class folders, CSV manifest, npz, ...)."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    tasks: ClassVar[tuple[str, ...]] = ("classification",)

    @abstractmethod
    def detect(self, path: Path, options: DataOptions) -> bool:
        """True when this source can read ``path``."""

    @abstractmethod
    def open(self, path: Path, options: DataOptions) -> Dataset:
        """Open ``path`` lazily; raise :class:`auditor.errors.InputError` on bad data."""


# -------------------------------------------------------------------------- models
@dataclass
class ModelOptions:
    arch: str | None = None  # "module:callable" building the architecture for a state dict
    trust_model: bool = False  # allow unpickling a whole module (executes code from the file)
    device: str = "cpu"
    # loader-specific settings from the command line (a service's --outputs, --rate-limit,
    # --concurrency, auth sources); never the credentials themselves
    extra: dict[str, Any] = field(default_factory=dict)


class ModelLoader(ABC):
    """A model file format."""

    name: ClassVar[str]
    suffixes: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""
    executes_code: ClassVar[bool] = False  # True when loading can run code from the file

    def detect(self, path: Path) -> bool:
        """True when this loader recognises ``path``; the default matches the suffix."""
        return path.suffix.lower() in self.suffixes

    @abstractmethod
    def load(self, path: Path, options: ModelOptions) -> torch.nn.Module:
        """Return a module in eval mode. Raise :class:`auditor.errors.InputError` on failure."""

    def input_size(self, path: Path) -> tuple[int, int] | None:
        """(H, W) the model file declares for its input, when it declares fixed ones (an
        ONNX graph input of static shape); None otherwise. Called after ``load``."""
        return None

    def companion_files(self, path: Path) -> list[Path]:
        """Other files the model at ``path`` is read from (e.g. ONNX external data); they
        are part of the model's fingerprint (``sha256``, ``--resume``). Called after ``load``."""
        return []


# ------------------------------------------------------------------------- attacks
@dataclass
class AttackContext:
    """Everything an attack needs besides the images. Built once per audit by the engine."""

    model: torch.nn.Module  # counting wrapper, eval mode, on ``device``; returns logits
    device: torch.device
    num_classes: int
    input_shape: tuple[int, int, int]
    task: str
    seed: int
    batch_size: int
    counter: "PassCounter"
    # extra["on_iteration"], when set: a no-argument callable an iterative attack calls once
    # per iteration (the engine's progress inside one long batch)
    extra: dict[str, Any] = field(default_factory=dict)
    _art: Any = None  # cache of auditor.art_adapter.art_classifier(ctx)


@dataclass
class AttackResult:
    x_adv: torch.Tensor  # same shape and dtype as the input, in [0, 1]
    queries: np.ndarray | None = None  # per-sample model queries (black-box attacks)
    details: dict[str, Any] = field(default_factory=dict)  # e.g. sub-attacks that ran
    # per-sample tensors beyond x_adv that a caller may read (e.g. the best target
    # probability a targeted attack reached); the engine does not record them
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)


class Attack(ABC):
    """An L-inf evasion attack. Subclasses are small: a docstring with the paper, the
    threat model and defaults, ``parameters`` and ``run``."""

    name: ClassVar[str]
    title: ClassVar[str] = ""
    threat_model: ClassVar[str] = "white-box"  # or "black-box"
    # what the attack needs from the model: "gradients" (white-box), "scores" (the output
    # logits/probabilities only, e.g. Square, ZOO) or "labels" (the predicted class only,
    # e.g. HopSkipJump). A query-only target (a model behind an inference service) allows
    # "scores" and/or "labels" attacks; the engine skips the rest and says why.
    access: ClassVar[str] = "gradients"
    norm: ClassVar[str] = "linf"
    cost: ClassVar[int] = 50  # cheap attacks run first in the cascade
    tasks: ClassVar[tuple[str, ...]] = ("classification",)
    backends: ClassVar[tuple[str, ...]] = ("art",)
    default_backend: ClassVar[str] = "art"
    reference: ClassVar[str] = ""
    # in the battery a plain ``medaudit run`` uses for its task (no --attacks)
    default_battery: ClassVar[bool] = False
    # False for attacks the engine runs for its own purposes (clinical targeting, adaptive
    # detection, adversarial training): not listed by ``medaudit plugins``, not --attacks values
    public: ClassVar[bool] = True

    @abstractmethod
    def parameters(self, budget: str, ctx: AttackContext) -> dict[str, Any]:
        """Every parameter of the attack for this budget (``quick|standard|thorough``).
        Recorded verbatim in ``results.json``; ``run`` receives the same dict plus
        ``backend``."""

    @abstractmethod
    def run(
        self, ctx: AttackContext, x: torch.Tensor, y: torch.Tensor, eps: float, params: dict[str, Any]
    ) -> AttackResult:
        """Attack ``x`` (labels ``y``) within the L-inf ball of radius ``eps`` (in [0,1] units)."""


# ------------------------------------------------------------------------ defenses
class Defense(ABC):
    """A defense medaudit can apply in front of a model and evaluate."""

    name: ClassVar[str]
    family: ClassVar[str] = "preprocessing"  # preprocessing | detection | training
    description: ClassVar[str] = ""
    differentiable: ClassVar[bool] = True
    randomized: ClassVar[bool] = False

    @abstractmethod
    def build(self, params: dict[str, Any]) -> torch.nn.Module:
        """A module mapping images in [0,1] to images in [0,1], applied before the model."""


# ------------------------------------------------------------------------- metrics
class Metric(ABC):
    """A per-sample metric. ``compute`` returns (N,) float values; ``aggregate`` reduces them."""

    name: ClassVar[str]
    task: ClassVar[str] = "classification"
    description: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = True

    @abstractmethod
    def compute(
        self, logits: torch.Tensor, targets: torch.Tensor, roi: torch.Tensor | None = None
    ) -> torch.Tensor: ...

    def aggregate(self, values: torch.Tensor) -> float:
        return float(values.float().mean()) if values.numel() else float("nan")

    def configured(self, **options: Any) -> "Metric":
        """This metric with audit options applied (e.g. ``missed_fraction``); options a
        metric does not take are ignored."""
        return self


# ----------------------------------------------------------------------- reporters
@dataclass
class ReportOptions:
    template_dirs: list[Path] = field(default_factory=list)
    base_dir: Path | None = None  # folder results.json lives in (for relative assets)


class Reporter(ABC):
    """Renders ``results.json`` (a dict) into one output file. Never computes numbers."""

    name: ClassVar[str]  # the --format value, e.g. "html"
    filename: ClassVar[str]  # e.g. "report.html"
    description: ClassVar[str] = ""
    template_package: ClassVar[str | None] = None  # extra template folder (ChoiceLoader)

    @abstractmethod
    def render(self, results: dict[str, Any], out_dir: Path, options: ReportOptions) -> Path: ...


# ---------------------------------------------------------------------- modalities
@dataclass(frozen=True)
class Modality:
    """A preset for one imaging modality: input defaults and report text."""

    name: str
    title: str
    channels: int
    input_size: tuple[int, int]
    eps_255: tuple[float, ...] = (2, 4, 6, 8)
    positive_class: str | None = None
    task: str = "classification"
    threats: str = ""
    defenses: tuple[str, ...] = ()
    notes: str = ""
    # what a segmentation mask of this modality outlines, as the report names it ("lesion",
    # "vessels"): a fundus vessel map has no lesion to miss
    structure: str = "lesion"
    # natural / acquisition corruption families audited by --corruptions default
    corruptions: tuple[str, ...] = ()


# ---------------------------------------------------------------------- corruptions
SEVERITIES = (1, 2, 3, 4, 5)
REFERENCE_SIZE = 224  # MedMNIST-C and ImageNet-C give spatial parameters for 224-pixel images


class Corruption(ABC):
    """A natural or acquisition corruption (blur, noise, exposure, compression, an MR
    artefact) at five severities, audited beside the adversarial battery.

    ``ladders`` holds the parameter at severities 1..5 as a citable source gives it: key
    ``"default"``, plus a modality name where the source tunes it per data set (MedMNIST-C
    does). With ``spatial`` the values are pixels of a 224-pixel image and ``parameters``
    adds the factor that scales them to the audited size. ``apply(x, params, seeds)``
    returns (N, C, H, W) images with ``x``'s shape; ``seeds`` has one integer per image, so
    an image's randomness never depends on the batch it is in. Severity 0 is the identity.
    Raise :class:`auditor.errors.UsageError` for input it cannot corrupt."""

    name: ClassVar[str]
    title: ClassVar[str] = ""
    modalities: ClassVar[tuple[str, ...]] = ()  # the modalities it is meant for (informative)
    reference: ClassVar[str] = ""
    library: ClassVar[str] = ""  # what implements it
    parameter: ClassVar[str] = ""  # what the severity sets, e.g. "sigma"
    ladders: ClassVar[dict[str, tuple[Any, ...]]] = {}
    spatial: ClassVar[bool] = False
    channels: ClassVar[tuple[int, ...]] = (1, 3)
    vectorised: ClassVar[bool] = True  # one batched call; False: a loop over images
    public: ClassVar[bool] = True

    def parameters(self, severity: int, modality: str, size: tuple[int, int]) -> dict[str, Any]:
        """Every parameter of one severity, as results.json records it."""
        source = modality if modality in self.ladders else "default"
        params: dict[str, Any] = {"severity": severity, "ladder": source}
        if severity > 0:
            params[self.parameter] = self.ladders[source][severity - 1]
        if self.spatial:
            params["scale"] = min(size) / REFERENCE_SIZE
        return params

    def corrupt(self, x: torch.Tensor, params: dict[str, Any], seeds: Sequence[int]) -> torch.Tensor:
        """``apply`` held to the contract: the identity at severity 0, output in [0, 1]."""
        if params["severity"] == 0:
            return x.clone()
        return self.apply(x, params, seeds).to(x.dtype).clamp(0.0, 1.0)

    @abstractmethod
    def apply(self, x: torch.Tensor, params: dict[str, Any], seeds: Sequence[int]) -> torch.Tensor: ...
