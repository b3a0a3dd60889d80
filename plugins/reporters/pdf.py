"""``pdf``: report.pdf, the same HTML laid out for print by WeasyPrint (CSS ``@page``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from auditor.errors import InputError, MedauditError
from auditor.interfaces import ReportOptions
from auditor.results import file_mode
from plugins.reporters.html import HtmlReporter
from report_templates import TEMPLATE_DIR

SYSTEM_PACKAGES = "libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz0b libfontconfig1"


class RemoteFetchRefused(ValueError):
    """Raised by the fetcher for any URL that is not data: or a packaged template file."""


def _packaged_file(url: str) -> bool:
    """A file: URL naming a file inside the built-in template folder (fonts, say), symlinks
    resolved first so a link planted there cannot point elsewhere."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):  # file://server/share is a network fetch
        return False
    path = Path(url2pathname(unquote(parts.path))).resolve()
    return path.is_relative_to(TEMPLATE_DIR.resolve())


def check_url(url: str) -> None:
    """A report must never reach the network or the auditor's files while it renders.

    Its images are data: URIs made by medaudit's own plots, so those are fetched, as are
    files packaged with the templates; anything else (http, a file elsewhere, such as one
    a hostile results.json or template names) raises, and WeasyPrint logs it and skips it."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "data" or (scheme == "file" and _packaged_file(url)):
        return
    raise RemoteFetchRefused(f"medaudit reports fetch only data: URIs and their packaged files, not {url[:80]}")


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
