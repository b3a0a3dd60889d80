"""Shared numerics of the threat model, for the core and for every attack plugin.

One place for what must mean the same everywhere: the L-inf projection, the adversarial
losses (classification and segmentation), the PGD step-size rule, the budget names, seeded
generators and label maps from segmentation logits. Attack *loops* live in attack plugins;
nothing here iterates.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

BUDGETS = ("quick", "standard", "thorough")
IGNORE_INDEX = -1  # segmentation pixels outside the region of interest
SEG_LOSSES = ("bce", "dice", "background")
DICE_SMOOTH = 1.0
DEFAULT_MISSED_FRACTION = 0.5  # a lesion is missed below this fraction of its true area


def check_budget(budget: str) -> None:
    if budget not in BUDGETS:
        raise ValueError(f"unknown budget {budget!r}")


def exact_gpu_arithmetic(device: torch.device) -> dict[str, bool] | None:
    """Full float32 and deterministic kernels on a CUDA device; what was set, for results.json.

    PyTorch lets cuDNN convolutions run in TF32 by default (10-bit mantissa), and cuDNN may
    pick a different, non-deterministic algorithm for each batch shape. On an H200 that moved
    a PGD confidence in its fifth digit between batch sizes 7 and 32 (tests/distributed:
    identity), so an audit's numbers depended on --batch-size and on how many images a Ray
    shard held. An audit is a measurement: it pays for exact float32 instead. Nothing is
    changed on the CPU, whose kernels are already batch-invariant here."""
    if device.type != "cuda":
        return None
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    return gpu_arithmetic(device)


def gpu_arithmetic(device: torch.device) -> dict[str, bool] | None:
    """The GPU arithmetic in force now (None on the CPU), as results.json records it."""
    if device.type != "cuda":
        return None
    return {"tf32": bool(torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32),
            "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark)}


@contextmanager
def caller_gpu_arithmetic() -> Iterator[None]:
    """Restore torch's GPU arithmetic flags on the way out: an audit run from Python (not the
    CLI) leaves its caller's TF32 and cuDNN settings as it found them."""
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    try:
        yield
    finally:
        (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
         torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic) = flags


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Project ``x_adv`` onto the L-inf ball of radius ``eps`` around ``x`` and into [0,1].
    The only projection in medaudit: attacks, the engine and the checks all call it."""
    return torch.clamp(torch.min(torch.max(x_adv, x - eps), x + eps), 0.0, 1.0)


def generator(seed: int, device: torch.device) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


_MASK32 = 0xFFFFFFFF


def _mix32(h: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (the "lowbias32" constants) on int64 tensors; products wrap
    mod 2**64 and only their low 32 bits are kept, so the result is exact on every device."""
    h = h ^ (h >> 16)
    h = (h * 0x7FEB352D) & _MASK32
    h = h ^ (h >> 15)
    h = (h * 0x846CA68B) & _MASK32
    return h ^ (h >> 16)


class SampleStreams:
    """One random stream per sample, so that what an attack draws for a sample depends on
    that sample's seed only, never on which other samples share its batch (or on the batch
    size, an out-of-memory split, or a Ray shard). Counter-based: draw k of a sample's
    stream is a hash of (its seed, k), computed on the device in one vectorised call, with
    no generator objects and no host round trips. ``subset(idx)`` views some of the
    samples; draws through it advance the same streams."""

    def __init__(self, seeds: torch.Tensor, drawn: torch.Tensor | None = None,
                 rows: torch.Tensor | None = None) -> None:
        self.seeds = seeds
        self.drawn = torch.zeros_like(seeds) if drawn is None else drawn
        self.rows = torch.arange(len(seeds), device=seeds.device) if rows is None else rows

    @classmethod
    def of(cls, seed: "int | SampleStreams", n: int, device: torch.device,
           sample_seeds: list[int] | None = None) -> "SampleStreams":
        """Streams for ``n`` samples: ``sample_seeds`` (one per sample, as the step routine
        sets them) when given, else derived from ``seed`` and the position in the batch."""
        if isinstance(seed, SampleStreams):
            return seed
        if sample_seeds is not None and len(sample_seeds) == n:
            seeds = torch.as_tensor([int(s) & _MASK32 for s in sample_seeds], dtype=torch.int64, device=device)
        else:
            seeds = _mix32(torch.arange(n, dtype=torch.int64, device=device) ^ (int(seed) & _MASK32))
        return cls(seeds)

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, idx: torch.Tensor) -> "SampleStreams":
        return SampleStreams(self.seeds, self.drawn, self.rows[idx])

    def _bits(self, per_sample: int) -> torch.Tensor:
        """(samples, per_sample) uniform 32-bit integers; advances each stream."""
        rows = self.rows
        position = self.drawn[rows][:, None] + torch.arange(per_sample, device=rows.device)
        self.drawn[rows] += per_sample
        h = _mix32(_mix32(position & _MASK32) ^ self.seeds[rows][:, None])
        return _mix32(h ^ (position >> 32))

    def rand(self, shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
        """Uniform [0, 1) floats of ``(samples, *shape)``."""
        count = int(torch.Size(shape).numel())
        return ((self._bits(count) >> 8).float() * 2.0 ** -24).reshape(len(self), *shape)

    def randint(self, low: int, high: int, shape: tuple[int, ...]) -> torch.Tensor:
        """Integers in [low, high) of ``(samples, *shape)``."""
        count = int(torch.Size(shape).numel())
        u = self._bits(count).double() * 2.0 ** -32
        return (low + (u * (high - low)).floor().long()).clamp_max(high - 1).reshape(len(self), *shape)


def sample_streams(params: dict, n: int, device: torch.device, seed: "int | SampleStreams | None" = None
                   ) -> SampleStreams:
    """The streams of an attack's chunk: ``params["sample_seeds"]`` (set per sample by the
    step routine) when present, else derived from ``seed`` (default ``params["seed"]``)."""
    return SampleStreams.of(params.get("seed", 0) if seed is None else seed, n, device,
                            params.get("sample_seeds"))


def step_size(params: dict, eps: float) -> float:
    """A PGD step: the larger of ``step_size_eps_fraction`` x eps and ``step_size_255`` / 255
    (whichever of the two the budget sets)."""
    sizes = []
    if params.get("step_size_eps_fraction"):
        sizes.append(params["step_size_eps_fraction"] * eps)
    if params.get("step_size_255"):
        sizes.append(params["step_size_255"] / 255.0)
    return max(sizes)


# ------------------------------------------------------------------ classification
def margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Carlini-Wagner margin, per sample: max_{j != y} z_j - z_y (positive = misclassified)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.clone()
    other.scatter_(1, y[:, None], float("-inf"))
    return other.max(dim=1).values - true


def ce_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction="none")


def dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Difference of logits ratio (Croce & Hein 2020), per sample; needs >= 3 classes:
    -(z_y - max_{j != y} z_j) / (z_(1) - z_(3)), z_(i) the i-th largest logit."""
    ordered = logits.sort(dim=1, descending=True).values
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.clone()
    other.scatter_(1, y[:, None], float("-inf"))
    return -(true - other.max(dim=1).values) / (ordered[:, 0] - ordered[:, 2] + 1e-12)


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "ce": ce_loss, "cw": margin_loss, "dlr": dlr_loss,
}


def loss_and_gradient(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Input gradient, logits and per-sample loss from one forward and one backward pass."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    values = LOSSES[loss](logits, y)
    (grad,) = torch.autograd.grad(values.sum(), x)
    return grad, logits.detach(), values.detach()


def input_gradient(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of the summed per-sample loss w.r.t. the input, and the logits."""
    grad, logits, _ = loss_and_gradient(model, x, y, loss)
    return grad, logits


# -------------------------------------------------------------------- segmentation
def logits_to_labels(logits: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) logits -> foreground where logit >= 0 (sigmoid >= 0.5, ties to foreground,
    as most reference code thresholds with ``>=``); (N, K, H, W) -> argmax over classes."""
    if logits.dim() != 4:
        raise ValueError(f"segmentation logits must be (N, K, H, W), got {tuple(logits.shape)}")
    if logits.shape[1] == 1:
        return (logits[:, 0] >= 0).long()
    return logits.argmax(dim=1)


def _masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    valid = valid.to(values.dtype)
    return (values * valid).flatten(1).sum(1) / valid.flatten(1).sum(1).clamp(min=1)


def seg_objective(logits: torch.Tensor, target: torch.Tensor, loss: str) -> torch.Tensor:
    """Per-image objective (N,) to maximise; ``target`` is (N, H, W) with IGNORE_INDEX outside
    the ROI. ``bce``: (binary) cross-entropy against the true mask; ``dice``: 1 - soft Dice
    (mean over foreground classes, smoothing 1 pixel); ``background``: minus the
    cross-entropy towards an all-background mask (the lesion-removal goal). float64."""
    if loss not in SEG_LOSSES:
        raise ValueError(f"unknown segmentation loss {loss!r} (known: {', '.join(SEG_LOSSES)})")
    valid = target != IGNORE_INDEX
    labels = target.clamp(min=0)
    z = logits.double()
    if z.shape[1] == 1:
        z = z[:, 0]
        truth = (labels > 0).double()
        if loss == "bce":
            return _masked_mean(F.binary_cross_entropy_with_logits(z, truth, reduction="none"), valid)
        if loss == "background":
            return -_masked_mean(F.softplus(z), valid)  # BCE towards 0 is softplus(z)
        p = torch.sigmoid(z) * valid
        truth = truth * valid
        inter = (p * truth).flatten(1).sum(1)
        dice = (2 * inter + DICE_SMOOTH) / (p.flatten(1).sum(1) + truth.flatten(1).sum(1) + DICE_SMOOTH)
        return 1 - dice
    if loss == "bce":
        return _masked_mean(F.cross_entropy(z, labels, reduction="none"), valid)
    if loss == "background":
        return -_masked_mean(F.cross_entropy(z, torch.zeros_like(labels), reduction="none"), valid)
    k = z.shape[1]
    p = torch.softmax(z, dim=1) * valid[:, None]
    truth = F.one_hot(labels, k).permute(0, 3, 1, 2).double() * valid[:, None]
    inter = (p * truth).flatten(2).sum(2)[:, 1:]
    sums = (p.flatten(2).sum(2) + truth.flatten(2).sum(2))[:, 1:]
    dice = (2 * inter + DICE_SMOOTH) / (sums + DICE_SMOOTH)
    return 1 - dice.mean(1)


def objective_gradient(
    model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, loss: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Input gradient of the summed segmentation objective, the per-image objective and the logits."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    value = seg_objective(logits, target, loss)
    (grad,) = torch.autograd.grad(value.sum(), x)
    return grad, value.detach(), logits.detach()


def class_counts(
    pred: torch.Tensor, target: torch.Tensor, roi: torch.Tensor | None, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """True positives, false positives and false negatives per image and foreground class.

    ``pred`` and ``target`` are (N, H, W) integer maps; returns three (N, K-1) float64
    tensors for classes 1..K-1, counted inside ``roi`` when given."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    if roi is not None and roi.shape != target.shape:
        raise ValueError(f"roi {tuple(roi.shape)} and target {tuple(target.shape)} differ in shape")
    inside = roi.bool() if roi is not None else torch.ones_like(target, dtype=torch.bool)
    tps, fps, fns = [], [], []
    for c in range(1, max(int(num_classes), 2)):
        p = (pred == c) & inside
        t = (target == c) & inside
        tps.append((p & t).flatten(1).sum(1))
        fps.append((p & ~t).flatten(1).sum(1))
        fns.append((~p & t).flatten(1).sum(1))
    stack = lambda xs: torch.stack(xs, dim=1).double()  # noqa: E731
    return stack(tps), stack(fps), stack(fns)


def lesion_areas(
    pred: torch.Tensor, target: torch.Tensor, roi: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted and true foreground areas in pixels, (N,) float64 each, inside ``roi``."""
    inside = roi.bool() if roi is not None else torch.ones_like(target, dtype=torch.bool)
    predicted = ((pred > 0) & inside).flatten(1).sum(1).double()
    true = ((target > 0) & inside).flatten(1).sum(1).double()
    return predicted, true
