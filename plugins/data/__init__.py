"""Built-in data plugin."""

from auditor.hookspecs import hookimpl
