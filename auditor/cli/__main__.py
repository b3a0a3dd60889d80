"""``python -m auditor.cli``: the same as the ``medaudit`` command."""

from auditor.cli import main

main()
