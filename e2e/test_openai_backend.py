"""The openai backend end to end: client -> Apache + PHP -> module -> handoffd -> HTTP/2 over TLS
-> handoff-mock-llm, and the conformance runner against handoffd."""

import json
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
