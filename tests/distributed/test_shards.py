"""Shard layout, merge and checkpoints of ``--engine ray`` (auditor.engine.shards), and the
engine options' usage errors; no Ray needed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from auditor.cli import app
from auditor.engine.ray_engine import default_shards, worker_phases
from auditor.engine.shards import (load_shards, merge_gallery, merge_overhead, merge_step, save_shard, shard_path,
                                   split_samples)
from auditor.errors import InputError

runner = CliRunner()


def _entry(broken: list[int], attacked: int, linf: list[float]) -> dict:
    return {
        "entry": {"attack": "square", "title": "Square", "threat_model": "black-box", "backend": "native",
                  "eps": 8 / 255, "eps_255": 8.0, "params": {"queries": 10}, "seed": 0, "n_attacked": attacked,
                  "projected_by_engine": 0, "passes": {"forward_samples": 10 * attacked}, "time_s": 1.0,
                  "attack_time_s": 0.5, "details": {"broken_by": {"square": len(broken)}},
                  "samples": {"broken": broken, "adv_pred": [1] * len(broken), "adv_confidence": [0.75] * len(broken)}},
        "extras": {"linf": linf, "l2": [x * 2 for x in linf], "queries": [3.0] * attacked},
    }


def test_split_covers_every_sample_once_in_order() -> None:
    layout = split_samples(10, 4)
    assert [i for block in layout for i in block] == list(range(10)) and all(layout)
    assert split_samples(3, 8) == [[0], [1], [2]]  # never an empty shard


def test_merge_puts_shards_back_in_sample_order() -> None:
    merged = merge_step([_entry([1], 2, [0.1]), _entry([4, 5], 3, [0.2, 0.3])], n=6)
    assert merged["samples"]["broken"] == [1, 4, 5] and merged["n_attacked"] == 5 and merged["n_broken"] == 3
    assert merged["success_rate"] == pytest.approx(3 / 5)
    assert merged["perturbation"]["linf_mean"] == pytest.approx(0.2) and merged["perturbation"]["l2_max"] == 0.6
    assert merged["queries"]["total"] == 15.0 and merged["details"]["broken_by"]["square"] == 3


def test_overhead_of_a_sharded_step_is_worker_seconds_over_ideal_worker_seconds() -> None:
    def entry(attack_s: float, step_s: float, ideal: float, step_ideal: float, calls: dict) -> dict:
        return {"attack_time_s": attack_s, "time_s": step_s,
                "overhead": {"ideal_s": ideal, "ratio": attack_s / ideal, "step_ideal_s": step_ideal,
                             "step_ratio": step_s / step_ideal, "calls_by_batch_size": calls}}
    merged = merge_overhead([entry(3.0, 4.0, 1.0, 2.0, {"32": [10, 5], "8": [1, 0]}),
                             entry(1.0, 2.0, 1.0, 1.0, {"32": [2, 2]})])
    assert merged["ratio"] == pytest.approx(2.0) and merged["step_ratio"] == pytest.approx(2.0)
    assert merged["calls_by_batch_size"] == {"8": [1, 0], "32": [12, 7]}
    assert merge_overhead([entry(1.0, 1.0, 1.0, 1.0, {}), {"attack_time_s": 1.0, "time_s": 1.0}]) is None


def test_default_shards_balance_workers_without_shards_of_a_few_images() -> None:
    assert default_shards(800, 2, 32) == 8  # 4 per worker: a worker that drew cheap samples takes another
    assert default_shards(160, 2, 32) == 2  # 2 batches each at least, but every worker gets one
    assert default_shards(10, 3, 32) == 3


def test_worker_phases_from_the_shards_clock() -> None:
    log = [{"actor": 0, "created": 100.0, "open_s": 1.0, "started": 103.0, "ended": 110.0},
           {"actor": 1, "created": 100.0, "open_s": 1.5, "started": 104.0, "ended": 108.0},
           {"actor": 1, "created": 100.0, "open_s": 1.5, "started": 108.0, "ended": 112.0}]
    phases = worker_phases(log, shards_s=12.0)
    assert phases["workers_start_s"] == 4.0 and phases["workers_open_s"] == 1.5
    assert phases["shards_compute_s"] == 15.0 and phases["tail_idle_s"] == 2.0
    assert phases["worker_busy_share"] == pytest.approx(15.0 / 24.0)


def test_gallery_keeps_the_first_per_class_in_schedule_order() -> None:
    def g(index: int, label: int, eps: float) -> dict:
        return {"index": index, "label": label, "attack": "pgd", "eps_255": eps}
    shard_a = [g(3, 0, 8.0), g(1, 1, 8.0)]
    shard_b = [g(7, 0, 2.0), g(9, 0, 8.0)]
    chosen = merge_gallery([shard_a, shard_b], ["pgd@2", "pgd@8"], per_class=2)
    assert [c["index"] for c in chosen] == [7, 1, 3]  # step order, then sample order; 9 is a third of class 0


def test_checkpoints_are_reused_only_for_the_same_audit_and_layout(tmp_path: Path) -> None:
    layout = [[0, 1], [2, 3]]
    payload = {"format": 1, "config_hash": "abc", "samples": [0, 1], "steps": {"square@8": _entry([1], 2, [0.1])},
               "gallery": []}
    save_shard(tmp_path, 0, payload)
    assert set(load_shards(tmp_path, "abc", layout)) == {0}
    assert load_shards(tmp_path, "other audit", layout) == {}
    assert load_shards(tmp_path, "abc", [[0], [1, 2, 3]]) == {}  # another layout: redone


def test_a_segmentation_checkpoint_is_reused(tmp_path: Path) -> None:
    part = {"entry": {"samples": {"dice": [0.5, None]}}, "extras": {
        "values": {"dice": [0.5, float("nan")], "iou": [0.3, 0.2]}, "linf": [0.1, 0.1], "l2": [1.0, 1.0], "queries": []}}
    payload = {"format": 1, "config_hash": "abc", "samples": [0, 1], "steps": {"seg-pgd-bce@8": part}, "gallery": []}
    save_shard(tmp_path, 0, payload)
    assert load_shards(tmp_path, "abc", [[0, 1], [2]])[0]["steps"]["seg-pgd-bce@8"]["extras"]["values"]["iou"] == [0.3, 0.2]


@pytest.mark.parametrize("text", [
    "{not json", "[]", '{"format": 1}', "\xff\xfe",
    # a checkpoint claiming a sample outside its shard (would mix shards' numbers)
    json.dumps({"format": 1, "config_hash": "abc", "samples": [0, 1], "gallery": [],
                "steps": {"square@8": _entry([7], 2, [0.1])}}),
    json.dumps({"format": 1, "config_hash": "abc", "samples": [0, 1], "gallery": [{"index": "<script>"}],
                "steps": {}}),
    # a segmentation checkpoint with more per-image values than its shard has images
    json.dumps({"format": 1, "config_hash": "abc", "samples": [0, 1], "gallery": [],
                "steps": {"seg-pgd-bce@8": {"entry": {"samples": {}}, "extras": {
                    "values": {"dice": [0.5, 0.4, 0.3]}, "linf": [], "l2": [], "queries": []}}}}),
])
def test_a_hostile_checkpoint_is_refused_with_its_name(tmp_path: Path, text: str) -> None:
    path = shard_path(tmp_path, 0)
    path.parent.mkdir(parents=True)
    path.write_bytes(text.encode("utf-8", "surrogateescape") if text != "\xff\xfe" else b"\xff\xfe\x00")
    with pytest.raises(InputError, match="shard-0000.json"):
        load_shards(tmp_path, "abc", [[0, 1]])


@pytest.mark.parametrize("extra, fragment", [
    (["--engine", "spark"], "not local or ray"),
    (["--workers", "2"], "need --engine ray"),
    (["--engine", "ray", "--workers", "0"], "at least 1"),
    (["--engine", "ray", "--ray-address", "nowhere"], "is not auto"),
])
def test_engine_usage_errors_exit_2(demo_inputs, tmp_path: Path, extra: list[str], fragment: str) -> None:
    model, data = demo_inputs
    result = runner.invoke(app, ["run", str(model), "--data", str(data), "--out", str(tmp_path / "o"), *extra])
    assert result.exit_code == 2 and fragment in result.output, result.output
    assert not (tmp_path / "o" / "results.json").exists()
