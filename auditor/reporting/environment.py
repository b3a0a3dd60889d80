"""The jinja2 environment shared by the HTML and PDF reporters and ``medaudit compare``.

Autoescaping is on for every template whatever its name: class names, file paths and
plugin metadata in ``results.json`` come from users and third parties and must reach
the page as text. Only the SVG figures (escaped by matplotlib) are marked safe.

Templates run in jinja2's immutable sandbox, built-ins and ``--template-dir`` ones alike:
a template from a branding folder someone handed over is not trusted code, so it may read
the report context but not reach Python internals (``''.__class__.__mro__``), call
methods that change data, or read files outside the template folders. The sandbox does
not bound time or memory: a template can still loop for long.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any, Iterable

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from auditor.errors import InputError, UsageError
from auditor.reporting.context import build_context
from auditor.reporting.filters import FILTERS
from auditor.reporting.transfer_view import TRANSFER_KIND, TRANSFER_TEMPLATE, transfer_context
from report_templates import MAIN_TEMPLATE, TEMPLATE_DIR


def package_dir(package: str) -> Path:
    """The folder of an importable package holding a plugin's templates."""
    try:
        return Path(str(importlib.resources.files(package)))
    except (ModuleNotFoundError, TypeError) as exc:
        raise UsageError(f"template package '{package}' cannot be imported: {exc}") from None


def make_loader(template_dirs: Iterable[Path] = (), packages: Iterable[str] = ()) -> jinja2.BaseLoader:
    """User folders first, then plugin template packages, then the built-ins; the built-ins
    also answer under ``builtin/`` so an override can extend the template it replaces."""
    user = []
    for folder in template_dirs:
        folder = Path(folder)
        if not folder.is_dir():
            raise UsageError(f"--template-dir: {folder} is not a folder")
        user.append(jinja2.FileSystemLoader(str(folder)))
    plugin = [jinja2.FileSystemLoader(str(package_dir(p))) for p in packages]
    builtin = jinja2.FileSystemLoader(str(TEMPLATE_DIR))
    return jinja2.ChoiceLoader([*user, *plugin, builtin, jinja2.PrefixLoader({"builtin": builtin})])


class ReportSandbox(ImmutableSandboxedEnvironment):
    """The stock sandbox turns an unsafe attribute into an undefined value that renders as
    nothing; here it is an error, so a template that tries is refused, not half-rendered."""

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        raise SecurityError(f"access to attribute {attribute!r} of a {type(obj).__name__} object is not allowed")


def make_environment(template_dirs: Iterable[Path] = (), packages: Iterable[str] = ()) -> jinja2.Environment:
    env = ReportSandbox(
        loader=make_loader(template_dirs, packages),
        autoescape=True,  # every template, not only *.html: ours end in .jinja
        undefined=jinja2.ChainableUndefined,  # a missing optional key renders empty, never raises
        # no trim_blocks: the newline after a tag is the space between two sentences
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(FILTERS)
    return env


def render_template(template: str, template_dirs: Iterable[Path] = (), **context: Any) -> str:
    """Any built-in page (e.g. ``compare.html.jinja``) in the same sandbox, filters and CSS."""
    return _render(make_environment(template_dirs), template, context)


def render_html(results: dict[str, Any], template_dirs: Iterable[Path] = (), packages: Iterable[str] = (),
                rendered_at: str | None = None, template: str = MAIN_TEMPLATE) -> str:
    """The report as one self-contained HTML string."""
    if isinstance(results, dict) and results.get("kind") == TRANSFER_KIND:  # `medaudit transfer`: its own page
        return _render(make_environment(template_dirs, packages), TRANSFER_TEMPLATE,
                       transfer_context(results, rendered_at))
    return _render(make_environment(template_dirs, packages), template, build_context(results, rendered_at))


def _render(env: jinja2.Environment, template: str, context: dict[str, Any]) -> str:
    try:
        return env.get_template(template).render(**context)
    except SecurityError as exc:
        raise InputError(f"report template refused by the sandbox: {exc}") from None
    except jinja2.TemplateSyntaxError as exc:
        raise InputError(f"report template {exc.filename or exc.name}:{exc.lineno}: {exc.message}") from None
    except jinja2.TemplateNotFound as exc:
        raise InputError(f"report template not found: {exc.name}") from None
    except jinja2.TemplateError as exc:
        # A broken --template-dir override fails at render time, after a long audit:
        # a one-line error (results.json is already written) instead of a traceback.
        raise InputError(f"report template error: {exc}") from None
