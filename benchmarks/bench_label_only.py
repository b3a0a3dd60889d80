"""Native HopSkipJump against ART's HopSkipJump on the same model and images.

Cross-check of medaudit's batched label-only HopSkipJump (``plugins/attacks/hopskipjump.py``):
both attack the clean-correct images of a small model at the same L-inf eps; ART's result
(a minimal-distance attack) is projected onto the eps ball, as the engine does. Prints each
one's robust accuracy, its queries per sample and its wall time (and the ratio), so the
native path can be seen to be at least as strong at a comparable budget.

    python benchmarks/bench_label_only.py                  # the demo's tiny SmallCNN, 12 images
    python benchmarks/bench_label_only.py --model pneu.pt --data pneumoniamnist.npz --split test --n 50

Times on a machine shared with other jobs are noisy; compare the ratio from one run.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from auditor.accounting import CountingModel, PassCounter
from auditor.art_adapter import art_classifier, from_numpy, to_numpy
from auditor.interfaces import AttackContext
from auditor.numerics import project
from auditor.registry import get_registry


class Float32(torch.nn.Module):
    """ART's binary search hands the model float64 arrays."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.float())


def context(model: torch.nn.Module, x: torch.Tensor, classes: int) -> AttackContext:
    counter = PassCounter()
    return AttackContext(model=CountingModel(Float32(model), counter).eval(), device=torch.device("cpu"),
                         num_classes=classes, input_shape=tuple(x.shape[1:]), task="classification", seed=0,
                         batch_size=32, counter=counter)


def load(args: argparse.Namespace) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    if args.model is None:
        from auditor.architectures import SmallCNN
        from auditor.demo import make_split, to_tensor
        from auditor.training import train_classifier

        torch.manual_seed(0)
        model = SmallCNN(3, 2, width=8)
        x, y = make_split(60, seed=0)
        train_classifier(model, to_tensor(x), torch.from_numpy(y), epochs=6, batch_size=16, lr=3e-3, seed=0)
        x, y = make_split(args.n // 2, seed=1)
        return model.eval(), to_tensor(x), torch.from_numpy(y).long()
    from auditor.datasets import open_dataset
    from auditor.interfaces import DataOptions

    model = torch.jit.load(args.model).eval()
    dataset = open_dataset(get_registry(), args.data, DataOptions(channels=args.channels, split=args.split,
                                                                  limit=args.n))
    batch = dataset.load(list(range(len(dataset))))
    return model, batch.images, batch.targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model"), parser.add_argument("--data"), parser.add_argument("--split")
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--n", type=int, default=12)
    parser.add_argument("--eps", default="8,16")
    parser.add_argument("--budget", default="quick")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, x, y = load(args)
    with torch.no_grad():
        logits = model(x)
    keep = logits.argmax(1) == y
    x, y, classes = x[keep], y[keep], logits.shape[1]
    native = get_registry().get("attacks", "hopskipjump")
    from art.attacks.evasion import HopSkipJump

    print(f"{len(x)} clean-correct images; native budget {args.budget}")
    for eps_255 in (float(e) for e in args.eps.split(",")):
        eps = eps_255 / 255
        ctx = context(model, x, classes)
        params = {**native.parameters(args.budget, ctx), "backend": "native", "seed": 0}
        t0 = time.perf_counter()
        result = native.run(ctx, x, y, eps, params)
        t_native = time.perf_counter() - t0
        acc_native = float((model(result.x_adv).argmax(1) == y).float().mean())
        ctx = context(model, x, classes)
        np.random.seed(0)
        t0 = time.perf_counter()
        art = HopSkipJump(art_classifier(ctx), targeted=False, norm=np.inf, max_iter=12, max_eval=300,
                          init_eval=60, init_size=20, verbose=False)
        x_art = project(from_numpy(art.generate(to_numpy(x)), x), x, eps)
        t_art = time.perf_counter() - t0
        acc_art = float((model(x_art).argmax(1) == y).float().mean())
        print(f"eps {eps_255:g}/255: robust accuracy native {acc_native:.3f} ({result.queries.mean():.0f} queries/"
              f"image, {t_native:.1f} s) | ART {acc_art:.3f} ({ctx.counter.forward_samples / len(x):.0f} queries/"
              f"image, {t_art:.1f} s) | time ratio ART/native {t_art / max(t_native, 1e-9):.1f}")


if __name__ == "__main__":
    main()
