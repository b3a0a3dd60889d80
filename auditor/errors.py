"""The one error type users can cause, and the exit codes the CLI maps it to.

Exit codes (documented in the README and in ``medaudit --help``):

* 0 - success
* 1 - an acceptance gate failed (``--fail-under``) or ``compare`` found a regression
* 2 - usage error (bad flag, bad option value)
* 3 - bad model, data or input file
* 4 - internal error (a bug in medaudit or a plugin)
* 5 - the audit stopped early (``--max-time``): results.json says ``status: incomplete`` and
  which steps did not run; the reports are written and say so; ``--resume`` continues
* 130 - interrupted (Ctrl-C, SIGINT); 143 - terminated (SIGTERM). Both leave results.json
  as it was after the last finished step, so ``--resume`` continues.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_USAGE = 2
EXIT_BAD_INPUT = 3
EXIT_INTERNAL = 4
EXIT_INCOMPLETE = 5  # stopped at a step boundary by a stop rule (auditor.stopping)
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM


class MedauditError(Exception):
    """An error the user can fix. The CLI prints ``message`` on one line, no traceback."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class UsageError(MedauditError):
    """A flag or option value that does not make sense."""

    exit_code = EXIT_USAGE


class InputError(MedauditError):
    """A model, data or other input file that cannot be used."""

    exit_code = EXIT_BAD_INPUT


class PluginError(MedauditError):
    """A plugin that cannot be loaded or that clashes with another one."""

    exit_code = EXIT_USAGE
