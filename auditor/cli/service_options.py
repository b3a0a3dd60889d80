"""``medaudit run``'s options for query-only targets: a model behind an inference service
(an ``http(s)://`` model argument) or ONNX Runtime (``--runtime onnxruntime``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from auditor.errors import UsageError
from auditor.models import is_model_url

RUNTIMES = ("onnxruntime",)
OUTPUTS = ("logits", "probabilities", "label")


@dataclass
class ServiceSettings:
    model: str | Path  # a URL stays text: a Path would fold its "//"
    model_format: str | None
    service: dict[str, Any] = field(default_factory=dict)
    url: bool = False


def service_settings(model: str, *, model_format: str | None, runtime: str | None, outputs: str | None,
                     max_queries: int | None, rate_limit: float | None, concurrency: int,
                     auth_env: str | None, auth_header_file: Path | None, request_timeout: float) -> ServiceSettings:
    """Check the options (exit 2) and sort them into the config's ``service`` dict, which
    names where credentials come from, never the credentials."""
    url = is_model_url(model)
    if runtime is not None:
        if runtime not in RUNTIMES:
            raise UsageError(f"--runtime: '{runtime}' is not {', '.join(RUNTIMES)}")
        if url or (model_format not in (None, "onnx", runtime)):
            raise UsageError("--runtime onnxruntime audits an .onnx file; it takes no URL or other --format")
        model_format = runtime
    query_only = url or runtime is not None
    if outputs is not None and outputs not in OUTPUTS:
        raise UsageError(f"--outputs: '{outputs}' is not logits, probabilities or label")
    given = {"--outputs": outputs, "--max-queries": max_queries, "--rate-limit": rate_limit,
             "--auth-env": auth_env, "--auth-header-file": auth_header_file}
    if not query_only and any(v is not None for v in given.values()) or (not query_only and concurrency != 1):
        flag = next((k for k, v in given.items() if v is not None), "--concurrency")
        raise UsageError(f"{flag} applies to a query-only target: an http(s):// model or --runtime onnxruntime")
    if not url and (rate_limit is not None or auth_env or auth_header_file or concurrency != 1):
        raise UsageError("--rate-limit, --concurrency and --auth-* apply to an http(s):// model")
    if max_queries is not None and max_queries < 1:
        raise UsageError("--max-queries must be at least 1")
    if rate_limit is not None and not rate_limit > 0:
        raise UsageError("--rate-limit must be a positive number of requests per second")
    if concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    if request_timeout <= 0:
        raise UsageError("--request-timeout must be a positive number of seconds")
    if auth_header_file is not None and not auth_header_file.is_file():
        raise UsageError(f"--auth-header-file: {auth_header_file} is not a file")
    if not url and not Path(model).exists():
        raise UsageError(f"model file {model} does not exist")
    service: dict[str, Any] = {}
    if url:
        service = {"rate_limit": rate_limit, "concurrency": concurrency, "auth_env": auth_env,
                   "auth_header_file": str(auth_header_file) if auth_header_file else None,
                   "request_timeout": request_timeout}
    return ServiceSettings(model if url else Path(model), model_format, service, url)
