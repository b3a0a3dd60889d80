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


def ray_unconfined(engine: dict[str, Any], no_sandbox: bool, trust_model: bool) -> str | None:
    """Why an ``--engine ray`` audit runs outside the sandbox (None for local). Ray's workers
    are processes Ray starts, with sockets to the cluster, beyond the sandboxed child's reach,
    so the model would run unconfined there: that takes an explicit flag. The loaders refuse
    pickles and unsafe TorchScript calls without ``--trust-model`` in the workers too."""
    if not engine:
        return None
    from auditor import sandbox

    if sandbox.confines(no_sandbox) and not trust_model:
        raise UsageError("--engine ray runs the model in Ray's worker processes, outside the sandbox: add --no-sandbox "
                         "to accept that (or --trust-model for a model whose authors you trust), or use --engine local")
    return "--engine ray: the model runs in Ray's worker processes, which the sandbox cannot confine"
