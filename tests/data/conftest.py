"""Fixtures for the data-source tests: a registry holding only the built-in data plugin,
tiny synthetic images written to tmp_path, and the path to the shared real data."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pluggy
import pytest
from PIL import Image

from auditor import hookspecs
from auditor.registry import Registered, Registry

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "realdata: needs the real data sets in ../shared/data (skipped when absent)")


@pytest.fixture
def registry() -> Registry:
    """The data plugin registered through pluggy, exactly as load_registry does it."""
    import plugins.data

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(plugins.data, name="plugins.data")
    registry = Registry(components={"data_sources": {}})
    table = registry.components["data_sources"]

    def register(component: object) -> None:
        name = component.name  # type: ignore[attr-defined]
        assert name not in table
        table[name] = Registered(name, "plugins.data", component)

    pm.hook.medaudit_register_data_sources(register=register)
    return registry


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (clone ../shared/data beside the checkout)")
    return SHARED_DATA


def write_image(path: Path, array: np.ndarray) -> Path:
    """Save ``array`` with PIL (format from the suffix), creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


@pytest.fixture
def write_array() -> Callable[[Path, np.ndarray], Path]:
    """``write_array(path, array)``: save an exact array as an image file."""
    return write_image


@pytest.fixture
def make_image() -> Callable[..., Path]:
    """``make_image(path, value, size=(H, W), mode="L")``: a flat image of one grey value."""

    def make(path: Path, value: int = 128, size: tuple[int, int] = (8, 10), mode: str = "L") -> Path:
        shape = size if mode == "L" else (*size, 3)
        return write_image(path, np.full(shape, value, dtype=np.uint8))

    return make
