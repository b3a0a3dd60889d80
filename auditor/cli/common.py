"""Shared CLI plumbing: one-line errors with documented exit codes, Rich progress."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import re
import signal
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

try:  # typer vendors click since 0.2x; older releases depend on click itself
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - depends on the installed typer
    from click.exceptions import ClickException

from auditor.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_TERMINATED, MedauditError
from auditor.progress import Progress, ProgressTask

F = TypeVar("F", bound=Callable[..., Any])

err_console = Console(stderr=True)


# C0 and C1 controls (ESC starts the sequences that recolour, move or retitle a terminal;
# a newline forges a second message), DEL, and the Unicode line separators and
# bidirectional overrides that reorder what is shown. Everything else prints as it is.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` for one terminal line: control characters written as Python escapes (\\x1b, \\n)."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def fail(message: str, code: int) -> "typer.Exit":
    # markup=False: file names and data strings print verbatim, minus their control characters
    err_console.print(f"medaudit: error: {printable(message)}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(code)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program happens to be, so that it unwinds like Ctrl-C:
    finally blocks run, the --out lock is released, results.json stays resumable."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


@contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread (medaudit called from an application): its business
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def handle_errors(func: F) -> F:
    """User errors become one line on stderr and their exit code; bugs become exit 4."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with _sigterm_unwinds():
                return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except MedauditError as exc:
            # the whole message: a newline in it comes from a file name, not from a traceback
            raise fail(str(exc) or type(exc).__name__, exc.exit_code) from None
        except Terminated:
            raise fail("terminated (SIGTERM); rerun with --resume to continue", EXIT_TERMINATED) from None
        except KeyboardInterrupt:
            raise fail("interrupted; rerun with --resume to continue", EXIT_INTERRUPTED) from None
        except MemoryError:
            raise fail("out of memory; lower --batch-size", EXIT_INTERNAL) from None
        except Exception as exc:  # noqa: BLE001 - the last line of defence
            if os.environ.get("MEDAUDIT_DEBUG"):
                raise
            first = (str(exc).splitlines() or [""])[0]
            from auditor.models import is_out_of_memory

            if is_out_of_memory(exc):  # outside an attack step, where batches are not split
                raise fail(f"out of GPU memory ({first}); lower --batch-size or --input-size, or use --device cpu",
                           EXIT_INTERNAL) from None
            raise fail(
                f"internal error: {type(exc).__name__}: {first} (set MEDAUDIT_DEBUG=1 for a traceback)",
                EXIT_INTERNAL,
            ) from None

    return wrapper  # type: ignore[return-value]


@contextmanager
def _usage_errors_on_one_line() -> Iterator[None]:
    try:
        yield
    except ClickException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `medaudit`: the help is the answer
            raise
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        first = (exc.format_message().splitlines() or [type(exc).__name__])[0].rstrip(".")
        raise fail(first + hint, exc.exit_code) from None


class OneLineErrorsGroup(TyperGroup):
    """Click's own usage errors (a missing option, 'abc' for a number) as one line and exit
    code 2, like medaudit's errors, instead of a usage box: scripts and CI logs read both
    the same way."""

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        with _usage_errors_on_one_line():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: Any) -> Any:
        with _usage_errors_on_one_line():
            return super().invoke(ctx)


class _RichTask(ProgressTask):
    def __init__(self, progress: Any, task_id: Any) -> None:
        self.progress, self.task_id = progress, task_id

    def advance(self, n: int = 1) -> None:
        self.progress.advance(self.task_id, n)


class RichProgress(Progress):
    """Progress bars on stderr; silent with ``--quiet``. While an audit's plan is open, one
    live display holds the whole-audit line (its ETA) above the current task's bar; a
    finished task leaves a line of its own."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self._live: Any = None  # the rich Progress of an open plan
        self._overall: Any = None

    @staticmethod
    def _bars() -> Any:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RP, SpinnerColumn,
                                   TextColumn, TimeElapsedColumn, TimeRemainingColumn)

        return RP(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=err_console, transient=False)

    @contextmanager
    def open_task(self, description: str, total: int | None) -> Iterator[ProgressTask]:
        if self.quiet:
            yield ProgressTask()
            return
        # the description names attacks and files: neither markup nor terminal controls
        label = escape(printable(description))
        if self._live is not None:
            rp = self._live
            task_id = rp.add_task(label, total=total)
            try:
                yield _RichTask(rp, task_id)
            finally:
                seconds = rp.tasks[[t.id for t in rp.tasks].index(task_id)].elapsed or 0.0
                rp.remove_task(task_id)
                rp.console.print(f"{label}: done in {seconds:.0f} s", highlight=False)
            return
        with self._bars() as rp:
            task_id = rp.add_task(label, total=total)
            yield _RichTask(rp, task_id)
            if total is None:
                rp.update(task_id, total=1, completed=1)

    @contextmanager
    def plan(self, description: str, total_units: float) -> Iterator[None]:
        if self.quiet:
            with super().plan(description, total_units):
                yield
            return
        with self._bars() as rp:
            self._live = rp
            try:
                with super().plan(description, total_units):
                    yield
            finally:
                self._live = self._overall = None

    def plan_started(self, description: str, total_units: float) -> None:
        if self._live is not None:
            # units are images x passes: the bar shows a percentage, the ETA is the point
            self._overall = self._live.add_task(f"{escape(printable(description))} (planned work units)",
                                                total=max(total_units, 1e-9))

    def plan_moved(self, done: float, total: float) -> None:
        if self._live is not None and self._overall is not None:
            self._live.update(self._overall, completed=done)

    def note(self, message: str) -> None:
        if not self.quiet:
            # soft_wrap: one line per note, as for errors; a wrapped path reads as two
            err_console.print(f"medaudit: {printable(message)}", markup=False, highlight=False, soft_wrap=True)


@contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """While the block runs, everything written to stdout goes to stderr, so that stdout
    carries the ``--json`` answer alone. At the file-descriptor level: TorchScript's print
    (``prim::Print``) and C++ code write to fd 1 directly, past ``sys.stdout``."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no usable fd 1 (closed by whoever started us): nothing to keep clean
        saved = None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        _flush_c_stdio()  # a fully buffered C stdout (a pipe) would otherwise empty itself into the JSON later
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


def _flush_c_stdio() -> None:
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # no C library to reach (not Linux/macOS): nothing buffered there
        pass
