"""Progress reporting boundary: the engine reports, the CLI decides how to show it.

Besides one bar per task, an audit announces its whole planned work (``plan``, in cost
units: images x forward+backward passes per image) and opens a ``share`` of it around each
step; a task opened inside a share moves the plan by the share's units as the task moves
through its total, so a front end can show one line with an ETA for the whole audit."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


class ProgressTask:
    def advance(self, n: float = 1) -> None:  # pragma: no cover - trivial
        pass


class Progress:
    """No-op progress sink; the CLI passes a Rich-backed subclass, which overrides
    ``open_task`` (one bar) and ``plan_moved`` (the whole-audit line)."""

    plan_total: float | None = None
    plan_done: float = 0.0
    _share: list[float] | None = None  # [units, spent]

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[ProgressTask]:
        with self.open_task(description, total) as inner:
            yield _PlannedTask(self, inner, total)

    @contextmanager
    def open_task(self, description: str, total: int | None) -> Iterator[ProgressTask]:
        yield ProgressTask()

    @contextmanager
    def plan(self, description: str, total_units: float) -> Iterator[None]:
        """The whole audit: ``total_units`` of planned work."""
        self.plan_total, self.plan_done = float(total_units), 0.0
        self.plan_started(description, self.plan_total)
        try:
            yield
        finally:
            self.plan_total = None

    @contextmanager
    def share(self, units: float) -> Iterator[None]:
        """The tasks opened inside spend ``units`` of the plan; what they leave is counted on exit."""
        self._share = [float(units), 0.0]
        try:
            yield
        finally:
            left = self._share[0] - self._share[1]
            self._share = None
            self.spend(left)

    def spend(self, units: float) -> None:
        if self.plan_total is None or units <= 0:
            return
        self.plan_done = min(self.plan_total, self.plan_done + units)
        self.plan_moved(self.plan_done, self.plan_total)

    def task_moved(self, fraction_of_task: float) -> None:
        """A task inside a share moved by ``fraction_of_task`` of its total."""
        if self._share is None:
            return
        units = min(self._share[0] - self._share[1], fraction_of_task * self._share[0])
        self._share[1] += units
        self.spend(units)

    def plan_started(self, description: str, total_units: float) -> None:
        """Hook: the whole-audit line appears."""

    def plan_moved(self, done: float, total: float) -> None:
        """Hook: the whole audit has ``done`` of ``total`` units behind it."""

    def note(self, message: str) -> None:
        """A one-line notice (warnings the user should see, e.g. a resumed audit)."""


class _PlannedTask(ProgressTask):
    def __init__(self, progress: Progress, inner: ProgressTask, total: int | None) -> None:
        self.progress, self.inner, self.total = progress, inner, total

    def advance(self, n: float = 1) -> None:
        self.inner.advance(n)
        if self.total:
            self.progress.task_moved(n / self.total)


class IterationTicks:
    """Moves a task by ``items`` over ``iterations`` calls: an attack's inner loop calls it
    once per iteration (``AttackContext.extra["on_iteration"]``), so a batch that takes
    minutes moves its bar; ``finish`` adds whatever the calls left (an early stop)."""

    def __init__(self, task: ProgressTask, items: int, iterations: int) -> None:
        self.task, self.items, self.step = task, float(items), float(items) / max(int(iterations), 1)
        self.moved = 0.0

    def __call__(self) -> None:
        step = min(self.step, self.items - self.moved)
        if step > 0:
            self.moved += step
            self.task.advance(step)

    def finish(self) -> None:
        if self.items - self.moved > 0:
            self.task.advance(self.items - self.moved)
        self.moved = self.items
