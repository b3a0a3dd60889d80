"""Built-in report templates (jinja2, autoescaped) and their CSS.

One template set renders both the self-contained ``report.html`` and, through
WeasyPrint, ``report.pdf``; all print layout is CSS ``@page`` rules in ``css/print.css``.

Overriding, from the finest to the coarsest:

* one section: a ``report.html.jinja`` in your ``--template-dir`` that reads
  ``{% extends "base.html.jinja" %}`` and redefines a block (``cover``, ``summary``,
  ``recommendation``, ``scope``, ``model_data``, ``results``, ``gallery``, ``defenses``,
  ``regulatory``, ``validity``, ``appendix``, ``extra_css``);
* one partial: a file with the same relative path, e.g. ``partials/cover.html.jinja``,
  or the stylesheet ``css/report.css``;
* the whole layout: your own ``base.html.jinja``; the built-in stays reachable as
  ``builtin/base.html.jinja``.

Search order (a jinja2 ``ChoiceLoader``): ``--template-dir`` folders, then the reporter
plugin's ``template_package``, then this folder.

Every template renders in jinja2's immutable sandbox (see
:mod:`auditor.reporting.environment`): an override reads the report context, nothing more.
Values that land in a ``style`` attribute or a URL must come through the report context's
validation (``css_colour``, base64 images); the PDF fetches only ``data:`` URIs and files
inside this folder, so fonts for an override belong here or inline as ``data:`` URIs.
"""

from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parent
MAIN_TEMPLATE = "report.html.jinja"
