"""Built-in models plugin."""

from auditor.hookspecs import hookimpl
