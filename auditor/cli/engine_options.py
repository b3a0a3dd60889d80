"""``--engine`` and its options on ``medaudit run``: checked here, before anything loads."""

from __future__ import annotations

from typing import Any

from auditor.errors import UsageError

ENGINES = ("local", "ray")


def engine_settings(engine: str, ray_address: str | None, workers: int | None, gpus_per_worker: float,
                    cpus_per_worker: int, shards: int | None) -> dict[str, Any]:
    """The configuration's ``engine`` block ({} for local); usage errors exit 2."""
    name = engine.strip().lower()
    if name not in ENGINES:
        raise UsageError(f"--engine: '{engine}' is not local or ray")
    ray_options = ray_address is not None or workers is not None or gpus_per_worker or cpus_per_worker != 1 or shards
    if name == "local":
        if ray_options:
            raise UsageError("--ray-address, --workers, --gpus-per-worker, --cpus-per-worker and --shards need --engine ray")
        return {}
    if workers is not None and workers < 1:
        raise UsageError("--workers must be at least 1")
    if shards is not None and shards < 1:
        raise UsageError("--shards must be at least 1")
    if cpus_per_worker < 1 or gpus_per_worker < 0:
        raise UsageError("--cpus-per-worker must be at least 1 and --gpus-per-worker at least 0")
    if ray_address is not None and not (ray_address == "auto" or ray_address.startswith("ray://")
                                        or ":" in ray_address):
        raise UsageError(f"--ray-address: '{ray_address}' is not auto, ray://HOST:PORT or HOST:PORT")
    from auditor.engine.ray_engine import require_ray

    require_ray()  # a missing extra exits 2 now, not after the model is loaded
    return {"name": "ray", "address": ray_address, "workers": workers, "gpus_per_worker": gpus_per_worker,
            "cpus_per_worker": cpus_per_worker, "shards": shards}
