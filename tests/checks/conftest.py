"""An honestly trained small CNN, three deliberately broken versions of it, and their audits.

Built once per session, seeded: a SmallCNN trained for a few seconds on the demo's
synthetic lesions (32x32), 40 test images written as class folders, and TorchScript files
for each model. ``audited(name)`` runs (and caches) a quick fgsm+pgd audit of one model.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from PIL import Image
from torch import nn

from auditor.architectures import SmallCNN
from auditor.demo import CLASSES, make_split, to_tensor
from auditor.training import flip_augment, train_classifier

EPS_255 = [2.0, 8.0]
CHECK_SAMPLES = 32


class Quantised(nn.Module):
    """Rounds its input to 8 grey levels: ``torch.round`` has zero gradient everywhere, so
    gradient attacks see nothing while the decision still moves (gradient masking)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(torch.round(x * 8) / 8)


class Noisy(nn.Module):
    """Adds fresh Gaussian noise to every input: a randomised "defence" that needs EoT."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x + 0.03 * torch.randn_like(x))


class Softmaxed(nn.Module):
    """Ends in softmax: probabilities, not logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x), dim=1)


class Constant(nn.Module):
    """The same logits for every image (the input enters with weight 0, so it still has a
    gradient graph): a classifier that classifies nothing, which no attack can break."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.tensor([[0.2, 1.5]], dtype=x.dtype, device=x.device)
        return logits.expand(x.shape[0], 2) + 0.0 * x.mean(dim=(1, 2, 3)).unsqueeze(1)


@contextmanager
def one_thread():
    """CPU test machines run several suites at once; intra-op threads only oversubscribe them."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


WRAPPERS: dict[str, Callable[[nn.Module], nn.Module]] = {
    "honest": lambda m: m, "quantised": Quantised, "noisy": Noisy, "softmax": Softmaxed, "constant": Constant,
}


@pytest.fixture(scope="session")
def check_workdir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("checks")
    train_x, train_y = make_split(150, seed=0)
    test_x, test_y = make_split(20, seed=1)
    data = work / "data"
    for label, name in enumerate(CLASSES):
        (data / name).mkdir(parents=True)
    for i, (img, label) in enumerate(zip(test_x, test_y)):
        Image.fromarray(img).save(data / CLASSES[label] / f"lesion_{i:03d}.png")
    torch.manual_seed(0)
    model = SmallCNN(3, 2, width=16)
    with one_thread():
        train_classifier(model, to_tensor(train_x), torch.from_numpy(train_y), epochs=8, batch_size=32, lr=2e-3,
                         seed=0, augment=flip_augment)
    models = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        for name, wrap in WRAPPERS.items():
            path = work / f"{name}.pt"
            torch.jit.script(wrap(model).eval()).save(str(path))
            models[name] = path
    return {"dir": work, "data": data, "models": models, "cache": {}}


def audit_config(workdir: dict[str, Any], name: str, out: Path, **overrides: Any):
    from auditor.config import AuditConfig

    kwargs = dict(model=workdir["models"][name], data=workdir["data"], out=out, input_size=(32, 32), channels=3,
                  modality="dermoscopy", budget="quick", device="cpu", formats=[], attacks=["fgsm", "pgd"],
                  eps_255=list(EPS_255), check_samples=CHECK_SAMPLES, allow_probabilities=(name == "softmax"),
                  backends={"pgd": "native"})
    kwargs.update(overrides)
    return AuditConfig(**kwargs)


@pytest.fixture(scope="session")
def audited(check_workdir: dict[str, Any]) -> Callable[[str], dict[str, Any]]:
    """``audited("honest")`` -> the results dict of a quick fgsm+pgd audit (cached)."""
    from auditor.audit import run_audit
    from auditor.registry import get_registry

    def run(name: str) -> dict[str, Any]:
        cache = check_workdir["cache"]
        if name not in cache:
            config = audit_config(check_workdir, name, check_workdir["dir"] / f"out-{name}")
            with warnings.catch_warnings(), one_thread():
                warnings.filterwarnings("ignore", category=DeprecationWarning)
                cache[name] = run_audit(config, get_registry())
        return cache[name]

    return run


def status_of(results: dict[str, Any]) -> dict[str, str]:
    return {item["key"]: item["status"] for item in results["checks"]["items"]}
