"""Built-in metrics plugin."""

from auditor.hookspecs import hookimpl
