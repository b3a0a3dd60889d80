"""The audit's metadata file (``medaudit run --metadata audit.toml``): which device the audit
is about and who owns it, for the report's cover and regulatory traceability table.

A flat TOML table of strings; every key is one of :data:`FIELDS`::

    device_name = "DermaScan AI"
    device_version = "2.1.0"
    manufacturer = "Example Medical Ltd"
    intended_use = "Decision support for melanoma triage in dermoscopy"
    intended_population = "Adults referred to dermatology clinics"
    audit_owner = "QA lead, Example Medical Ltd"

Metadata changes no number, so it is not part of the resume identity (``config_hash``).
The file is not trusted: unknown keys, values that are not strings, non-UTF-8 text, control
characters and oversized files are refused with one line (exit 3); values are stored
verbatim in ``results.json`` and reach the report through the autoescaping templates.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from auditor.errors import InputError

FIELDS: dict[str, str] = {
    "device_name": "Device name",
    "device_version": "Device version",
    "manufacturer": "Manufacturer",
    "intended_use": "Intended use",
    "intended_population": "Intended population",
    "audit_owner": "Audit owner",
}
MAX_FILE_BYTES = 64 * 1024  # six short fields; more is a wrong file, not metadata
MAX_VALUE_CHARS = 2000
# newlines and tabs belong in a multi-line intended use; other controls rewrite terminals
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _read_text(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise InputError(f"--metadata: cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise InputError(f"--metadata: {path} is larger than {MAX_FILE_BYTES // 1024} KiB; "
                         "it should hold six short text fields")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"--metadata: {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None


def _parse_toml(text: str, path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise InputError("--metadata: reading TOML needs Python 3.11 or the 'tomli' package") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"--metadata: {path} is not valid TOML ({str(exc).splitlines()[0]})") from None


def _value(key: str, value: Any, path: Path) -> str:
    if not isinstance(value, str):
        kind = "a table" if isinstance(value, dict) else "a list" if isinstance(value, list) else type(value).__name__
        raise InputError(f"--metadata: {path}: '{key}' must be a string in quotes, not {kind}")
    if len(value) > MAX_VALUE_CHARS:
        raise InputError(f"--metadata: {path}: '{key}' is longer than {MAX_VALUE_CHARS} characters")
    if _CONTROL.search(value):
        raise InputError(f"--metadata: {path}: '{key}' contains control characters; write plain text")
    return value.strip()


def load_metadata(path: Path) -> dict[str, str]:
    """The metadata in ``path``: known keys only, each a non-empty string (empty ones are
    left out, so the report says "not provided")."""
    path = Path(path)
    data = _parse_toml(_read_text(path), path)
    unknown = [key for key in data if key not in FIELDS]
    if unknown:
        raise InputError(f"--metadata: {path}: unknown key(s) {', '.join(repr(k) for k in unknown)} "
                         f"(known: {', '.join(FIELDS)})")
    values = {key: _value(key, data[key], path) for key in FIELDS if key in data}
    return {key: value for key, value in values.items() if value}


def metadata_rows(metadata: Any) -> list[dict[str, Any]]:
    """One row per field for a report: label and value (None where not provided). Anything
    but a string from a hand-edited results.json counts as not provided."""
    block = metadata if isinstance(metadata, dict) else {}
    return [{"key": key, "label": label,
             "value": block[key] if isinstance(block.get(key), str) and block[key].strip() else None}
            for key, label in FIELDS.items()]
