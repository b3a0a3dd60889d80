"""Progress inside long steps and an ETA for the whole audit: every step's bar moves per
batch and, for iterative attacks, per iteration; the whole-audit plan reaches its total
exactly once every step (resumed or run) has spent its share; the terminal shows the line."""

from __future__ import annotations

import io
from contextlib import contextmanager
from typing import Iterator

import pytest
from rich.console import Console

from auditor.audit import run_audit
from auditor.progress import Progress, ProgressTask
from tests.segmentation.conftest import seg_config


class Recorder(Progress):
    """Keeps every advance of every task and every move of the whole-audit plan."""

    def __init__(self) -> None:
        self.advances: dict[str, list[float]] = {}
        self.totals: dict[str, int | None] = {}
        self.moves: list[tuple[float, float]] = []

    @contextmanager
    def open_task(self, description: str, total: int | None) -> Iterator[ProgressTask]:
        steps = self.advances.setdefault(description, [])
        self.totals[description] = total

        class Task(ProgressTask):
            def advance(self, n: float = 1) -> None:
                steps.append(n)

        yield Task()

    def plan_moved(self, done: float, total: float) -> None:
        self.moves.append((done, total))


@pytest.fixture
def recorded(threshold_model, seg_data, tmp_path, registry) -> Recorder:
    progress = Recorder()
    config = seg_config(threshold_model, seg_data, tmp_path / "out", attacks=["seg-fgsm-dice", "seg-pgd-dice"],
                        batch_size=2)
    run_audit(config, registry, progress=progress)
    return progress


def test_steps_advance_per_batch_and_per_iteration(recorded):
    fgsm, pgd = recorded.advances["seg-fgsm-dice eps=8/255"], recorded.advances["seg-pgd-dice eps=8/255"]
    assert sum(fgsm) == pytest.approx(4) and len(fgsm) >= 2  # 4 images in batches of 2
    # quick PGD: 10 steps per batch of 2 images, so 20 moves of 0.2 images
    assert sum(pgd) == pytest.approx(4) and len(pgd) >= 20
    assert recorded.advances["clean pass"] == [2, 2]


def test_the_whole_audit_plan_reaches_its_total(recorded):
    done = [d for d, _ in recorded.moves]
    total = recorded.moves[-1][1]
    assert done == sorted(done) and done[-1] == pytest.approx(total)
    assert len(done) > 40  # it moves inside the steps, not once per step
    # the PGD steps (10 passes per image) weigh ten times the FGSM ones in the plan
    assert total > 4 * (2 * 10 + 2 * 1)


def test_the_terminal_shows_one_line_for_the_whole_audit(monkeypatch):
    import auditor.cli.common as common

    buffer = io.StringIO()
    monkeypatch.setattr(common, "err_console", Console(file=buffer, width=120, force_terminal=False))
    progress = common.RichProgress()
    with progress.plan("whole audit", 30):
        with progress.share(10):
            with progress.task("clean pass", 2) as task:
                task.advance(2)
        with progress.share(20):
            with progress.task("pgd eps=8/255", 4) as task:
                task.advance(1)
                task.advance(3)
    text = buffer.getvalue()
    assert "whole audit" in text and "30/30" in text
    assert "clean pass: done in" in text and "pgd eps=8/255: done in" in text
