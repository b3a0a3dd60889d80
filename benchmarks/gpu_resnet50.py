"""The GPU workload of issue 19's projection: ResNet-50 at 224 px on ISIC 2017.

Run on a machine with a CUDA GPU and torchvision (this script only; medaudit itself does not
need torchvision), from the repository root:

    python benchmarks/gpu_resnet50.py /tmp/gpu                  # per-pass cost, then fine-tune
    PYTHONPATH=benchmarks medaudit run /tmp/gpu/r50.pt --arch gpu_resnet50:resnet50 \\
        --data ../shared/data/isic2017/labels.csv --split val --input-size 224 \\
        --modality dermoscopy --positive-class 1 --budget standard --device cuda --batch-size 128 \\
        --out /tmp/gpu/audit
    python benchmarks/project_gpu.py /tmp/gpu/audit/results.json --images 1000 --gpus 1,4,16

It times one forward and one forward+backward pass per image at batch 32, 64 and 128 in the
arithmetic an audit uses (``auditor.numerics.exact_gpu_arithmetic``: float32, no TF32), then
fine-tunes the network for ``--epochs`` on ISIC 2017 train (class-weighted, horizontal flips)
through medaudit's own CSV data source and saves the state dict as ``OUT/r50.pt``, with the
timings in ``OUT/facts.json``. The fine-tune only makes the audited model a real classifier;
it is not a good one (about 57% clean accuracy on val after 8 epochs).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from auditor.interfaces import DataOptions  # noqa: E402
from auditor.numerics import exact_gpu_arithmetic  # noqa: E402
from plugins.data.csv_manifest import CsvSource  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "isic2017"


def resnet50(in_channels: int = 3, num_classes: int = 2) -> torch.nn.Module:
    """torchvision's ResNet-50 (``--arch gpu_resnet50:resnet50``)."""
    import torchvision

    if in_channels != 3:
        raise ValueError("this ResNet-50 takes RGB images")
    return torchvision.models.resnet50(num_classes=num_classes)


def per_pass(model: torch.nn.Module, device: torch.device, size: int, batches: list[int], reps: int) -> dict:
    facts = {}
    model.eval()
    for bs in batches:
        x = torch.rand(bs, 3, size, size, device=device)
        y = torch.randint(0, 2, (bs,), device=device)
        for mode in ("forward", "forward+backward"):
            grad = mode != "forward"

            def once() -> None:
                xi = x.clone().requires_grad_(grad)
                with torch.set_grad_enabled(grad):
                    loss = F.cross_entropy(model(xi), y)
                if grad:
                    torch.autograd.grad(loss, xi)

            for _ in range(3):  # warm-up: kernel selection, allocator
                once()
            torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            for _ in range(reps):
                once()
            torch.cuda.synchronize(device)
            ms = (time.perf_counter() - t0) / reps / bs * 1e3
            facts[f"{mode}_ms_per_image_bs{bs}"] = ms
            print(f"{mode:17s} batch {bs:3d}: {ms:.3f} ms/image", flush=True)
    return facts


def fine_tune(device: torch.device, data: Path, size: int, epochs: int) -> tuple[torch.nn.Module, dict]:
    t0 = time.perf_counter()
    dataset = CsvSource().open(data / "labels.csv", DataOptions(channels=3, input_size=(size, size), split="train",
                                                                seed=0))
    batch = dataset.load(range(len(dataset)))
    xs, ys = batch.images, batch.targets
    facts = {"train_images": len(ys), "train_load_s": time.perf_counter() - t0}
    torch.manual_seed(0)
    model = resnet50().to(device).train()
    counts = torch.bincount(ys, minlength=2).float()
    weights = (counts.sum() / (2 * counts)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        for idx in torch.randperm(len(ys)).split(64):
            xb, yb = xs[idx].to(device), ys[idx].to(device)
            flip = torch.rand(len(xb), device=device) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            loss = F.cross_entropy(model(xb), yb, weight=weights)
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"epoch {epoch}: loss {loss.item():.3f}", flush=True)
    torch.cuda.synchronize(device)
    facts.update(train_s=time.perf_counter() - t0, epochs=epochs)
    return model.eval(), facts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA GPU here: this is the GPU workload", file=sys.stderr)
        return 2
    device = torch.device("cuda")
    exact_gpu_arithmetic(device)
    args.out.mkdir(parents=True, exist_ok=True)
    facts = {"device": torch.cuda.get_device_name(device), "torch": torch.__version__,
             **per_pass(resnet50().to(device), device, args.size, [32, 64, 128], reps=20)}
    model, trained = fine_tune(device, args.data, args.size, args.epochs)
    facts.update(trained)
    torch.save(model.state_dict(), args.out / "r50.pt")
    (args.out / "facts.json").write_text(json.dumps(facts, indent=1))
    print(json.dumps(facts), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
