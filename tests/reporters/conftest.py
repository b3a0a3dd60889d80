"""Fixtures for the reporter tests: a fixed results.json (a trimmed demo audit) and
hostile variants of it."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
RESULTS = FIXTURES / "results.json"
RENDERED_AT = "2026-01-01T00:00:00+00:00"

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(2)>'


def load_results() -> dict[str, Any]:
    return json.loads(RESULTS.read_text(encoding="utf-8"))


@pytest.fixture
def results() -> dict[str, Any]:
    return load_results()


@pytest.fixture(scope="module")
def module_results() -> dict[str, Any]:
    return load_results()


def rename_class(results: dict[str, Any], old: str, new: str) -> None:
    """Rename a class everywhere it appears in a results dict (keys and values)."""

    def walk(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {(new if k == old else k): walk(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [walk(v) for v in obj]
        return new if obj == old else obj

    results.update(walk(copy.deepcopy(results)))


@pytest.fixture
def hostile_results() -> dict[str, Any]:
    """The fixture with HTML and script in every user- or plugin-controlled string."""
    r = load_results()
    rename_class(r, "melanoma", f"melanoma{SCRIPT}")
    rename_class(r, "benign", f"benign{IMG}")
    r["model"]["path"] = f"/models/{IMG}/model{SCRIPT}.pt"
    r["model"]["name"] = f"model{SCRIPT}.pt"
    r["data"]["source"] = f"/data/{SCRIPT}"
    r["command"] = f"medaudit run {SCRIPT}"
    for item in r["gallery"]:
        item["id"] = f"{IMG}lesion.png"
        item["clean_png"] = f'{IMG}'
    for attack in r["config"]["attacks"]:
        attack["title"] = f"{attack['title']}{SCRIPT}"
        attack["reference"] = f"Evil et al.{IMG}"
        attack["params"]["note"] = SCRIPT
    for entry in r["attacks"]:
        entry["title"] = f"{entry['title']}{SCRIPT}"
    r["modality"]["title"] = f"Dermoscopy{SCRIPT}"
    r["modality"]["threats"] = f"threats {IMG}"
    r["modality"]["defenses"] = [f"defense {SCRIPT}"]
    r["warnings"] = [f"warning {SCRIPT}"]
    r["environment"]["plugin"] = f"evil-plugin {SCRIPT}"
    r["provenance"] = {"plugins": [{"kind": "attack", "name": f"evil{SCRIPT}", "plugin": f"evil{IMG}",
                                    "distribution": f"evil-dist{SCRIPT}", "version": SCRIPT}]}
    r["checks"] = {"verdict": "warn", "summary": {"pass": 1, "warn": 1},
                   "items": [{"id": 1, "key": "k", "name": f"check {SCRIPT}", "status": "warn",
                              "message": f"message {IMG}", "numbers": {SCRIPT: IMG}}]}
    r["gates"] = {"verdict": "fail", "criteria": [{"criterion": SCRIPT, "label": f"gate {IMG}",
                                                   "passed": False, "message": SCRIPT}]}
    return r
