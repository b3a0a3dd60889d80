"""The Open Inference Protocol client against hostile and broken services: every malformed
answer is a bad-input error naming the field, transient failures are retried, redirects
are not followed (credentials stay with the target host), and the protocol's metadata is
read as the spec writes it. A stdlib HTTP server plays the service; no model needed."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from auditor.errors import InputError, UsageError
from auditor.query_target import as_logits, behaviour_fingerprint, refusal
from plugins.models._v2_client import ClientOptions, RateLimiter, ServiceUnavailable, V2Client, parse_endpoint
from plugins.models.kserve_v2 import InputSpec, V2Target, auth_headers, input_spec, output_kind


def target(outputs: str = "logits", classes: int | None = 2, url: str = "http://127.0.0.1:9/v2/models/m",
           **options) -> V2Target:
    client = V2Client(parse_endpoint(url), ClientOptions(backoff_s=0.001, **options))
    return V2Target(client, InputSpec("image", "FP32", "NCHW", 1, (2, 2)), outputs, "logits", classes, {})


def reply(shape, data, name="logits") -> dict:
    return {"outputs": [{"name": name, "shape": shape, "datatype": "FP32", "data": data}]}


@pytest.mark.parametrize("answer, field", [
    ({}, "'outputs'"),
    ({"outputs": "x"}, "'outputs'"),
    ({"outputs": []}, "'outputs' is empty"),
    (reply([2, 2], [1, 2, 3]), "has 3 values"),
    (reply([3, 2], [0] * 6), "3 rows for a batch of 2"),
    (reply([2, 3], [0] * 6), "3 scores per image"),
    (reply([2, 2], ["a", "b", "c", "d"]), "not numbers"),
    (reply([2, 2], [1, None, 2, 3]), "not numbers"),
    (reply([2, 2], [1, float("nan"), 2, 3]), "NaN or Inf"),
    (reply([2, "2"], [0] * 4), "shape is not a list of sizes"),
    ({"outputs": [{"name": "logits", "shape": [2, 2]}]}, "'data'"),
])
def test_malformed_infer_responses_name_the_field(answer, field):
    with pytest.raises(InputError, match="infer response") as err:
        target().parse(answer, 2)
    assert field in str(err.value)


def test_label_outputs_must_be_class_indices():
    assert target("label").parse(reply([2], [1, 0]), 2).tolist() == [1, 0]
    with pytest.raises(InputError, match="one class index per image"):
        target("label").parse(reply([2], [0.5, 1]), 2)


def test_answers_become_logits_the_engine_can_softmax():
    probs = np.array([[0.2, 0.8]], dtype=np.float32)
    logits = as_logits(probs, "probabilities", 2)
    assert np.allclose(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), probs, atol=1e-6)
    assert as_logits(np.array([1, 0]), "label", 3).tolist() == [[0, 1, 0], [1, 0, 0]]


@pytest.mark.parametrize("meta, message", [
    ({}, "'inputs'"),
    ({"inputs": []}, "empty"),
    ({"inputs": [{"name": "x", "datatype": "UINT8", "shape": [-1, 3, 8, 8]}]}, "round every perturbation"),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 8, 8]}]}, "4 integers"),
    ({"inputs": [{"name": 7, "datatype": "FP32", "shape": [-1, 1, 8, 8]}]}, "'name'"),
])
def test_hostile_model_metadata_is_refused(meta, message):
    with pytest.raises(InputError, match=message):
        input_spec(meta)


def test_metadata_layout_size_and_output_kind():
    spec = input_spec({"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 224, 224, 3]}]})
    assert (spec.layout, spec.channels, spec.size) == ("NHWC", 3, (224, 224))
    assert input_spec({"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 1, -1, -1]}]}).size is None
    assert output_kind({"outputs": [{"name": "label", "datatype": "INT64", "shape": [-1]}]}, None)[0] == "label"
    assert output_kind({"outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}]}, None)[::2] == (
        "probabilities", 3)
    with pytest.raises(UsageError, match="--outputs logits"):
        output_kind({"outputs": [{"name": "output_0", "datatype": "FP32", "shape": [-1, 2]}]}, None)


@pytest.mark.parametrize("url, message", [
    ("http://u:pw-secret@h/v2/models/m", "user name or password"),
    ("http://h/v2/models/m?key=abc", "query string"),
    ("http://h/v1/models/m:predict", "not /v2/models/NAME"),
    ("ftp://h/v2/models/m", "http"),
])
def test_bad_urls_are_usage_errors_that_echo_no_secret(url, message):
    with pytest.raises(UsageError, match=message) as err:
        parse_endpoint(url)
    assert "pw-secret" not in str(err.value) and "abc" not in str(err.value)


def test_auth_sources(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKEN_VAR", "tok-123")
    assert auth_headers({"auth_env": "TOKEN_VAR"}) == {"Authorization": "Bearer tok-123"}
    with pytest.raises(UsageError, match="MISSING_VAR is not set"):
        auth_headers({"auth_env": "MISSING_VAR"})
    good = tmp_path / "h.txt"
    good.write_text("# vendor key\nX-Api-Key: k-456\n")
    assert auth_headers({"auth_header_file": str(good)}) == {"X-Api-Key": "k-456"}
    for text, message in (("no colon here\n", "line 1"), ("X Bad: v\n", "line 1"),
                          ("X-Key: a\0b\n", "NUL"), ("x" * 70_000, "64 KiB")):
        bad = tmp_path / "bad.txt"
        bad.write_text(text)
        with pytest.raises(UsageError, match=message) as err:
            auth_headers({"auth_header_file": str(bad)})
        assert "k-456" not in str(err.value)
    (tmp_path / "latin1.txt").write_bytes(b"X-Key: \xff\n")
    with pytest.raises(UsageError, match="not UTF-8"):
        auth_headers({"auth_header_file": str(tmp_path / "latin1.txt")})


class Scripted(BaseHTTPRequestHandler):
    """Answers POSTs from a script of (status, body, headers); records what it received."""

    script: list = []
    seen: list = []

    def do_POST(self):  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).seen.append(dict(self.headers))
        status, body, headers = type(self).script.pop(0) if type(self).script else (200, b"{}", {})
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def scripted():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    Scripted.script, Scripted.seen = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v2/models/m"
    server.shutdown()
    server.server_close()


def ok(n: int = 1) -> tuple:
    return 200, json.dumps(reply([n, 2], [0.1, 0.9] * n)).encode(), {}


def test_transient_failures_are_retried_then_answered(scripted):
    Scripted.script = [(503, b'{"error": "busy"}', {}), (429, b"", {"Retry-After": "0"}), (502, b"", {}), ok()]
    t = target(url=scripted)
    assert t.query(np.zeros((1, 1, 2, 2), np.float32)).shape == (1, 2)
    assert t.usage()["retries"] == 3 and t.usage()["requests"] == 1 and t.usage()["images"] == 1


def test_a_service_that_keeps_failing_is_unavailable_after_the_retries(scripted):
    Scripted.script = [(503, b"", {})] * 3
    with pytest.raises(ServiceUnavailable, match="did not answer after 3 tries.*--resume"):
        target(url=scripted, retries=2).query(np.zeros((1, 1, 2, 2), np.float32))


@pytest.mark.parametrize("status, body, message", [
    (200, b"<html>not json</html>", "not JSON"),
    (200, b"[1, 2]", "not an object"),
    (400, b'{"error": "bad \\u001b[31m input"}', "HTTP 400"),
    (401, b"", "credentials"),
    (404, b"", "no model"),
])
def test_refusals_and_garbage_are_bad_input(scripted, status, body, message):
    Scripted.script = [(status, body, {})]
    with pytest.raises(InputError, match=message) as err:
        target(url=scripted).query(np.zeros((1, 1, 2, 2), np.float32))
    assert "\x1b" not in str(err.value)


def test_redirects_are_not_followed_so_credentials_stay_with_the_target(scripted):
    Scripted.script = [(307, b"", {"Location": "http://127.0.0.1:9/elsewhere"})]
    t = target(url=scripted)
    t.client.options.headers["Authorization"] = "Bearer secret-xyz"
    with pytest.raises(InputError, match="does not follow redirects") as err:
        t.query(np.zeros((1, 1, 2, 2), np.float32))
    assert "secret-xyz" not in str(err.value) and len(Scripted.seen) == 1


def test_concurrency_splits_a_batch_and_keeps_its_order(scripted):
    Scripted.script = [ok(2), ok(2)]
    t = target(url=scripted, concurrency=2)
    assert t.query(np.zeros((4, 1, 2, 2), np.float32)).shape == (4, 2)
    assert t.usage()["requests"] == 2 and len(Scripted.seen) == 2


def test_fingerprint_and_refusals(scripted):
    Scripted.script = [ok(8), ok(8)]
    first, second = (behaviour_fingerprint(target(url=scripted), (1, 2, 2)) for _ in range(2))
    assert first == second and len(first["sha256"]) == 64
    assert "gradients" in refusal("gradients", target()) and refusal("scores", target()) is None
    assert "returns label only" in refusal("scores", target("label"))


def test_rate_limit_spaces_request_starts_evenly():
    clock = {"now": 100.0}
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock["now"] += seconds

    limiter = RateLimiter(4.0, clock=lambda: clock["now"], sleep=sleep)
    starts = []
    for _ in range(5):
        limiter.wait()
        starts.append(clock["now"])
    assert [round(b - a, 9) for a, b in zip(starts, starts[1:])] == [0.25] * 4
    RateLimiter(None, clock=lambda: 0.0, sleep=sleep).wait()  # no limit: no wait
    assert len(waits) == 4


def test_tls_certificates_are_verified_by_default(tmp_path):
    """A self-signed HTTPS service is refused (exit 3 naming it), not silently trusted."""
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a self-signed certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    Scripted.script, Scripted.seen = [ok()], []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(InputError, match="TLS certificate of https://127.0.0.1:.* not trusted"):
            target(url=f"https://127.0.0.1:{server.server_address[1]}/v2/models/m").query(
                np.zeros((1, 1, 2, 2), np.float32))
        assert Scripted.seen == []  # nothing was sent before the certificate was checked
    finally:
        server.shutdown()
        server.server_close()
