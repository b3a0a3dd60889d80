"""Fixtures for the reliability tests: tiny TorchScript models (good and broken)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.corpus import make_models


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_models(tmp_path_factory.mktemp("tiny-models"))
