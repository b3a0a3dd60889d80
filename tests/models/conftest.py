from __future__ import annotations

from pathlib import Path

import pluggy
import pytest
import torch

import plugins.models
from auditor import hookspecs
from auditor.registry import Registered, Registry
from tests.models.tiny import TinyCNN, make_seeded

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "realdata: needs the real data in ../shared/data (skips when absent)")


@pytest.fixture(scope="session")
def registry() -> Registry:
    """Only the model loaders, registered through pluggy exactly as the core does, so these
    tests do not depend on the other plugin packages."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(plugins.models, name="plugins.models")
    registry = Registry(components={kind: {} for kind in hookspecs.REGISTRY_HOOKS})
    table = registry.components["model_loaders"]

    def register(loader: object) -> None:
        name = loader.name  # type: ignore[attr-defined]
        assert name not in table
        table[name] = Registered(name, "plugins.models", loader)

    pm.hook.medaudit_register_model_loaders(register=register)
    return registry


@pytest.fixture
def model() -> TinyCNN:
    return make_seeded()


@pytest.fixture
def x() -> torch.Tensor:
    return torch.rand((2, 3, 16, 16), generator=torch.Generator().manual_seed(1))


@pytest.fixture(autouse=True)
def _quiet_torchscript_deprecation():
    """torch 2.13 deprecates torch.jit.script/save; the tests still need TorchScript files."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\..* is deprecated", category=DeprecationWarning)
        yield
