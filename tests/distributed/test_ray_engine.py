"""``--engine ray`` gives a local run's numbers: 1, 2 and 3 workers, a worker killed
mid-audit (Ray restarts it and retries its shard), and a driver killed with SIGKILL whose
``--resume`` redoes only the unfinished shards (issue 19). One local Ray instance serves
every test of the session."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from auditor.cli import app
from tests.distributed.identity import differences, numbers

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")

runner = CliRunner()
FLAGS = ["--attacks", "fgsm,pgd,square,zoo", "--backend", "pgd=native", "--eps", "2,8", "--budget", "quick",
         "--limit", "10", "--check-samples", "4", "--report-format", "none", "--quiet"]


@pytest.fixture(scope="session")
def local_numbers(demo_inputs, tmp_path_factory):
    model, data = demo_inputs
    out = tmp_path_factory.mktemp("local")
    result = runner.invoke(app, ["run", str(model), "--data", str(data), *FLAGS, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return numbers(json.loads((out / "results.json").read_text()))


def ray_run(demo_inputs, out: Path, *extra: str) -> dict:
    model, data = demo_inputs
    result = runner.invoke(app, ["run", str(model), "--data", str(data), *FLAGS, "--out", str(out),
                                 "--engine", "ray", *extra])
    assert result.exit_code == 0, result.output
    return json.loads((out / "results.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_ray_gives_the_local_numbers(ray_address, demo_inputs, local_numbers, tmp_path, workers):
    results = ray_run(demo_inputs, tmp_path / "out", "--workers", str(workers))
    # 10 images are under two batches per shard: one shard per worker (default_shards)
    assert results["engine"]["workers"] == workers and results["engine"]["shards"] == workers
    assert differences(local_numbers, numbers(results)) == []
    assert len(list((tmp_path / "out" / "shards").glob("shard-*.json"))) == results["engine"]["shards"]
    # no unexplained gaps: every attacked step has an overhead ratio, priced on the workers
    assert all(e["overhead"]["ratio"] > 0 for e in results["attacks"] if e["n_attacked"])
    phases = results["engine"]["phases"]
    assert phases["ray_init_s"] >= 0 and phases["shards_compute_s"] > 0 and 0 < phases["worker_busy_share"] <= 1
    rows = {r["phase"] for r in results["timing"]["breakdown"]}
    assert "clinical targeted attacks" in rows and any(r.startswith("ray: attack steps") for r in rows)
    assert results["timing"]["named_s"] <= results["timing"]["wall_s"] + 1e-6  # the rows fit in the wall time


def _kill_one_worker(killed: list[int], stop: threading.Event) -> None:
    while not stop.is_set() and not killed:
        for proc in psutil.process_iter(["pid", "cmdline"]):
            cmdline = " ".join(proc.info.get("cmdline") or [])
            if "ShardWorker.run" in cmdline:  # a worker in the middle of a shard
                os.kill(proc.info["pid"], signal.SIGKILL)
                killed.append(proc.info["pid"])
                return
        time.sleep(0.2)


@pytest.mark.slow
def test_a_killed_worker_is_restarted_and_the_numbers_stay(ray_address, demo_inputs, local_numbers, tmp_path):
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_one_worker, args=(killed, stop), daemon=True)
    killer.start()
    try:
        results = ray_run(demo_inputs, tmp_path / "out", "--workers", "2")
    finally:
        stop.set()
        killer.join()
    assert killed, "a worker process was killed mid-audit"
    assert differences(local_numbers, numbers(results)) == []


@pytest.mark.slow
def test_a_killed_driver_resumes_only_unfinished_shards(ray_address, demo_inputs, local_numbers, tmp_path):
    model, data = demo_inputs
    out = tmp_path / "out"
    args = ["run", str(model), "--data", str(data), *FLAGS, "--out", str(out), "--engine", "ray",
            "--ray-address", ray_address, "--workers", "1", "--shards", "5"]
    driver = subprocess.Popen([sys.executable, "-m", "auditor.cli", *args], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env={**os.environ, "MEDAUDIT_SANDBOX": "off"})
    shard_dir = out / "shards"
    try:
        while driver.poll() is None and not list(shard_dir.glob("shard-*.json")):
            time.sleep(0.2)
        os.kill(driver.pid, signal.SIGKILL)
    finally:
        driver.wait()
    finished = sorted(p.name for p in shard_dir.glob("shard-*.json"))
    assert finished and len(finished) < 5, "killed after some shards, before the last"
    mtimes = {name: (shard_dir / name).stat().st_mtime_ns for name in finished}
    results = ray_run(demo_inputs, out, "--ray-address", ray_address, "--workers", "1", "--shards", "5", "--resume")
    assert results["engine"]["resumed_shards"] == len(finished)
    assert {name: (shard_dir / name).stat().st_mtime_ns for name in finished} == mtimes  # not redone
    assert differences(local_numbers, numbers(results)) == []
