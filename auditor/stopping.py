"""Stopping an audit early, cleanly, at a step boundary (``--max-time``; a query budget
plugs in the same way).

An audit consults its :class:`StopRules` before each unit of work it can skip whole: an
attack x eps step, a validity check, a finishing phase (targeted attacks, a corruption
sweep, ...). Nothing is interrupted in flight, so every number that is written was
measured to the end; what did not run is listed, with the reason, and the audit's
``results.json`` says ``status: incomplete``, which ``--resume`` continues.

API (for a new rule, e.g. ``--max-queries``):

* Subclass :class:`StopRule`: give it a ``name`` (the flag, e.g. ``"max-time"``), implement
  ``reason()``, returning ``None`` while the audit may go on and a one-line reason once it
  must stop ("--max-time 20m spent (1204 s)"); ``start()`` is called once when the audit's
  first step is about to run (reset clocks there); ``describe()`` is what
  ``results.json``'s ``incomplete.rules`` records about the rule.
* The audit skeleton builds its rules in ``AuditSkeleton.stop_rules()``: append yours
  there (it has the audit's ``config`` and ``counter``, the pass counter a query budget
  would read).
* Work that can be skipped asks ``rules.check(label)`` before it starts: ``False`` means
  go on; ``True`` means skip it (the label is added to ``not_run``). The first rule to
  give a reason latches it: every later ``check`` is ``True`` too, so an audit never
  resumes work after skipping some (the cascade and the summaries assume the order).
  Code outside the engine (the checks) receives the rules duck-typed, as ``audit.stop``.
"""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from typing import Any, Callable

from auditor.errors import UsageError

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NUMBER = r"\d+(?:\.\d+)?"
_PART = re.compile(rf"({_NUMBER})([smhd])")


def parse_duration(text: str, option: str = "--max-time") -> float:
    """``"90s"``, ``"20m"``, ``"2h"``, ``"1h30m"`` or a plain number of seconds -> seconds."""
    raw = str(text).strip().lower().replace(" ", "")
    if re.fullmatch(_NUMBER, raw):
        total = float(raw)
    elif re.fullmatch(rf"(?:{_NUMBER}[smhd])+", raw):
        total = sum(float(number) * _UNITS[unit] for number, unit in _PART.findall(raw))
    else:
        raise UsageError(f"{option}: '{text}' is not a duration (e.g. 90s, 20m, 2h, 1h30m)")
    if not total > 0:
        raise UsageError(f"{option}: '{text}' must be longer than 0 s")
    return total


def format_duration(seconds: float) -> str:
    """Seconds as the user would write them: ``20m``, ``1h30m``, ``90s``, ``0.5s``."""
    if seconds < 60 and seconds != int(seconds):
        return f"{seconds:g}s"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return "".join(parts) or "0s"


class StopRule(ABC):
    """One reason an audit may stop early. See the module docstring."""

    name = "stop"

    def start(self) -> None:
        """The audit is about to run its first step."""

    @abstractmethod
    def reason(self) -> str | None:
        """``None`` while the audit may go on, else why it must stop (one line)."""

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


class TimeLimit(StopRule):
    """``--max-time``: stop before the next step once ``seconds`` of wall time are spent,
    counted from ``start()``. A step already running finishes: the audit may overrun the
    limit by up to one step (the plan, ``--plan``, says how long steps take)."""

    name = "max-time"

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = float(seconds)
        self.clock = clock
        self.started = clock()

    def start(self) -> None:
        self.started = self.clock()

    def elapsed(self) -> float:
        return self.clock() - self.started

    def reason(self) -> str | None:
        spent = self.elapsed()
        if spent < self.seconds:
            return None
        return f"--max-time {format_duration(self.seconds)} spent ({spent:.0f} s)"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "seconds": self.seconds, "elapsed_s": self.elapsed()}


class StopRules:
    """The rules of one audit, consulted at every step boundary; latched once one fires."""

    def __init__(self, rules: list[StopRule] | None = None) -> None:
        self.rules = list(rules or [])
        self.reason: str | None = None
        self.rule: str | None = None
        self.not_run: list[str] = []

    def __bool__(self) -> bool:
        return bool(self.rules)

    def start(self) -> None:
        for rule in self.rules:
            rule.start()

    @property
    def stopped(self) -> bool:
        return self.reason is not None

    def check(self, label: str) -> bool:
        """``True``: skip the work named ``label`` (recorded as not run); ``False``: go on."""
        if self.reason is None:
            for rule in self.rules:
                why = rule.reason()
                if why:
                    self.reason, self.rule = why, rule.name
                    break
        if self.reason is None:
            return False
        self.not_run.append(label)
        return True

    def block(self) -> dict[str, Any]:
        """``results.json``'s ``incomplete`` block: why, what did not run, the rules."""
        return {"reason": self.reason, "rule": self.rule, "not_run": list(self.not_run),
                "rules": [r.describe() for r in self.rules]}
