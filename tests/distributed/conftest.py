"""One local Ray instance (3 CPUs) for every test of the session that asks for it."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ray_address():
    """The instance's address, so a subprocess driver can join it."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
