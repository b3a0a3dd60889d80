"""``medaudit run --engine ray``: an audit's attack steps sharded by samples over Ray
workers, with the same results.json numbers as a local run (the classification side here,
segmentation's in :mod:`auditor.engine.ray_segmentation`).

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
from abc import ABC, abstractmethod
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from auditor.accounting import PassTimer
from auditor.config import AuditConfig, config_hash
from auditor.engine.classification import GALLERY_PER_CLASS, ClassificationAudit
from auditor.engine.prepare import Prepared, prepare
from auditor.engine.shards import (SHARD_DIR, SHARD_FORMAT, load_shards, merge_gallery, merge_step, save_shard,
                                   split_samples, step_key)
from auditor.engine.record import time_breakdown
from auditor.engine.skeleton import attack_units
from auditor.errors import InputError, UsageError
from auditor.progress import Progress, ProgressTask
from auditor.registry import get_registry
from auditor.results import write_results

SHARDS_PER_WORKER = 4  # finer than one per worker: balance, and less to redo after a crash
MIN_SHARD_BATCHES = 2  # see default_shards
RETRIES = 3


def default_shards(n: int, workers: int, batch_size: int) -> int:
    """Shards for ``n`` samples: up to SHARDS_PER_WORKER per worker, so a worker that drew
    cheap samples takes another shard while a slow one finishes (the cascade makes costs
    uneven), but never under MIN_SHARD_BATCHES batches each: an attack's per-call cost
    (ART's and the query attacks' Python loop per iteration) is paid per chunk, and a shard
    of a few images pays it for a chunk almost empty."""
    fit = n // max(batch_size * MIN_SHARD_BATCHES, 1)
    return max(min(workers * SHARDS_PER_WORKER, fit), workers, 1)


def worker_phases(log: list[dict[str, Any]], shards_s: float) -> dict[str, Any]:
    """Where the workers' time went, from the times each shard reports: start-up (process,
    imports, model and data, until the worker's first shard began; the slowest worker's),
    compute (every shard's seconds, summed), the share of the workers' time they computed,
    and the tail (how long the first worker to run out of shards sat idle before the last
    finished). Times are compared across processes by wall clock: on one machine exact, on a
    cluster as good as its clocks."""
    if not log:
        return {"workers_start_s": 0.0, "workers_open_s": 0.0, "shards_compute_s": 0.0, "worker_busy_share": None,
                "tail_idle_s": 0.0}
    actors = sorted({r["actor"] for r in log})
    first = {a: min(r["started"] for r in log if r["actor"] == a) for a in actors}
    last = {a: max(r["ended"] for r in log if r["actor"] == a) for a in actors}
    compute = sum(r["ended"] - r["started"] for r in log)
    return {"workers_start_s": max(first[a] - log[0]["created"] for a in actors),
            "workers_open_s": max(r["open_s"] for r in log),
            "shards_compute_s": compute,
            "worker_busy_share": compute / (len(actors) * shards_s) if shards_s > 0 else None,
            "tail_idle_s": max(last.values()) - min(last.values())}


def ray_breakdown(results: dict[str, Any], wall_s: float, clean_s: float, engine: dict[str, Any]) -> dict[str, Any]:
    """The timing breakdown of a Ray run: the attack steps ran on the workers in parallel, so
    the rows are the Ray phases on the driver's clock (the per-step worker seconds stay in
    each attack entry's ``time_s``), then the rows a local run has after the steps."""
    phases = engine["phases"]
    start = phases["ray_init_s"] + phases["workers_start_s"]
    steps = max(engine["shards_s"] - phases["workers_start_s"] - phases["checkpoint_s"], 0.0)
    ray_rows = [{"phase": "ray: start (ray.init, workers' imports, model and data)", "s": start},
                {"phase": f"ray: attack steps, {engine['shards']} shards on {engine['workers']} workers", "s": steps},
                {"phase": "ray: driver's merge and checkpoints", "s": engine["driver_s"]}]
    base = time_breakdown({**results, "attacks": []}, wall_s, max(clean_s, 0.0))["breakdown"]
    rows = [base[0], *ray_rows, *base[1:-1]]
    named = sum(r["s"] for r in rows)
    rows.append({"phase": "other (data loading, writes, bookkeeping)", "s": max(wall_s - named, 0.0)})
    for r in rows:
        r["share"] = r["s"] / wall_s if wall_s > 0 else None
    return {"breakdown": rows, "wall_s": wall_s, "named_s": named}


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

    def __init__(self, prep: Prepared, clean: dict[str, Any], samples: list[int], progress: Progress,
                 timer: PassTimer | None = None) -> None:
        super().__init__(prep, progress)
        # the overhead ratio's denominator, timed on this worker (its threads, its device)
        self.pass_timer = timer or PassTimer(prep.model.module, self._batch(np.asarray(samples[:self.batch_size]))[0])
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
            t0 = time.perf_counter()
            self.prep, self.hash = open_worker(config, threads)
            self.open_s, self.timer = time.perf_counter() - t0, None

        def run(self, shard_class: Any, samples: list[int], clean: dict[str, Any], sink: Any) -> dict[str, Any]:
            started = time.time()
            audit = shard_class(self.prep, clean, samples, ShardProgress(sink), self.timer)
            self.timer = audit.pass_timer  # timed once per worker, reused by its next shards
            shard = audit.run_shard()
            worker = {"pid": os.getpid(), "open_s": self.open_s, "started": started, "ended": time.time()}
            return {"format": SHARD_FORMAT, "config_hash": self.hash, "samples": samples, "worker": worker, **shard}

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


class RayShards(ABC):
    """The driver's side of a sharded audit, for any task's audit class it is mixed into:
    clean pass here, attack steps on the shards, everything after here. The task says what
    its workers run (``shard_class``), what of the clean pass they need (``shard_clean``),
    how much progress the shards make (``shard_units``) and how shards merge (``merge_shards``)."""

    shard_class: Any = None

    @abstractmethod
    def shard_clean(self) -> dict[str, Any]:
        """What of the driver's clean pass the workers need."""

    @abstractmethod
    def shard_units(self) -> float:
        """Samples the shards attack per step, for the progress total."""

    @abstractmethod
    def merge_shards(self, shards: list[dict[str, Any]], layout: list[list[int]], order: list[str]) -> dict[str, Any]:
        """The shards' step records, merged into one per step in ``order``."""

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
        t0 = time.perf_counter()
        connect(ray, engine)
        self.phases: dict[str, Any] = {"ray_init_s": time.perf_counter() - t0}
        workers = worker_count(ray, engine)
        layout = split_samples(self.n, int(engine.get("shards") or default_shards(self.n, workers, self.batch_size)))
        cfg_hash = config_hash(self.config.identity(), self.prep.model.sha256, self.prep.dataset.fingerprint())
        if self.config.resume:
            done = load_shards(self.config.out, cfg_hash, layout)
        else:
            shutil.rmtree(self.config.out / SHARD_DIR, ignore_errors=True)
            done = {}
        started = time.perf_counter()
        self.checkpoint_s, self.worker_log = 0.0, []
        self._dispatch(ray, engine, workers, layout, done, self.shard_clean(), cfg_hash)
        shards_s = time.perf_counter() - started
        t0 = time.perf_counter()
        order = [step_key(a.name, e) for e in self.prep.eps_255 for a in self.prep.attacks]
        merged = self.merge_shards([done[s] for s in range(len(layout))], layout, order)
        merge_s = time.perf_counter() - t0
        results["engine"] = {
            "name": "ray", "workers": workers, "shards": len(layout), "resumed_shards": len(layout) - self.ran,
            "cpus_per_worker": engine.get("cpus_per_worker") or 1, "gpus_per_worker": engine.get("gpus_per_worker") or 0,
            "address": engine.get("address") or "local", "shards_s": shards_s,
            "driver_s": merge_s + self.checkpoint_s,  # merge and checkpoints: the driver's own share of the time
            "phases": {**self.phases, **worker_phases(self.worker_log, shards_s), "merge_s": merge_s,
                       "checkpoint_s": self.checkpoint_s},
        }
        self.ray_s = time.perf_counter() - started + self.phases["ray_init_s"]
        return merged

    def run(self) -> dict[str, Any]:
        results = super().run()
        timing, engine = results.get("timing"), results.get("engine")
        if isinstance(timing, dict) and engine and hasattr(self, "ray_s"):
            # the skeleton timed the shards inside the clean pass: one row per Ray phase instead
            timing.update(ray_breakdown(results, timing["wall_s"], self.clean_s - self.ray_s, engine))
            write_results(Path(self.config.out), results)
        return results

    def _dispatch(self, ray: Any, engine: dict[str, Any], workers: int, layout: list[list[int]],
                  done: dict[int, dict[str, Any]], clean: dict[str, Any], cfg_hash: str) -> None:
        todo = [s for s in range(len(layout)) if s not in done]
        self.ran = len(todo)
        if not todo:
            return
        sink_cls, worker_cls = _actor_classes(ray)
        sink = sink_cls.remote()
        clean = ray.put(clean)  # once into the object store, not serialised again with every shard
        options = {"num_cpus": float(engine.get("cpus_per_worker") or 1),
                   "num_gpus": float(engine.get("gpus_per_worker") or 0)}
        threads = int(engine.get("cpus_per_worker") or 1)
        # the sink goes with each call, not to the constructor: constructor arguments held in the
        # object store would make a restarted actor depend on them (Ray warns, issue 53727)
        actors = [worker_cls.options(**options).remote(self.config, threads) for _ in range(min(workers, len(todo)))]
        created = time.time()
        weights = {f"{a.name} eps={e:g}/255": attack_units(a, self.prep.params[a.name])
                   for a in self.prep.attacks for e in self.prep.eps_255}
        total = self.shard_units() * sum(weights.values())
        pending: dict[Any, tuple[int, Any]] = {}
        idle = list(actors)
        with self.progress.task(f"ray: {len(todo)} shards on {len(actors)} workers", int(total) or None) as task:
            while todo or pending:
                while todo and idle:
                    shard, actor = todo.pop(0), idle.pop(0)
                    pending[actor.run.remote(self.shard_class, layout[shard], clean, sink)] = (shard, actor)
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
                    self.worker_log.append({"actor": actors.index(actor), "created": created, **payload.pop("worker")})
                    save_shard(self.config.out, shard, payload)
                    self.checkpoint_s += time.perf_counter() - t0
                    done[shard] = payload
                    idle.append(actor)
        for actor in actors:
            ray.kill(actor)


class RayClassificationAudit(RayShards, ClassificationAudit):
    """A classification audit whose cascade runs on Ray shards (:class:`ShardAudit`)."""

    shard_class = ShardAudit

    def shard_clean(self) -> dict[str, Any]:
        return {"ids": self.ids, "clean_pred": self.clean_pred.tolist(), "clean_confidence": self.clean_conf.tolist()}

    def shard_units(self) -> float:
        return float(np.sum(self.correct))  # at most: the cascade attacks fewer

    def merge_shards(self, shards: list[dict[str, Any]], layout: list[list[int]], order: list[str]) -> dict[str, Any]:
        merged = {key: merge_step([s["steps"][key] for s in shards], self.n) for key in order}
        self.gallery = merge_gallery([s["gallery"] for s in shards], order, GALLERY_PER_CLASS)
        return merged
