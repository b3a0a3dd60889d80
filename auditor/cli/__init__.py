"""The ``medaudit`` command line: one module per command."""

from __future__ import annotations

import typer

from auditor import __version__
from auditor.cli.common import OneLineErrorsGroup
from auditor.cli import demo, info, report, run
from auditor.cli import harden
from auditor.cli import compare
from auditor.cli import transfer

app = typer.Typer(
    name="medaudit",
    cls=OneLineErrorsGroup,
    help=(
        "Audit the adversarial robustness of medical imaging models.\n\n"
        "Exit codes: 0 success, 1 acceptance gate failed or regression found, 2 usage error, "
        "3 bad model/data/input, 4 internal error, 5 stopped early by --max-time (incomplete, resumable), "
        "130 interrupted, 143 terminated (SIGTERM)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("run", help=run.RUN_HELP)(run.run)
app.command("demo")(demo.demo)
app.command("report", help=report.REPORT_HELP)(report.report)
app.command("plugins")(info.plugins)
app.command("modalities")(info.modalities)
app.command("compare", help=compare.COMPARE_HELP)(compare.compare)
app.command("harden", help=harden.HARDEN_HELP)(harden.harden)
app.command("transfer", help=transfer.TRANSFER_HELP)(transfer.transfer)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"medaudit {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """medaudit: adversarial robustness audits for medical imaging models."""


def main() -> None:
    import sys

    from auditor import sandbox

    sandbox.remember_argv(sys.argv[1:], "auditor.cli:main")  # `run` re-executes these in a sandboxed child
    app()

