"""The segmentation audit loop: results layout, threat model enforcement, worst case,
per-step writes, resume and determinism, on a thresholding model and synthetic lesions."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from auditor.audit import run_audit
from auditor.errors import UsageError
from auditor.hookspecs import hookimpl
from auditor.interfaces import Attack, AttackResult
from auditor.results import read_results, strip_volatile
from tests.segmentation.conftest import (SIZE, ThresholdSeg, make_registry, save_scripted, seg_config,
                                         write_seg_folders)

ENTRY_KEYS = {"attack", "loss", "eps", "eps_255", "dice", "iou", "sensitivity", "missed_rate", "n", "params",
              "backend", "seed", "passes", "time_s", "attack_time_s", "overhead", "perturbation", "threat_model",
              "samples"}


@pytest.fixture(scope="module")
def audited_at(tmp_path_factory, registry):
    """One audit shared by the read-only tests of this module: (results, output folder)."""
    root = tmp_path_factory.mktemp("audited")
    model = save_scripted(ThresholdSeg(), root / "model.pt")
    data = write_seg_folders(root / "data")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = run_audit(seg_config(model, data, root / "out"), registry, command="test")
    finally:
        torch.set_num_threads(threads)
    return results, root / "out"


@pytest.fixture
def audited(audited_at) -> dict[str, Any]:
    return audited_at[0]


def test_results_layout(audited_at):
    audited, out = audited_at
    results = read_results(out)
    assert results == json.loads(json.dumps(audited, allow_nan=False))  # what run() returns is what it wrote
    assert results["status"] == "complete" and results["checks"]["verdict"] == "pass"
    assert results["model"]["task"] == "segmentation" and results["config"]["task"] == "segmentation"
    assert {"schema_version", "tool", "created", "command", "config_hash", "model", "data", "modality", "config",
            "environment", "clean", "attacks", "worst_case", "gallery", "summary"} <= set(results)
    clean = results["clean"]
    assert clean["n"] == 4 and clean["dice"] > 0.9 and clean["iou"] > 0.8
    assert clean["missed_rate"] == 0.0 and len(clean["samples"]["dice"]) == 4
    assert results["data"]["per_class_pixels"]["foreground"] == sum(clean["samples"]["true_area"])
    # the per-class table counts images (every image holds a lesion and background), pixels apart
    assert results["data"]["per_class_counts"] == {"background": 4, "foreground": 4}
    assert results["data"]["count_unit"] == "images holding the class"
    for block in [clean, *results["attacks"], *results["worst_case"]]:
        for metric in ("dice", "iou"):
            low, high = block[f"{metric}_ci95"]
            assert low <= block[metric] <= high and high - low < 1
        assert block["ci_method"] == "percentile bootstrap over images" and block["ci_resamples"] == 2000
    low, high = results["worst_case"][1]["dice_ci95"]
    assert high - low > 0  # the four images differ under attack: the interval has width
    assert [(a["attack"], a["eps_255"]) for a in results["attacks"]] == [
        (name, eps) for eps in (2.0, 8.0)
        for name in ("seg-fgsm-bce", "seg-pgd-bce", "seg-pgd-dice", "seg-lesion-removal")]
    for entry in results["attacks"]:
        assert ENTRY_KEYS <= set(entry), ENTRY_KEYS - set(entry)
        assert entry["loss"] == entry["params"]["loss"]
        assert entry["eps"] == pytest.approx(entry["eps_255"] / 255)
        assert entry["perturbation"]["linf_max"] <= entry["eps"] + 1e-6
        assert entry["projected_by_engine"] == 0
        calls = entry["overhead"]["calls_by_batch_size"]  # every counted call priced at its batch size
        assert sum(int(b) * f for b, (f, _) in calls.items()) == entry["passes"]["forward_samples"]
        assert entry["overhead"]["ideal_s"] > 0 and entry["overhead"]["ratio"] > 0
        assert entry["passes"]["backward_samples"] > 0 and entry["seed"] == 0
    assert [w["eps_255"] for w in results["worst_case"]] == [2.0, 8.0]
    assert {"dice", "iou", "missed_rate", "worst_by"} <= set(results["worst_case"][0])
    summary = results["summary"]
    assert summary["clean_dice"] == clean["dice"]
    assert summary["worst_case"] == {"2": results["worst_case"][0]["dice"], "8": results["worst_case"][1]["dice"]}
    assert summary["most_effective_attack"]["attack"] in {a["attack"] for a in results["attacks"]}
    assert summary["strongest_loss"]["loss"] in ("bce", "dice")


def test_dice_falls_as_eps_grows(audited):
    dice = {(a["attack"], a["eps_255"]): a["dice"] for a in audited["attacks"]}
    clean = audited["clean"]["dice"]
    for name in ("seg-pgd-bce", "seg-pgd-dice", "seg-fgsm-bce"):
        assert dice[(name, 8.0)] < dice[(name, 2.0)] < clean, name
    removal = [a for a in audited["attacks"] if a["attack"] == "seg-lesion-removal"]
    assert removal[-1]["missed_rate"] > audited["clean"]["missed_rate"]


def test_worst_case_is_the_lowest_dice_per_image(audited):
    for w in audited["worst_case"]:
        relevant = [a for a in audited["attacks"] if a["eps_255"] <= w["eps_255"]]
        per_image = np.min([a["samples"]["dice"] for a in relevant], axis=0)
        assert w["samples"]["dice"] == pytest.approx(per_image.tolist())
        assert w["dice"] == pytest.approx(float(per_image.mean()), abs=1e-6)
        assert w["dice"] <= min(a["dice"] for a in relevant) + 1e-9
        assert sum(w["worst_by"].values()) == w["n"]
        any_missed = np.max([a["samples"]["missed"] for a in relevant], axis=0)
        assert w["n_missed_any"] == int(any_missed.sum()) and w["missed_rate_any"] >= w["missed_rate"]


def test_gallery_overlays_are_pngs(audited):
    gallery = audited["gallery"]
    assert [g["index"] for g in gallery] == [0, 2, 3]  # evenly spread over the 4 images
    largest = [a for a in audited["attacks"] if a["eps_255"] == 8.0]
    for g in gallery:
        assert g["eps_255"] == 8.0
        lowest = min(a["samples"]["dice"][g["index"]] for a in largest)
        assert g["dice_adv"] == pytest.approx(lowest, abs=1e-6)
        image = Image.open(io.BytesIO(base64.b64decode(g["overlay_png"])))
        assert image.format == "PNG" and max(image.size) >= 256
        assert {item["key"] for item in g["legend"]} == {"ground_truth", "clean", "adversarial"}


def test_roi_restricts_metrics(threshold_model, tmp_path, registry):
    roi = np.zeros((SIZE, SIZE), dtype=bool)
    roi[:, : SIZE // 2] = True
    data = write_seg_folders(tmp_path / "roi_data", roi=roi)
    results = run_audit(seg_config(threshold_model, data, tmp_path / "out", attacks=["seg-fgsm-bce"],
                                   eps_255=[8.0]), registry)
    assert results["data"]["has_roi"] is True and results["data"]["pixel_unit"] == "pixels inside the ROI"
    assert sum(results["data"]["per_class_pixels"].values()) == 4 * SIZE * SIZE // 2
    assert results["data"]["count_unit"] == "images holding the class inside the ROI"
    assert all(0 <= v <= 4 for v in results["data"]["per_class_counts"].values())


class RogueAttack(Attack):
    """Breaks every rule: perturbs far beyond eps, outside [0, 1], and scribbles over the
    images and masks it is handed."""

    name = "seg-rogue"
    tasks = ("segmentation",)
    backends = ("native",)
    default_backend = "native"
    default = False

    def parameters(self, budget, ctx):
        return {"loss": "none"}

    def run(self, ctx, x, y, eps, params):
        x.add_(0.5)
        y.fill_(0)
        return AttackResult(x * 3 - 1.0)


class RoguePlugin:
    @staticmethod
    @hookimpl
    def medaudit_register_attacks(register):
        register(RogueAttack())


def test_engine_enforces_the_threat_model_and_keeps_masks(threshold_model, seg_data, tmp_path):
    registry = make_registry(RoguePlugin())
    results = run_audit(seg_config(threshold_model, seg_data, tmp_path / "out",
                                   attacks=["seg-rogue", "seg-fgsm-bce"], eps_255=[4.0]), registry)
    by_name = {a["attack"]: a for a in results["attacks"]}
    rogue, fgsm = by_name["seg-rogue"], by_name["seg-fgsm-bce"]
    assert rogue["projected_by_engine"] == 4
    assert rogue["perturbation"]["linf_max"] <= 4 / 255 + 1e-6
    # metrics still use the true masks: every image keeps its lesion
    assert rogue["n_with_lesion"] == 4 and fgsm["n_with_lesion"] == 4
    assert fgsm["projected_by_engine"] == 0


def test_writes_after_every_step(threshold_model, seg_data, tmp_path, registry, monkeypatch):
    import auditor.engine.segmentation as seg
    import auditor.engine.skeleton as skeleton

    seen = []
    original = seg.write_results

    def spy(out, results):
        seen.append(len(results["attacks"]))
        return original(out, results)

    # the shared loop writes after the clean pass and every step; the task writes when done
    monkeypatch.setattr(skeleton, "write_results", spy)
    monkeypatch.setattr(seg, "write_results", spy)
    run_audit(seg_config(threshold_model, seg_data, tmp_path / "out", attacks=["seg-fgsm-bce", "seg-fgsm-dice"]),
              registry)
    assert seen[:5] == [0, 1, 2, 3, 4] and seen[-1] == 4


def test_deterministic_under_a_seed(threshold_model, seg_data, tmp_path, registry):
    attacks = ["seg-pgd-bce", "seg-lesion-removal", "seg-square"]
    a = run_audit(seg_config(threshold_model, seg_data, tmp_path / "a", attacks=attacks, seed=5), registry, command="x")
    b = run_audit(seg_config(threshold_model, seg_data, tmp_path / "b", attacks=attacks, seed=5), registry, command="x")
    a_cmp, b_cmp = strip_volatile(a), strip_volatile(b)
    assert a_cmp == b_cmp
    assert a["gallery"] and a["gallery"][0]["overlay_png"] == b["gallery"][0]["overlay_png"]
    c = run_audit(seg_config(threshold_model, seg_data, tmp_path / "c", attacks=attacks, seed=6), registry, command="x")
    square = lambda r: [e["samples"]["dice"] for e in r["attacks"] if e["attack"] == "seg-square"]  # noqa: E731
    assert square(c) != square(a)  # the seed reaches the random attack


def test_resume_runs_only_the_missing_steps(threshold_model, seg_data, tmp_path, registry, monkeypatch):
    import auditor.engine.segmentation as seg

    config = seg_config(threshold_model, seg_data, tmp_path / "out", attacks=["seg-fgsm-bce", "seg-pgd-dice"])
    full = run_audit(config, registry, command="x")
    path = tmp_path / "out" / "results.json"
    partial = read_results(path)
    partial["attacks"] = partial["attacks"][:2]
    partial["status"] = "running"
    path.write_text(json.dumps(partial))

    calls = []
    original = seg.SegmentationAudit.run_step

    def counting(self, attack, eps_255):
        calls.append((attack.name, eps_255))
        return original(self, attack, eps_255)

    monkeypatch.setattr(seg.SegmentationAudit, "run_step", counting)
    config.resume = True
    resumed = run_audit(config, registry, command="x")
    assert calls == [("seg-fgsm-bce", 8.0), ("seg-pgd-dice", 8.0)]
    assert resumed["resumed"] == 1
    assert strip_volatile(resumed["attacks"]) == strip_volatile(full["attacks"])
    assert resumed["summary"] == full["summary"]

    changed = seg_config(threshold_model, seg_data, tmp_path / "out", attacks=["seg-fgsm-bce"], resume=True)
    with pytest.raises(UsageError, match="cannot resume"):
        run_audit(changed, registry)


def test_missed_fraction_is_configurable(threshold_model, seg_data, tmp_path, registry):
    def missed(fraction: float) -> float:
        config = seg_config(threshold_model, seg_data, tmp_path / f"m{fraction}", attacks=["seg-lesion-removal"],
                            eps_255=[4.0], extra={"missed_fraction": fraction})
        results = run_audit(config, registry)
        assert results["config"]["missed_fraction"] == fraction
        return results["attacks"][0]["missed_rate"]

    assert missed(0.01) <= missed(1.0)
    assert missed(1.0) == 1.0  # at eps 4/255 the attack shrinks every lesion
    with pytest.raises(UsageError):
        run_audit(seg_config(threshold_model, seg_data, tmp_path / "bad", extra={"missed_fraction": 0}), registry)


def test_multiclass_model_end_to_end(seg_data, tmp_path, registry):
    model = save_scripted(ThresholdSeg(out_channels=3), tmp_path / "k3.pt")
    results = run_audit(seg_config(model, seg_data, tmp_path / "out", attacks=["seg-pgd-bce", "seg-pgd-dice"]),
                        registry)
    assert results["model"]["output_channels"] == 3 and results["model"]["threshold"] == "argmax over classes"
    assert results["clean"]["dice"] > 0.9
    dice = {(a["attack"], a["eps_255"]): a["dice"] for a in results["attacks"]}
    assert dice[("seg-pgd-bce", 8.0)] < results["clean"]["dice"]


def test_large_images_are_batched_by_pixels(threshold_model, seg_data, tmp_path, registry, monkeypatch):
    import auditor.engine.segmentation as seg

    monkeypatch.setattr(seg, "MAX_PIXELS_PER_BATCH", 2 * SIZE * SIZE)
    results = run_audit(seg_config(threshold_model, seg_data, tmp_path / "out", attacks=["seg-fgsm-bce"],
                                   eps_255=[8.0]), registry)
    assert results["config"]["batch_size_effective"] == 2 and results["config"]["batch_size"] == 8
    assert results["attacks"][0]["passes"]["forward_calls"] == 2


def test_out_of_memory_halves_segmentation_batches_with_the_same_numbers(threshold_model, seg_data, tmp_path,
                                                                         registry, monkeypatch):
    """Whole-image U-Nets are where a GPU runs out of memory: the step splits the batch."""
    from auditor.results import strip_volatile
    from plugins.attacks.seg_fgsm import SegFGSM

    original = SegFGSM.run

    def limited(self, ctx, x, y, eps, params):
        if len(x) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(self, ctx, x, y, eps, params)

    reference = run_audit(seg_config(threshold_model, seg_data, tmp_path / "roomy", attacks=["seg-fgsm-bce"]), registry)
    monkeypatch.setattr(SegFGSM, "run", limited)
    split = run_audit(seg_config(threshold_model, seg_data, tmp_path / "tight", attacks=["seg-fgsm-bce"]), registry)
    assert all(e["details"]["memory"]["oom_splits"] >= 1 for e in split["attacks"])
    for entry in split["attacks"] + reference["attacks"]:
        entry["details"].pop("memory", None)
        entry.pop("passes")  # more, smaller calls when split
    assert strip_volatile(split["attacks"]) == strip_volatile(reference["attacks"])
    assert strip_volatile(split["worst_case"]) == strip_volatile(reference["worst_case"])
