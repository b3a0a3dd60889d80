"""``pdf``: report.pdf, the same HTML laid out for print by WeasyPrint (CSS ``@page``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, ClassVar

from auditor.errors import InputError, MedauditError
from auditor.interfaces import ReportOptions
from auditor.results import file_mode
from plugins.reporters.html import HtmlReporter

SYSTEM_PACKAGES = "libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz0b libfontconfig1"


class RemoteFetchRefused(ValueError):
    """Raised by the fetcher for any URL that is not data: or a local file."""


def check_url(url: str) -> None:
    """A report must never reach the network while it renders: only data: URIs and local
    files are fetched, anything else raises (WeasyPrint then skips the resource)."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme not in ("data", "file"):
        raise RemoteFetchRefused(f"medaudit reports do not fetch remote resources: {url[:80]}")


def _weasyprint() -> Any:
    try:
        import weasyprint
    except OSError as exc:  # cffi could not dlopen pango & co.
        raise MedauditError(
            f"cannot write the PDF report: WeasyPrint's system libraries are missing ({exc}); "
            f"install them with: apt-get install {SYSTEM_PACKAGES} (the HTML report is still written)"
        ) from None
    except ImportError as exc:
        raise MedauditError(f"cannot write the PDF report: {exc}; pip install weasyprint") from None
    return weasyprint


def local_only_fetcher(weasyprint: Any) -> Any:
    """A fetcher for this WeasyPrint: a ``URLFetcher`` subclass (v66+) or a function (older)."""
    urls = weasyprint.urls
    if hasattr(urls, "URLFetcher"):

        class LocalOnlyFetcher(urls.URLFetcher):
            def fetch(self, url: str, headers: Any = None) -> Any:
                check_url(url)
                return super().fetch(url, headers)

        return LocalOnlyFetcher()

    def fetch(url: str, timeout: int = 10, ssl_context: Any = None) -> Any:
        check_url(url)
        return urls.default_url_fetcher(url, timeout=timeout, ssl_context=ssl_context)

    return fetch


class PdfReporter(HtmlReporter):
    name: ClassVar[str] = "pdf"
    filename: ClassVar[str] = "report.pdf"
    description: ClassVar[str] = "print-ready PDF (WeasyPrint): cover, running header, page numbers, vector figures"

    def render(self, results: dict[str, Any], out_dir: Path, options: ReportOptions) -> Path:
        weasyprint = _weasyprint()
        html = self.html(results, options)
        document = weasyprint.HTML(string=html, base_url=str(Path(out_dir).resolve()),
                                   url_fetcher=local_only_fetcher(weasyprint), media_type="print")
        path = Path(out_dir) / self.filename
        # Write beside the target and rename, like results.json: no half-written PDF.
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.filename}.", suffix=".tmp", dir=path.parent)
        except OSError as exc:
            raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
        os.fchmod(fd, file_mode())
        os.close(fd)
        try:
            document.write_pdf(tmp)
            os.replace(tmp, path)
        except OSError as exc:
            raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path
