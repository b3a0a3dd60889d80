"""``--engine ray`` on a segmentation audit gives the local run's numbers (issue 19): the
same per-image Dice, IoU, sensitivity and missed lesions, aggregates, worst case and
gallery, with the images split over 2 workers and 3 shards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from auditor.cli import app
from tests.distributed.identity import differences, numbers
from tests.segmentation.conftest import SIZE, ThresholdSeg, save_scripted, write_seg_folders

ray = pytest.importorskip("ray")
runner = CliRunner()


@pytest.fixture(autouse=True)
def one_thread():
    """The local run at one torch thread, as the workers run: the tiny thresholding model is
    all per-op overhead, which a second OpenMP thread only adds to on a loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_ray_gives_the_local_per_image_dice(ray_address, tmp_path: Path) -> None:
    model = save_scripted(ThresholdSeg(), tmp_path / "seg.pt")
    data = write_seg_folders(tmp_path / "data", n=9)
    flags = ["run", str(model), "--data", str(data), "--task", "segmentation", "--input-size", str(SIZE),
             "--eps", "2,8", "--budget", "quick", "--attacks", "seg-pgd-bce,seg-lesion-removal,seg-square",
             "--batch-size", "4", "--check-samples", "3", "--report-format", "none", "--quiet"]
    runs = {}
    for name, extra in (("local", []), ("ray", ["--engine", "ray", "--workers", "2", "--shards", "3"])):
        result = runner.invoke(app, [*flags, "--out", str(tmp_path / name), *extra])
        assert result.exit_code == 0, result.output
        runs[name] = json.loads((tmp_path / name / "results.json").read_text())
    local, sharded = runs["local"], runs["ray"]
    assert sharded["engine"]["shards"] == 3 and sharded["engine"]["workers"] == 2
    for a, b in zip(local["attacks"], sharded["attacks"]):
        assert a["samples"]["dice"] == b["samples"]["dice"], a["attack"]  # per image, to the 6 digits recorded
        assert b["overhead"]["ratio"] > 0
    assert differences(numbers(local), numbers(sharded)) == []
    assert [g["index"] for g in sharded["gallery"]] == [g["index"] for g in local["gallery"]]
