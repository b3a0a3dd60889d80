"""Progress reporting boundary: the engine reports, the CLI decides how to show it."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


class ProgressTask:
    def advance(self, n: int = 1) -> None:  # pragma: no cover - trivial
        pass


class Progress:
    """No-op progress sink; the CLI passes a Rich-backed subclass."""

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[ProgressTask]:
        yield ProgressTask()

    def note(self, message: str) -> None:
        """A one-line notice (warnings the user should see, e.g. a resumed audit)."""
