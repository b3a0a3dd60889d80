"""Defences that change the network, trained by ``medaudit harden``.

* ``block-switching``: the survey's Figure 11 defence, an autoencoder front followed by
  block switching (Wang et al., "Protecting Neural Networks with Hierarchical Random
  Switching: Towards Better Robustness-Accuracy Trade-off for Stochastic Defenses",
  IJCAI 2019; its first version "Defending against adversarial attack towards deep neural
  networks via collaborative multi-task training" called it block switching). The
  network is ``upper(lower_k(autoencoder(x)))``: ``autoencoder`` a small convolutional
  denoising autoencoder trained with the survey's settings (MSE, Adam, learning rate
  0.002, weight decay 1e-4) to map noisy images to clean ones; ``lower_k`` one of ``K``
  parallel copies of the lower block, each image in a call drawing its own ``k``
  uniformly (one draw per call when a call holds one image; per image so that a batch
  of EoT copies sees every copy); ``upper`` the given model. As in the paper the copies
  are trained independently (here each with a different seed against the given model,
  frozen), then the upper part is fine-tuned with the copies switching at random and the
  copies frozen. The given model keeps its role and its layers: the lower block is
  a new residual convolution in image space, since a model file does not say where its
  own lower layers end (TorchScript exposes no split point).
* ``feature-denoising`` (the survey's feature-enhancement family): Xie et al., "Feature
  Denoising for Improving Adversarial Robustness", CVPR 2019. A denoising block (the
  dot-product non-local mean of the feature map, a 1x1 convolution, a residual
  connection) after some of the model's convolutions, then PGD adversarial training as
  in the paper. The 1x1 convolution starts at zero, so training starts from the given
  model's function. Needs an eager model with ``nn.Conv2d`` layers (a state dict with
  ``--arch``, or a pickled module), since TorchScript modules cannot take new layers.
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from auditor.errors import UsageError
from auditor.progress import Progress

AE_SETTINGS = {"lr": 0.002, "weight_decay": 1e-4, "loss": "mse", "noise_sigma": 0.1}  # the survey's table


class DenoisingAutoencoder(nn.Module):
    """Convolutional autoencoder, images in [0,1] -> images in [0,1] of the same size."""

    def __init__(self, channels: int, width: int = 16) -> None:
        super().__init__()
        self.encode = nn.Sequential(nn.Conv2d(channels, width, 3, 1, 1), nn.ReLU(),
                                    nn.Conv2d(width, width, 3, 2, 1), nn.ReLU())
        self.decode = nn.Sequential(nn.Conv2d(width, width, 3, 1, 1), nn.ReLU(), nn.Conv2d(width, channels, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = F.interpolate(self.encode(x), size=[x.shape[2], x.shape[3]], mode="nearest")
        return torch.sigmoid(self.decode(z))


class LowerBlock(nn.Module):
    """One copy of the lower block: a residual pair of convolutions in image space."""

    def __init__(self, channels: int, width: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, width, 3, 1, 1), nn.ReLU(), nn.Conv2d(width, channels, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class BlockSwitchingNet(nn.Module):
    """``upper(lower_k(autoencoder(x)))`` with ``k`` drawn per image from the global torch
    generator at every call (``fixed`` >= 0 pins one copy, for training a copy)."""

    def __init__(self, autoencoder: nn.Module, lower: list[nn.Module], upper: nn.Module) -> None:
        super().__init__()
        self.autoencoder = autoencoder
        self.lower = nn.ModuleList(lower)
        self.upper = upper
        self.copies = len(lower)
        self.fixed = -1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.autoencoder(x)
        if self.fixed >= 0:
            choice = torch.full([x.shape[0]], self.fixed, dtype=torch.long, device=x.device)
        else:
            choice = torch.randint(0, self.copies, [x.shape[0]], device=x.device)
        out = torch.zeros_like(z)
        for k, block in enumerate(self.lower):
            out = out + (choice == k).to(z.dtype).view(-1, 1, 1, 1) * block(z)
        return self.upper(out)


class NonLocalDenoise(nn.Module):
    """Xie et al.'s denoising block with the dot-product weighting: ``x + conv1x1(y)``,
    ``y_i = 1/N sum_j (x_i . x_j) x_j``, computed as ``X (X^T X) / N`` (linear in the
    number of positions). The 1x1 convolution starts at zero: the block starts as the identity."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.mix = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.mix.weight)
        nn.init.zeros_(self.mix.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        flat = x.reshape(n, c, h * w)
        gram = torch.bmm(flat, flat.transpose(1, 2)) / (h * w)  # (N, C, C)
        denoised = torch.bmm(gram.transpose(1, 2), flat).reshape(n, c, h, w)
        return x + self.mix(denoised)


def insert_denoising_blocks(module: nn.Module, blocks: int) -> list[str]:
    """Put a :class:`NonLocalDenoise` after ``blocks`` of the model's convolutions, evenly
    spread over its depth, the first (pixel-level) one excluded; returns their names."""
    convs = [(name, m) for name, m in module.named_modules() if isinstance(m, nn.Conv2d)]
    if isinstance(module, torch.jit.ScriptModule) or not convs:
        raise UsageError("--method feature-denoising needs an eager model with Conv2d layers: give a state dict "
                         "with --arch (or a pickled module with --trust-model), not TorchScript or ONNX")
    candidates = convs[1:] or convs
    count = max(1, min(blocks, len(candidates)))
    picks = sorted({round((i + 1) * len(candidates) / count) - 1 for i in range(count)})
    names = []
    for index in picks:
        name, conv = candidates[index]
        parent_name, _, attr = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, attr, nn.Sequential(conv, NonLocalDenoise(conv.out_channels)))
        names.append(name)
    return names


def _trainable(module: nn.Module, flag: bool) -> None:
    for param in module.parameters():  # ScriptModules take no requires_grad_()
        param.requires_grad_(flag)


def _epochs(params: list[nn.Parameter], loss_fn: Any, x: torch.Tensor, y: torch.Tensor, epochs: int,
            batch_size: int, lr: float, weight_decay: float, seed: int, label: str, progress: Progress) -> float:
    """Adam over ``params`` minimising ``loss_fn(xb, yb)``; returns the last epoch's mean loss."""
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    order_gen = torch.Generator().manual_seed(seed)
    mean = float("nan")
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(x), generator=order_gen).to(x.device)
        total = 0.0
        with progress.task(f"{label} epoch {epoch}/{epochs}", len(x)) as bar:
            for i in range(0, len(x), batch_size):
                idx = order[i : i + batch_size]
                optimizer.zero_grad()
                loss = loss_fn(x[idx], y[idx])
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(idx)
                bar.advance(len(idx))
        mean = total / max(len(x), 1)
    return mean


def train_block_switching(module: nn.Module, wrap: Any, config: Any, train: tuple[torch.Tensor, torch.Tensor],
                          weights: torch.Tensor | None, progress: Progress) -> tuple[BlockSwitchingNet, dict[str, Any]]:
    """The three phases (module docstring); ``wrap`` turns a network into the training view
    (two logits for a single-logit model). Returns the network and its training facts."""
    x, y = train
    channels = x.shape[1]
    copies = int(config.extra.get("copies", 4))
    ae_epochs = int(config.extra.get("ae_epochs", config.epochs))
    if copies < 2:
        raise UsageError("--copies must be at least 2 (block switching picks one of several copies)")
    t0 = time.perf_counter()
    torch.manual_seed(config.seed)
    autoencoder = DenoisingAutoencoder(channels).to(x.device)
    noise_gen = torch.Generator(device=x.device).manual_seed(config.seed)

    def reconstruction(xb: torch.Tensor, _yb: torch.Tensor) -> torch.Tensor:
        noisy = (xb + AE_SETTINGS["noise_sigma"] * torch.randn(xb.shape, generator=noise_gen, device=xb.device)).clamp(0, 1)
        return F.mse_loss(autoencoder(noisy), xb)

    facts: dict[str, Any] = {"copies": copies, "autoencoder": {**AE_SETTINGS, "epochs": ae_epochs}}
    facts["autoencoder"]["final_mse"] = _epochs(list(autoencoder.parameters()), reconstruction, x, y, ae_epochs,
                                                config.batch_size, AE_SETTINGS["lr"], AE_SETTINGS["weight_decay"],
                                                config.seed, "autoencoder", progress)
    autoencoder.requires_grad_(False).eval()
    lower = []
    for k in range(copies):
        torch.manual_seed(config.seed + 1 + k)  # a different start for every copy
        lower.append(LowerBlock(channels).to(x.device))
    net = BlockSwitchingNet(autoencoder, lower, module)
    view = wrap(net)
    _trainable(module, False)
    module.eval()  # copies are trained against the given model as it is (BatchNorm statistics frozen)
    facts["lower_loss"] = []
    for k, block in enumerate(lower):
        net.fixed = k
        facts["lower_loss"].append(_epochs(list(block.parameters()), lambda xb, yb: F.cross_entropy(view(xb), yb, weight=weights),
                                           x, y, config.epochs, config.batch_size, config.lr, config.weight_decay,
                                           config.seed + 1 + k, f"lower block {k + 1}/{copies}", progress))
        block.requires_grad_(False)
    net.fixed = -1
    _trainable(module, True)
    module.train()
    facts["upper_loss"] = _epochs([p for p in module.parameters() if p.requires_grad],
                                  lambda xb, yb: F.cross_entropy(view(xb), yb, weight=weights), x, y, config.epochs,
                                  config.batch_size, config.lr, config.weight_decay, config.seed,
                                  "upper block (switching)", progress)
    net.eval()
    _trainable(net, False)
    facts["train_s"] = time.perf_counter() - t0
    return net, facts
