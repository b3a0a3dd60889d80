"""``medaudit run --engine ray``: the classification audit's attack steps sharded by
samples over Ray workers, with the same results.json numbers as a local run.

Division of work:

* The driver loads the model and data (as a local run does), runs the clean pass, then
  hands out shards of samples. Each shard is one call on a worker actor that runs the
  whole cascade (every attack x eps, in the schedule's order) on its samples.
* Workers open the data source from the configuration (its path and options; the sample
  ids follow from the seeded ``--limit``) and load the model from its path, once per
  actor, through the same loaders (and checks) as the driver; the data-set fingerprint
  and model hash are compared with the driver's, so a node that sees different files
  fails instead of mixing numbers. No image tensors or weights travel through the driver.
* The driver merges the shards (:mod:`auditor.engine.shards`) and then runs, itself,
  everything after the steps: validity checks, clinical targeted attacks, defense
  evidence, detector, corruptions, gates. They attack a subsample or need the whole
  data set's numbers, cost little beside the battery, and are chunk-independent, so they
  give the local numbers.

Faults: an actor whose process dies is restarted by Ray and its shard retried
(``max_restarts``, ``max_task_retries``); every finished shard is checkpointed into
``--out/shards/`` as it arrives, so ``--resume`` after a killed driver redoes only the
unfinished shards. Ray is imported only here, and only when this engine runs.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Any

import numpy as np
import torch

from auditor.config import AuditConfig, config_hash
from auditor.engine.classification import GALLERY_PER_CLASS, ClassificationAudit
from auditor.engine.prepare import Prepared, prepare
from auditor.engine.shards import (SHARD_DIR, SHARD_FORMAT, load_shards, merge_gallery, merge_step, save_shard,
                                   split_samples, step_key)
from auditor.engine.skeleton import attack_units
from auditor.errors import InputError, UsageError
from auditor.progress import Progress, ProgressTask
from auditor.registry import get_registry

SHARDS_PER_WORKER = 4  # finer than one per worker: balance, and less to redo after a crash
RETRIES = 3


def require_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError("--engine ray needs Ray: pip install 'medaudit[ray]'") from None
    return ray


# ------------------------------------------------------------------ worker side
class _SinkTask(ProgressTask):
    def __init__(self, sink: Any, description: str) -> None:
        self.sink, self.description = sink, description

    def advance(self, n: float = 1) -> None:
        self.sink.add.remote(self.description, float(n))  # fire and forget: the driver drains


class ShardProgress(Progress):
    """A worker's progress: every advance goes to the driver's sink actor."""

    def __init__(self, sink: Any) -> None:
        self.sink = sink

    def open_task(self, description: str, total: int | None):  # type: ignore[override]
        from contextlib import nullcontext

        return nullcontext(_SinkTask(self.sink, description))


class ShardAudit(ClassificationAudit):
    """A worker's audit: the driver's clean pass, the cascade on one shard's samples."""

    def __init__(self, prep: Prepared, clean: dict[str, Any], samples: list[int], progress: Progress) -> None:
        super().__init__(prep, progress)
        self.ids = list(clean["ids"])
        self.clean_pred = np.asarray(clean["clean_pred"], dtype=np.int64)
        self.clean_conf = np.asarray(clean["clean_confidence"], dtype=np.float64)
        in_shard = np.zeros(self.n, dtype=bool)
        in_shard[samples] = True
        self.correct = (self.clean_pred == self.labels) & in_shard  # outside the shard: never a candidate
        self.broken_before = np.zeros(self.n, dtype=bool)

    def run_shard(self) -> dict[str, Any]:
        steps: dict[str, Any] = {}
        for eps_255 in self.prep.eps_255:
            self.start_eps(eps_255)
            for attack in self.prep.attacks:
                entry = self.step(attack, eps_255)
                self.record(entry)  # the cascade within the shard; the driver recomputes the accuracies
                steps[step_key(attack.name, eps_255)] = {"entry": entry, "extras": self.step_extras}
            self.end_eps(eps_255)
        return {"steps": steps, "gallery": self.gallery}


def open_worker(config: AuditConfig, threads: int) -> tuple[Prepared, str]:
    """A worker's model and data, opened from the configuration through the driver's own
    loaders and checks (without --trust-model a pickle or an unsafe TorchScript call is
    refused here exactly as on the driver), and the audit's hash to compare with the driver's."""
    torch.set_num_threads(max(int(threads), 1))
    prep = prepare(config, get_registry())
    return prep, config_hash(config.identity(), prep.model.sha256, prep.dataset.fingerprint())


def _actor_classes(ray: Any) -> tuple[Any, Any]:
    @ray.remote(num_cpus=0)
    class ProgressSink:
        def __init__(self) -> None:
            self.counts: dict[str, float] = {}

        def add(self, description: str, n: float) -> None:
            self.counts[description] = self.counts.get(description, 0.0) + n

        def drain(self) -> dict[str, float]:
            counts, self.counts = self.counts, {}
            return counts

    @ray.remote(max_restarts=RETRIES, max_task_retries=RETRIES)
    class ShardWorker:
        def __init__(self, config: AuditConfig, threads: int) -> None:
            self.prep, self.hash = open_worker(config, threads)

        def run(self, samples: list[int], clean: dict[str, Any], sink: Any) -> dict[str, Any]:
            audit = ShardAudit(self.prep, clean, samples, ShardProgress(sink))
            return {"format": SHARD_FORMAT, "config_hash": self.hash, "samples": samples, "pid": os.getpid(),
                    **audit.run_shard()}

    return ProgressSink, ShardWorker


# ------------------------------------------------------------------ driver side
def connect(ray: Any, engine: dict[str, Any]) -> None:
    """Join ``--ray-address``, else start a local instance (the laptop case)."""
    if ray.is_initialized():
        return
    address = engine.get("address")
    env = {"OMP_NUM_THREADS": str(engine.get("cpus_per_worker") or 1)}
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR",
                              "runtime_env": {"env_vars": env}}
    try:
        ray.init(address=address, **kwargs) if address else ray.init(**kwargs)
    except ConnectionError as exc:
        raise UsageError(f"--ray-address {address}: cannot connect ({exc})") from None


def worker_count(ray: Any, engine: dict[str, Any]) -> int:
    """``--workers``, else as many as the cluster's CPUs (or GPUs) allow."""
    resources = ray.cluster_resources()
    cpus, gpus = float(engine.get("cpus_per_worker") or 1), float(engine.get("gpus_per_worker") or 0)
    fit = int(resources.get("CPU", 1) // cpus)
    if gpus > 0:
        fit = min(fit, int(resources.get("GPU", 0) // gpus))
    if fit < 1:
        raise UsageError(f"the Ray cluster has {resources.get('CPU', 0):g} CPUs and {resources.get('GPU', 0):g} GPUs: "
                         f"no worker of {cpus:g} CPUs and {gpus:g} GPUs fits")
    workers = int(engine.get("workers") or fit)
    if workers > fit and not engine.get("address"):
        # a local instance never grows: the extra actors would wait forever for resources
        raise UsageError(f"--workers {workers}: this machine's Ray instance fits {fit} workers of {cpus:g} CPUs"
                         + (f" and {gpus:g} GPUs" if gpus else ""))
    return workers


class RayClassificationAudit(ClassificationAudit):
    """The driver: clean pass here, attack steps on the shards, everything after here."""

    def begin(self, results: dict[str, Any]) -> None:
        super().begin(results)
        self.merged = self._run_shards(results)

    def step(self, attack: Any, eps_255: float) -> dict[str, Any]:
        return self.merged[step_key(attack.name, eps_255)]

    def step_units(self, attack: Any) -> float:  # spent while the shards run, inside begin
        return 0.0 if getattr(self, "merged", None) is not None else super().step_units(attack)

    def _run_shards(self, results: dict[str, Any]) -> dict[str, dict[str, Any]]:
        ray = require_ray()
        engine = dict(self.config.engine)
        connect(ray, engine)
        workers = worker_count(ray, engine)
        layout = split_samples(self.n, int(engine.get("shards") or workers * SHARDS_PER_WORKER))
        cfg_hash = config_hash(self.config.identity(), self.prep.model.sha256, self.prep.dataset.fingerprint())
        if self.config.resume:
            done = load_shards(self.config.out, cfg_hash, layout)
        else:
            shutil.rmtree(self.config.out / SHARD_DIR, ignore_errors=True)
            done = {}
        started = time.perf_counter()
        self.driver_s = 0.0
        clean = {"ids": self.ids, "clean_pred": self.clean_pred.tolist(), "clean_confidence": self.clean_conf.tolist()}
        self._dispatch(ray, engine, workers, layout, done, clean, cfg_hash)
        t0 = time.perf_counter()
        order = [step_key(a.name, e) for e in self.prep.eps_255 for a in self.prep.attacks]
        shards = [done[s] for s in range(len(layout))]
        merged = {key: merge_step([s["steps"][key] for s in shards], self.n) for key in order}
        self.gallery = merge_gallery([s["gallery"] for s in shards], order, GALLERY_PER_CLASS)
        self.driver_s += time.perf_counter() - t0
        results["engine"] = {
            "name": "ray", "workers": workers, "shards": len(layout), "resumed_shards": len(layout) - self.ran,
            "cpus_per_worker": engine.get("cpus_per_worker") or 1, "gpus_per_worker": engine.get("gpus_per_worker") or 0,
            "address": engine.get("address") or "local", "shards_s": time.perf_counter() - started,
            "driver_s": self.driver_s,  # merge and checkpoints: the driver's own share of the time
        }
        return merged

    def _dispatch(self, ray: Any, engine: dict[str, Any], workers: int, layout: list[list[int]],
                  done: dict[int, dict[str, Any]], clean: dict[str, Any], cfg_hash: str) -> None:
        todo = [s for s in range(len(layout)) if s not in done]
        self.ran = len(todo)
        if not todo:
            return
        sink_cls, worker_cls = _actor_classes(ray)
        sink = sink_cls.remote()
        options = {"num_cpus": float(engine.get("cpus_per_worker") or 1),
                   "num_gpus": float(engine.get("gpus_per_worker") or 0)}
        threads = int(engine.get("cpus_per_worker") or 1)
        # the sink goes with each call, not to the constructor: constructor arguments held in the
        # object store would make a restarted actor depend on them (Ray warns, issue 53727)
        actors = [worker_cls.options(**options).remote(self.config, threads) for _ in range(min(workers, len(todo)))]
        weights = {f"{a.name} eps={e:g}/255": attack_units(a, self.prep.params[a.name])
                   for a in self.prep.attacks for e in self.prep.eps_255}
        total = sum(float(np.sum(self.correct)) * w for w in weights.values())
        pending: dict[Any, tuple[int, Any]] = {}
        idle = list(actors)
        with self.progress.task(f"ray: {len(todo)} shards on {len(actors)} workers", int(total) or None) as task:
            while todo or pending:
                while todo and idle:
                    shard, actor = todo.pop(0), idle.pop(0)
                    pending[actor.run.remote(layout[shard], clean, sink)] = (shard, actor)
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
                for description, n in ray.get(sink.drain.remote()).items():
                    units = n * weights.get(description, 0.0)
                    task.advance(units)
                    self.progress.spend(units)
                for ref in ready:
                    shard, actor = pending.pop(ref)
                    try:
                        payload = ray.get(ref)
                    except Exception as exc:  # noqa: BLE001 - a shard that failed after Ray's retries
                        raise InputError(f"shard {shard} failed on Ray after {RETRIES} retries: "
                                         f"{str(exc).strip().splitlines()[-1][:300]}") from None
                    if payload["config_hash"] != cfg_hash:
                        raise InputError(f"shard {shard}: the worker saw a different model or data than the driver "
                                         "(every node needs the same files at the same paths)")
                    t0 = time.perf_counter()
                    payload.pop("pid", None)
                    save_shard(self.config.out, shard, payload)
                    self.driver_s += time.perf_counter() - t0
                    done[shard] = payload
                    idle.append(actor)
        for actor in actors:
            ray.kill(actor)
