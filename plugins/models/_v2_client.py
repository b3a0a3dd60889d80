"""A small HTTP(S) client for the Open Inference Protocol (KServe v2 REST), standard library
only: keep-alive connections (one per worker thread), a request rate limit, K requests in
flight, retries with exponential backoff and full jitter on timeouts, dropped connections,
429 and 5xx. Credentials are headers sent to the target host only: redirects are never
followed, and no message this module raises quotes a header, a body or the URL's query."""

from __future__ import annotations

import http.client
import json
import random
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from auditor.errors import InputError, UsageError

RETRY_STATUSES = frozenset({408, 429})  # plus every 5xx
MAX_ERROR_TEXT = 160
MAX_BACKOFF_S = 10.0


class ServiceUnavailable(InputError):
    """The service did not answer after every retry (exit 3; ``--resume`` continues)."""


@dataclass
class ClientOptions:
    timeout_s: float = 60.0
    retries: int = 6
    backoff_s: float = 0.1  # first retry waits up to this; doubles per try, capped at MAX_BACKOFF_S
    rate_limit: float | None = None  # requests per second, all threads together
    concurrency: int = 1  # requests in flight
    headers: dict[str, str] = field(default_factory=dict, repr=False)  # secrets: never printed


@dataclass
class Endpoint:
    scheme: str
    host: str
    port: int
    model_path: str  # /v2/models/NAME[/versions/V]
    name: str

    @property
    def where(self) -> str:
        """How messages name the service: scheme, host and port, nothing secret."""
        return f"{self.scheme}://{self.host}:{self.port}"


def is_url(text: object) -> bool:
    return str(text).lower().startswith(("http://", "https://"))


def parse_endpoint(url: str) -> Endpoint:
    """``http(s)://host[:port]/v2/models/NAME[/versions/V]``."""
    parts = urlsplit(str(url))
    if parts.username is not None or parts.password is not None:
        # never echo the URL: it holds the credential
        raise UsageError("the model URL holds a user name or password; pass credentials with --auth-env "
                         "or --auth-header-file (they are then sent to that host only)")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError("the model URL must be http(s)://host[:port]/v2/models/NAME")
    if parts.query or parts.fragment:
        raise UsageError("the model URL must not carry a query string or fragment (/v2/models/NAME only)")
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) not in (3, 5) or segments[:2] != ["v2", "models"] or (
            len(segments) == 5 and segments[3] != "versions"):
        raise UsageError(f"the model URL path '{parts.path}' is not /v2/models/NAME or "
                         "/v2/models/NAME/versions/VERSION (Open Inference Protocol)")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UsageError("the model URL has an invalid port") from None
    return Endpoint(parts.scheme, parts.hostname, port, "/" + "/".join(segments), segments[2])


class RateLimiter:
    """At most ``rate`` request starts per second, spaced evenly, across threads."""

    def __init__(self, rate: float | None, clock: Any = time.monotonic, sleep: Any = time.sleep) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self._next = 0.0
        self._lock = threading.Lock()
        self.clock, self.sleep = clock, sleep

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = self.clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            self.sleep(slot - now)


class V2Client:
    """Requests to one Open Inference Protocol endpoint; counts requests and retries."""

    def __init__(self, endpoint: Endpoint, options: ClientOptions) -> None:
        self.endpoint = endpoint
        self.options = options
        self._local = threading.local()
        self._limiter = RateLimiter(options.rate_limit)
        self._jitter = random.Random()  # own generator: the attacks' seeded ones stay untouched
        self._lock = threading.Lock()
        self.requests = 0
        self.retries = 0
        self._tls = ssl.create_default_context() if endpoint.scheme == "https" else None  # verifies certificates
        self._pool = ThreadPoolExecutor(options.concurrency, "medaudit-v2") if options.concurrency > 1 else None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    def map(self, func: Any, items: list[Any]) -> list[Any]:
        """``func`` over ``items`` with up to ``concurrency`` requests in flight, in order."""
        if self._pool is None or len(items) < 2:
            return [func(item) for item in items]
        return list(self._pool.map(func, items))

    # ----------------------------------------------------------------- transport
    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            ep, timeout = self.endpoint, self.options.timeout_s
            conn = (http.client.HTTPSConnection(ep.host, ep.port, timeout=timeout, context=self._tls)
                    if ep.scheme == "https" else http.client.HTTPConnection(ep.host, ep.port, timeout=timeout))
            self._local.conn = conn
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def _once(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes, str | None]:
        headers = {"Accept": "application/json", **self.options.headers}
        if body is not None:
            headers["Content-Type"] = "application/json"
        conn = self._connection()
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        if response.getheader("Connection", "").lower() == "close":
            self._drop_connection()
        return response.status, data, response.getheader("Retry-After")

    def request(self, method: str, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        """One call, retried on transient failures; the parsed JSON object it answered."""
        body = json.dumps(payload, separators=(",", ":")).encode() if payload is not None else None
        last = "no answer"
        for attempt in range(self.options.retries + 1):
            if attempt:
                with self._lock:
                    self.retries += 1
                self._backoff(attempt, last)
            self._limiter.wait()
            with self._lock:
                self.requests += 1
            try:
                status, data, retry_after = self._once(method, path, body)
            except ssl.SSLCertVerificationError as exc:
                self._drop_connection()
                raise InputError(f"TLS certificate of {self.endpoint.where} not trusted ({exc.verify_message}); "
                                 "point SSL_CERT_FILE at the CA bundle that signed it") from None
            except (OSError, http.client.HTTPException) as exc:  # timeouts, refused or dropped connections
                self._drop_connection()
                last = type(exc).__name__
                continue
            if status == 200:
                return self._json(data)
            if status in RETRY_STATUSES or 500 <= status < 600:
                last = f"HTTP {status}"
                self._retry_after = _seconds(retry_after)
                continue
            raise self._refusal(status, data)
        raise ServiceUnavailable(
            f"the inference service at {self.endpoint.where} did not answer after {self.options.retries + 1} tries "
            f"(last: {last}); results.json keeps the finished steps: rerun with --resume when it is back")

    _retry_after: float | None = None

    def _backoff(self, attempt: int, last: str) -> None:
        """Full jitter: uniform in [0, base * 2^attempt], capped; a Retry-After the service
        sent (429/503) is honoured when longer, up to the same cap."""
        ceiling = min(MAX_BACKOFF_S, self.options.backoff_s * (2 ** (attempt - 1)))
        wait = self._jitter.uniform(0, ceiling)
        hinted, self._retry_after = self._retry_after, None
        if hinted is not None:
            wait = max(wait, min(hinted, MAX_BACKOFF_S))
        time.sleep(wait)

    def _json(self, data: bytes) -> dict[str, Any]:
        try:
            value = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise InputError(f"the inference service at {self.endpoint.where} answered with a body that is not "
                             "JSON") from None
        if not isinstance(value, dict):
            raise InputError(f"the inference service at {self.endpoint.where} answered with JSON "
                             f"{type(value).__name__}, not an object")
        return value

    def _refusal(self, status: int, data: bytes) -> InputError:
        where = self.endpoint.where
        if 300 <= status < 400:
            return InputError(f"the inference service at {where} redirected (HTTP {status}); medaudit does not "
                              "follow redirects (credentials go to the target host only): give the final URL")
        if status in (401, 403):
            return InputError(f"the inference service at {where} refused the request (HTTP {status}); check the "
                              "credentials given with --auth-env or --auth-header-file")
        if status == 404:
            return InputError(f"the inference service at {where} has no model at {self.endpoint.model_path} "
                              "(HTTP 404)")
        return InputError(f"the inference service at {where} refused the request (HTTP {status}): "
                          f"{_server_error(data)}")


def _seconds(value: str | None) -> float | None:
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 0 else None


def _server_error(data: bytes) -> str:
    """The service's own error text, short and printable (it is not ours to trust)."""
    try:
        text = str(json.loads(data).get("error", ""))
    except (ValueError, AttributeError, UnicodeDecodeError):
        text = data[:MAX_ERROR_TEXT].decode("utf-8", "replace")
    text = "".join(c if c.isprintable() else "?" for c in text)[:MAX_ERROR_TEXT]
    return text or "(no message)"
