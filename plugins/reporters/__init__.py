"""Built-in reporters: ``html`` (report.html) and ``pdf`` (report.pdf).

Both render the one template set in ``report_templates`` (see :mod:`report_templates`
for overriding a block); a third-party reporter registers through the same hook.
"""

from auditor.hookspecs import hookimpl
from plugins.reporters.html import HtmlReporter
from plugins.reporters.pdf import PdfReporter


@hookimpl
def medaudit_register_reporters(register):
    register(HtmlReporter())
    register(PdfReporter())
