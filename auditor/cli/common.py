"""Shared CLI plumbing: one-line errors with documented exit codes, Rich progress."""

from __future__ import annotations

import functools
import os
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

import typer
from rich.console import Console
from typer.core import TyperGroup

try:  # typer vendors click since 0.2x; older releases depend on click itself
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - depends on the installed typer
    from click.exceptions import ClickException

from auditor.errors import EXIT_INTERNAL, MedauditError
from auditor.progress import Progress, ProgressTask

F = TypeVar("F", bound=Callable[..., Any])

err_console = Console(stderr=True)


def fail(message: str, code: int) -> "typer.Exit":
    # markup=False: file names and data strings must print verbatim
    err_console.print(f"medaudit: error: {message}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(code)


def handle_errors(func: F) -> F:
    """User errors become one line on stderr and their exit code; bugs become exit 4."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except MedauditError as exc:
            raise fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, exc.exit_code) from None
        except KeyboardInterrupt:
            raise fail("interrupted; rerun with --resume to continue", 130) from None
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
    """Progress bars on stderr; silent with ``--quiet``."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[ProgressTask]:
        if self.quiet:
            yield ProgressTask()
            return
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RP, SpinnerColumn,
                                   TextColumn, TimeElapsedColumn, TimeRemainingColumn)

        columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn()]
        with RP(*columns, console=err_console, transient=False) as rp:
            task_id = rp.add_task(description, total=total)
            yield _RichTask(rp, task_id)
            if total is None:
                rp.update(task_id, total=1, completed=1)

    def note(self, message: str) -> None:
        if not self.quiet:
            err_console.print(f"medaudit: {message}", markup=False, highlight=False)
