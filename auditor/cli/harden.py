"""``medaudit harden``: adversarial training (PGD-AT, TRADES) of a model medaudit can load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from auditor import sandbox
from auditor.cli.common import RichProgress, handle_errors
from auditor.config import parse_floats, parse_list, parse_size
from auditor.errors import UsageError
from auditor.models import preprocess_channel_order, preprocess_normalization
from auditor.registry import get_registry

HARDEN_HELP = """Harden a model (PGD-AT, TRADES, block switching, feature denoising) and save it as TorchScript.

The model keeps its contract (images in [0,1] in, logits out). A log with the settings and
the held-out clean and PGD accuracy (Dice for segmentation) before training and after each
epoch is written next to it (hardened.pt -> hardened.harden.json); `medaudit run` on the
hardened model cites it in the report. Audit the result with `medaudit run` and compare
with `medaudit compare`.

Examples:

  medaudit harden isic.pt --data isic2017/labels.csv --split train --method pgd-at --eps 4 --epochs 5 --out isic_at.pt

  medaudit harden isic.pt --data isic2017/labels.csv --split train --method trades --trades-beta 6 --out isic_trades.pt

  medaudit harden cnn.pt --data pneumoniamnist.npz --split train --method block-switching --copies 4 --out bs.pt

  medaudit harden cnn.pth --arch mynets:cnn --data pneumoniamnist.npz --split train --method feature-denoising --denoise-blocks 2 --out fd.pt

  medaudit harden unet.pt --data ph2_split.csv --split train --task segmentation --inner-loss dice --input-size 96x128 --out unet_at.pt
"""


@handle_errors
def harden(
    model: Annotated[Path, typer.Argument(help="Model to start from: TorchScript, .pt2, .onnx, a state dict (with --arch) or a pickled module (with --trust-model).")],
    data: Annotated[Path, typer.Option("--data", "-d", help="Training data (any layout `medaudit run` reads).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the hardened TorchScript model.")],
    method: Annotated[str, typer.Option(help="pgd-at (Madry et al. 2018), trades (Zhang et al. 2019), block-switching (autoencoder front + K randomly switched lower blocks, the survey's Figure 11; Wang et al. 2019; audit it with --defense model-eot) or feature-denoising (non-local denoising blocks + PGD-AT, Xie et al. 2019; needs an eager model: --arch or --trust-model); the last three classification only.")] = "pgd-at",
    copies: Annotated[int, typer.Option(help="block-switching: parallel copies of the lower block.")] = 4,
    ae_epochs: Annotated[Optional[int], typer.Option(help="block-switching: autoencoder epochs (default: --epochs).")] = None,
    denoise_blocks: Annotated[int, typer.Option(help="feature-denoising: denoising blocks, after convolutions spread over the depth.")] = 2,
    eps: Annotated[float, typer.Option(help="Training budget, L-inf, in /255 units.")] = 4.0,
    epochs: Annotated[int, typer.Option(help="Passes over the training data.")] = 5,
    steps: Annotated[int, typer.Option(help="PGD steps per training batch.")] = 7,
    step_size: Annotated[Optional[float], typer.Option(help="PGD step in /255 units (default 2.5 * eps / steps).")] = None,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    batch_size: Annotated[int, typer.Option(help="Training batch size.")] = 32,
    trades_beta: Annotated[float, typer.Option(help="TRADES: weight of the robustness (KL) term.")] = 6.0,
    task: Annotated[Optional[str], typer.Option(help="classification or segmentation (default: detected from the model's output).")] = None,
    inner_loss: Annotated[str, typer.Option(help="Segmentation PGD-AT: the attack's loss, bce or dice.")] = "bce",
    split: Annotated[Optional[str], typer.Option(help="Split to train on (CSV split column, MedMNIST train/val/test).")] = None,
    val_split: Annotated[Optional[str], typer.Option(help="Held-out split for the per-epoch log (default: a seeded --val-fraction of the training data).")] = None,
    val_fraction: Annotated[float, typer.Option(help="Fraction of the training data held out when --val-split is not given.")] = 0.1,
    eval_steps: Annotated[int, typer.Option(help="PGD steps (of eps/4) for the held-out evaluation.")] = 10,
    no_class_weights: Annotated[bool, typer.Option("--no-class-weights", help="Do not balance the classes in the training loss.")] = False,
    modality: Annotated[str, typer.Option(help="Modality preset: default channels and input size.")] = "dermoscopy",
    input_size: Annotated[Optional[str], typer.Option(help="Resize images to N or HxW (default: the modality's).")] = None,
    channels: Annotated[Optional[int], typer.Option(help="Input channels (default: from the model).")] = None,
    classes: Annotated[Optional[str], typer.Option(help="Comma-separated class names in label order.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Train on a seeded, stratified sample of N images.")] = None,
    data_format: Annotated[Optional[str], typer.Option(help="Data layout, overriding detection.")] = None,
    follow_symlinks: Annotated[bool, typer.Option("--follow-symlinks", help="Read data files whose real path (symbolic links, '..') lies outside the data folder; refused by default.")] = False,
    model_format: Annotated[Optional[str], typer.Option("--format", help="Model format, overriding detection.")] = None,
    arch: Annotated[Optional[str], typer.Option(help="module:callable building the architecture for a state dict. This IMPORTS AND RUNS that module's code.")] = None,
    trust_model: Annotated[bool, typer.Option("--trust-model", help="Allow a whole pickled nn.Module. This EXECUTES CODE from the model file.")] = False,
    mean: Annotated[Optional[str], typer.Option(help="Per-channel mean the model expects (the saved model expects it too).")] = None,
    std: Annotated[Optional[str], typer.Option(help="Per-channel std the model expects (with --mean).")] = None,
    preprocess: Annotated[Optional[str], typer.Option(help="The model's input convention instead of --mean/--std, as in `medaudit run`: tf, torch, raw255, caffe (the saved model expects it too).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for the held-out split, batch order and attacks.")] = 0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N.")] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the training log as JSON on stdout.")] = False,
    no_sandbox: Annotated[bool, typer.Option("--no-sandbox", help="Run the model in this process instead of a child that cannot write outside --out's folder or reach the network (Linux Landlock); also MEDAUDIT_SANDBOX=off.")] = False,
) -> None:
    from auditor.hardening import HardenConfig, harden as run_harden, log_path_for

    registry = get_registry()
    if not model.exists():
        raise UsageError(f"model file {model} does not exist")
    if not data.exists():
        raise UsageError(f"data path {data} does not exist")
    if (mean is None) != (std is None):
        raise UsageError("--mean and --std go together")
    if preprocess is not None and mean is not None:
        raise UsageError("--preprocess sets the mean and std: give it or --mean/--std, not both")
    mean_std = (preprocess_normalization(preprocess) if preprocess
                else (parse_floats(mean, "--mean"), parse_floats(std, "--std")))
    if limit is not None and limit < 1:
        raise UsageError("--limit must be at least 1")
    config = HardenConfig(
        model=model, data=data, out=out, method=method, task=task, eps_255=eps, epochs=epochs, steps=steps,
        step_size_255=step_size, lr=lr, batch_size=batch_size, trades_beta=trades_beta, inner_loss=inner_loss,
        class_weights=not no_class_weights, split=split, val_split=val_split, val_fraction=val_fraction,
        eval_steps=eval_steps, modality=modality, input_size=parse_size(input_size), channels=channels,
        classes=parse_list(classes, "--classes"), data_format=data_format, model_format=model_format, arch=arch,
        trust_model=trust_model, mean=mean_std[0], std=mean_std[1], limit=limit,
        channel_order=preprocess_channel_order(preprocess),
        seed=seed, device=device, follow_symlinks=follow_symlinks,
        extra={"copies": copies, "ae_epochs": ae_epochs or epochs, "denoise_blocks": denoise_blocks},
    )
    if copies < 2 or denoise_blocks < 1 or (ae_epochs is not None and ae_epochs < 1):
        raise UsageError("--copies must be at least 2, --denoise-blocks and --ae-epochs at least 1")
    config.check()
    code = sandbox.run_in_child([out.parent], no_sandbox=no_sandbox)  # the model is loaded from here on
    if code is not None:  # the sandboxed child ran this same command
        raise typer.Exit(code)
    progress = RichProgress(quiet=quiet or as_json)
    log = run_harden(config, registry, progress=progress)
    if as_json:
        typer.echo(json.dumps(log, indent=1))
    elif not quiet:
        progress.note(log["evidence"]["message"])
        progress.note(f"wrote {out} and {log_path_for(out)}")
