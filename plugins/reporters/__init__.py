"""Built-in reporters plugin."""

from auditor.hookspecs import hookimpl
