"""The report's view of ``results.json``'s ``query_target`` block: a model audited through
queries only (an inference service, an ONNX Runtime session). What the target said about
itself is the service's text, not ours: autoescaped by the template, cut short here, and
numbers that are not numbers become None (shown as n/a)."""

from __future__ import annotations

from typing import Any

from auditor.reporting.universal_view import _number

MAX_TEXT = 120
IDENTITY_LABELS = (("endpoint", "Endpoint"), ("model_name", "Model name"), ("model_versions", "Model versions"),
                   ("platform", "Platform"), ("server_name", "Server"), ("server_version", "Server version"),
                   ("runtime", "Runtime"), ("producer", "Producer"), ("input_name", "Input"),
                   ("input_datatype", "Input datatype"), ("input_layout", "Input layout"))


def _text(value: Any) -> str | None:
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value)
    return str(value)[:MAX_TEXT]


def query_target_view(results: dict[str, Any]) -> dict[str, Any] | None:
    block = results.get("query_target")
    if not isinstance(block, dict):
        return None
    identity = block.get("identity") if isinstance(block.get("identity"), dict) else {}
    usage = block.get("usage") if isinstance(block.get("usage"), dict) else {}
    queries = block.get("queries") if isinstance(block.get("queries"), dict) else {}
    fingerprint = block.get("fingerprint") if isinstance(block.get("fingerprint"), dict) else {}
    start = fingerprint.get("start") if isinstance(fingerprint.get("start"), dict) else {}
    end = fingerprint.get("end") if isinstance(fingerprint.get("end"), dict) else {}
    skipped = [{"attack": _text(s.get("attack")), "reason": _text(s.get("reason"))}
               for s in block.get("skipped_attacks") or [] if isinstance(s, dict)]
    return {
        "kind": _text(block.get("kind")) or "query-only target", "outputs": _text(block.get("outputs")),
        "identity": [(label, _text(identity.get(key))) for key, label in IDENTITY_LABELS if _text(identity.get(key))],
        "skipped": skipped,
        "images": _number(queries.get("total_images")), "attack_images": _number(queries.get("attacks_images")),
        "per_sample": _number(queries.get("per_sample_mean")), "max_queries": _number(queries.get("max_queries")),
        "requests": _number(usage.get("requests")), "retries": _number(usage.get("retries")),
        "fingerprint_start": _text(start.get("sha256")), "fingerprint_end": _text(end.get("sha256")),
        "fingerprint_match": fingerprint.get("match") if isinstance(fingerprint.get("match"), bool) else None,
        "resumed_checks": len(fingerprint.get("resumed") or []) if isinstance(fingerprint.get("resumed"), list) else 0,
    }
