"""``--model-timeout``: a model call that never returns ends the audit instead of hanging it.

A hostile or broken model can loop forever inside one forward pass, where no exception
can reach it. A watchdog thread watches the call in flight (:func:`model_call`, entered
by :func:`auditor.models.call_model`) and, past the deadline, prints one line and ends
the process with exit code 3. ``results.json`` is rewritten atomically after every
attack x eps step, so what was finished stays resumable with ``--resume``.

The watchdog needs the GIL for a moment: Python loops and TorchScript (which releases the
GIL while it runs) are caught; a C extension that spins while holding the GIL is not.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from auditor.errors import EXIT_BAD_INPUT


class _Watchdog:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._cond = threading.Condition()
        self._started: float | None = None  # monotonic start of the outermost call in flight
        self._depth = 0  # wrappers call call_model on the model they wrap
        self._stopped = False
        self._thread = threading.Thread(target=self._watch, name="medaudit-model-timeout", daemon=True)
        self._thread.start()

    def enter(self) -> None:
        # No notify: the watcher wakes at least every `seconds` and measures from the
        # start of the call it finds, so it fires on time without a wake-up per call.
        with self._cond:
            if self._depth == 0:
                self._started = time.monotonic()
            self._depth += 1

    def leave(self) -> None:
        with self._cond:
            self._depth -= 1
            if self._depth == 0:
                self._started = None

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join()

    def _watch(self) -> None:
        with self._cond:
            while not self._stopped:
                if self._started is None:
                    self._cond.wait(self.seconds)
                    continue
                remaining = self._started + self.seconds - time.monotonic()
                if remaining <= 0:
                    self._fire()
                self._cond.wait(remaining)

    def _fire(self) -> None:
        sys.stdout.flush()
        sys.stderr.write(f"medaudit: error: a model call did not return within {self.seconds:g} s "
                         "(--model-timeout); results.json keeps the finished steps: rerun with --resume "
                         "(and a larger --model-timeout, or 0 for none) to continue\n")
        sys.stderr.flush()
        os._exit(EXIT_BAD_INPUT)  # the hung call cannot be interrupted; end the whole process


_active: _Watchdog | None = None


@contextmanager
def model_timeout(seconds: float | None) -> Iterator[None]:
    """Within this block, any one model call lasting longer than ``seconds`` ends the
    process with exit code 3. ``None`` or 0: no limit."""
    global _active
    if not seconds or seconds <= 0 or _active is not None:
        yield
        return
    _active = _Watchdog(float(seconds))
    try:
        yield
    finally:
        watchdog, _active = _active, None
        watchdog.stop()


@contextmanager
def model_call() -> Iterator[None]:
    """Around one call into the model's own code."""
    watchdog = _active
    if watchdog is None:
        yield
        return
    watchdog.enter()
    try:
        yield
    finally:
        watchdog.leave()
