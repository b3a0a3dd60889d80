"""``html``: the self-contained report.html (CSS and SVG inline, images as data: URIs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from auditor.interfaces import Reporter, ReportOptions
from auditor.results import write_atomic
from auditor.reporting.environment import render_html


class HtmlReporter(Reporter):
    """Renders the built-in template set (or a plugin's, via ``template_package``)."""

    name: ClassVar[str] = "html"
    filename: ClassVar[str] = "report.html"
    description: ClassVar[str] = "self-contained HTML report (opens offline, e.g. from an e-mail attachment)"
    template_package: ClassVar[str | None] = None

    def html(self, results: dict[str, Any], options: ReportOptions) -> str:
        packages = [self.template_package] if self.template_package else []
        return render_html(results, options.template_dirs, packages)

    def render(self, results: dict[str, Any], out_dir: Path, options: ReportOptions) -> Path:
        path = Path(out_dir) / self.filename
        write_atomic(path, self.html(results, options))
        return path
