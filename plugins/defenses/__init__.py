"""Built-in defenses plugin."""

from auditor.hookspecs import hookimpl


@hookimpl
def medaudit_register_defenses(register):
    """No built-in defenses yet (the defenses issue adds them)."""
