"""The audit skeleton: the schedule (eps ascending, attacks in their order), one write of
results.json per step, hooks in order, and --resume that reruns only unfinished steps."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from auditor.engine.skeleton import AuditSkeleton
from auditor.errors import UsageError
from auditor.results import SCHEMA_VERSION


class _Dataset:
    def __len__(self) -> int:
        return 3

    def fingerprint(self) -> str:
        return "data-sha"


def _prep(out: Path, resume: bool = False, seed: int = 0) -> Any:
    config = SimpleNamespace(out=out, resume=resume, seed=seed, identity=lambda: {"seed": seed})
    return SimpleNamespace(
        config=config, model=SimpleNamespace(sha256="model-sha"), dataset=_Dataset(), device=torch.device("cpu"),
        num_classes=2, input_shape=(1, 2, 2), task="classification", eps_255=[2.0, 8.0],
        attacks=[SimpleNamespace(name="cheap"), SimpleNamespace(name="costly")], attack_extra={},
    )


class _Recorder(AuditSkeleton):
    """Records the hooks; a step fails on demand, as a crash would."""

    def __init__(self, prep: Any, fail_at: tuple[str, float] | None = None) -> None:
        super().__init__(prep, None, "test", torch.nn.Identity(), batch_size=2)
        self.calls: list[tuple[str, Any]] = []
        self.fail_at = fail_at

    def before(self) -> None:
        self.calls.append(("before", None))

    def base_results(self, cfg_hash: str) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "created": "t0", "config_hash": cfg_hash, "status": "running",
                "attacks": []}

    def begin(self, results: dict[str, Any]) -> None:
        self.calls.append(("begin", None))
        results["clean"] = {"n": self.n}

    def start_eps(self, eps_255: float) -> None:
        self.calls.append(("start_eps", eps_255))

    def step(self, attack: Any, eps_255: float) -> dict[str, Any]:
        if self.fail_at == (attack.name, eps_255):
            raise RuntimeError("crash")
        self.calls.append(("step", (attack.name, eps_255)))
        return {"attack": attack.name, "eps_255": eps_255}

    def record(self, entry: dict[str, Any]) -> None:
        self.calls.append(("record", (entry["attack"], entry["eps_255"])))

    def end_eps(self, eps_255: float) -> None:
        self.calls.append(("end_eps", eps_255))

    def worst_case(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"eps_255": e["eps_255"]} for e in entries]

    def finish(self, results: dict[str, Any]) -> None:
        self.calls.append(("finish", len(results["attacks"])))
        results["status"] = "complete"


def test_schedule_and_hook_order(tmp_path):
    audit = _Recorder(_prep(tmp_path))
    results = audit.run()
    steps = [c[1] for c in audit.calls if c[0] == "step"]
    assert steps == [("cheap", 2.0), ("costly", 2.0), ("cheap", 8.0), ("costly", 8.0)]
    names = [c[0] for c in audit.calls]
    assert names[:3] == ["before", "begin", "start_eps"] and names[-2:] == ["end_eps", "finish"]
    assert all(names[i + 1] == "record" for i, n in enumerate(names) if n == "step")
    assert results["status"] == "complete" and len(results["attacks"]) == 4
    assert json.loads((tmp_path / "results.json").read_text())["attacks"][-1] == {"attack": "costly", "eps_255": 8.0}


def test_a_crash_keeps_every_finished_step_and_resume_reruns_only_the_rest(tmp_path):
    with pytest.raises(RuntimeError):
        _Recorder(_prep(tmp_path), fail_at=("cheap", 8.0)).run()
    saved = json.loads((tmp_path / "results.json").read_text())
    assert [(e["attack"], e["eps_255"]) for e in saved["attacks"]] == [("cheap", 2.0), ("costly", 2.0)]
    assert saved["status"] == "running"

    resumed = _Recorder(_prep(tmp_path, resume=True))
    results = resumed.run()
    assert [c[1] for c in resumed.calls if c[0] == "step"] == [("cheap", 8.0), ("costly", 8.0)]
    # resumed steps are still recorded (the cascade needs them) and counted once
    assert [c[1] for c in resumed.calls if c[0] == "record"][:2] == [("cheap", 2.0), ("costly", 2.0)]
    assert results["resumed"] == 1 and len(results["attacks"]) == 4


def test_resume_refuses_another_configuration(tmp_path):
    _Recorder(_prep(tmp_path)).run()
    with pytest.raises(UsageError, match="changed"):
        _Recorder(_prep(tmp_path, resume=True, seed=1)).run()
