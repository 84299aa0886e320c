"""The openai backend end to end: client -> Apache + PHP -> module -> handoffd -> HTTP/2 over TLS
-> handoff-mock-llm, and the conformance runner against handoffd."""

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
import subprocess
import time

import pytest

from harness import REPO, Apache, Daemon, MockLLM, post_json

BENCH_BIN = REPO / ".build/debug/handoff-bench"
CHUNKS = 6


@pytest.fixture(scope="module")
def mock_llm(tmp_path_factory):
    with MockLLM(tmp_path_factory.mktemp("mock-llm"), tls=True, chunk_count=CHUNKS, chunk_delay_ms=20) as mock:
        yield mock


@pytest.fixture(scope="module")
def openai_stack(mock_llm, module_path):
    """Apache (prefork + mod_php) and handoffd whose default backend is the mock over TLS h2."""
    with Apache("prefork", workers=4, module=module_path) as apache:
        daemon = Daemon(apache.run_dir / "openai.sock", "--backend", "openai", "--openai-base-url", mock_llm.url,
                        "--upstream-ca-file", mock_llm.cert_path, "--openai-api-key", "sk-test",
                        "--upstream-first-byte-timeout-ms", "1000", "--upstream-idle-timeout-s", "1").start()
        try:
            yield apache, daemon
        finally:
            daemon.stop()


def contents(resp):
    return [json.loads(e)["content"] for e in resp.events() if e != "[DONE]"]


def test_stream_through_apache_from_the_mock_over_tls_h2(openai_stack, mock_llm):
    apache, daemon = openai_stack
    mock_llm.reset_stats()
    data = json.dumps({"prompt": "Hello", "user_id": 9, "test_pattern": "unicode"}, ensure_ascii=False)
    resp = post_json(apache.port, "/handoff.php", {"socket": str(daemon.socket_path), "data": data})
    assert resp.status == 200, resp.raw[:500]
    assert resp.header("Content-Type") == "text/event-stream"
    assert resp.events()[-1] == "[DONE]"
    assert contents(resp) == ["Grüße ", "世界 ", "😀 ", "𝄞 ", "مرحبا ", "👩‍👩‍👧 "]
    stats = mock_llm.stats()
    assert stats["by_pattern"]["unicode"]["completed"] == 1
    assert stats["http2_connections"] >= 1


def test_upstream_failure_reaches_the_browser_as_a_status(openai_stack):
    apache, daemon = openai_stack
    data = json.dumps({"prompt": "x", "test_pattern": "status:503"})
    resp = post_json(apache.port, "/handoff.php", {"socket": str(daemon.socket_path), "data": data})
    assert resp.status == 502
    body = json.loads(resp.body)
    assert body["upstream_status"] == 503


def test_client_disconnect_cancels_the_upstream_promptly(openai_stack, mock_llm):
    """Closing the browser connection mid-stream resets the upstream stream (RST_STREAM) fast."""
    import socket as sock
    apache, daemon = openai_stack
    mock_llm.reset_stats()
    data = json.dumps({"prompt": "x", "test_pattern": "hang:1"})
    body = json.dumps({"socket": str(daemon.socket_path), "data": data}).encode()
    client = sock.create_connection(("127.0.0.1", apache.port), 10)
    client.sendall(b"POST /handoff.php HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n" % len(body) + body)
    received = b""
    while b'"content"' not in received:
        chunk = client.recv(4096)
        assert chunk, received
        received += chunk
    client.close()
    closed = time.monotonic()
    while time.monotonic() - closed < 3:
        cancelled = mock_llm.stats()["by_pattern"].get("hang:1", {}).get("cancelled", 0)
        if cancelled:
            break
        time.sleep(0.005)
    assert cancelled == 1
    assert time.monotonic() - closed < 0.5


def test_conformance_runner_passes_against_handoffd(openai_stack, mock_llm):
    _, daemon = openai_stack
    result = subprocess.run([str(BENCH_BIN), "conformance", "--socket", str(daemon.socket_path),
                             "--upstream", mock_llm.origin, "--upstream-ca-file", str(mock_llm.cert_path),
                             "--first-byte-timeout-ms", "1000", "--idle-timeout-ms", "1000", "--format", "tap"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "not ok" not in result.stdout
    assert result.stdout.count("\nok ") >= 20


# --- HTTP/2 faults between handoffd and the upstream, in real processes ----------------------

@pytest.fixture(scope="module")
def one_connection_stack(tmp_path_factory, module_path):
    """Apache, and handoffd with one TLS h2 connection to a mock of 20-chunk streams, so every
    stream shares the connection a fault hits."""
    root = tmp_path_factory.mktemp("h2-faults")
    with MockLLM(root, tls=True, chunk_count=20, chunk_delay_ms=15) as mock, \
            Apache("prefork", workers=8, module=module_path) as apache:
        daemon = Daemon(apache.run_dir / "h2.sock", "--backend", "openai", "--openai-base-url", mock.url,
                        "--upstream-ca-file", mock.cert_path, "--openai-api-key", "sk-test",
                        "--upstream-max-connections", "1", "--event-loops", "1").start()
        try:
            yield apache, daemon, mock
        finally:
            daemon.stop()


def stream_via(apache, daemon, pattern):
    return post_json(apache.port, "/handoff.php", {"socket": str(daemon.socket_path),
                                                   "data": json.dumps({"prompt": "x", "test_pattern": pattern})},
                     timeout=20)


def test_a_stream_level_upstream_error_leaves_its_siblings_alone(one_connection_stack):
    apache, daemon, _ = one_connection_stack
    with ThreadPoolExecutor(3) as pool:
        siblings = [pool.submit(stream_via, apache, daemon, "plain") for _ in range(2)]
        time.sleep(0.1)
        broken = stream_via(apache, daemon, "overlong")
        done = [f.result(30) for f in siblings]
    assert broken.status == 200 and b"event: error" in broken.body
    for resp in done:
        assert resp.status == 200 and resp.events()[-1] == "[DONE]", resp.raw[-300:]


def test_refused_upstream_streams_are_retried_before_the_client_sees_anything(one_connection_stack):
    apache, daemon, mock = one_connection_stack
    for pattern in (f"refuse-once:{uuid.uuid4()}", f"goaway-refuse-once:{uuid.uuid4()}"):
        resp = stream_via(apache, daemon, pattern)
        assert resp.status == 200 and resp.events()[-1] == "[DONE]", (pattern, resp.raw[:300])
