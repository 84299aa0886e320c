"""Descriptor pressure: under a low open-file limit, with an HTTP/1.1 upstream (one socket per
stream), every client still gets an answer — a stream, or a 503 — and the kernel never drops a
passed descriptor for want of a free slot."""

import os
import socket
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness import Daemon, MockLLM, free_port, mkdir_public, parse_response

CLIENTS = 400
ACK, NAK = b"\x06", b"\x15"


def tcp_pair(listener):
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    return client, server


def acked_handoff(path, payload, fd, n):
    """Hands `fd` off like the module with SocketHandoffAck On: 'ack', 'nak', or 'none' (then
    Apache would answer 503 itself)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as unix:
        unix.bind(f"\0socket-handoff-ack.1.fdtest.{os.getpid()}.{n}")
        unix.settimeout(5)
        unix.connect(str(path))
        socket.send_fds(unix, [payload], [fd])
        unix.settimeout(3)
        try:
            byte = unix.recv(1)
        except (socket.timeout, ConnectionResetError):
            byte = b""
        if byte == b"":
            unix.shutdown(socket.SHUT_RDWR)
            unix.setblocking(False)
            try:
                byte = unix.recv(1)
            except (BlockingIOError, ConnectionResetError):
                byte = b""
    return {ACK: "ack", NAK: "nak"}.get(byte, "none")


def read_to_end(sock, timeout=20):
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (socket.timeout, ConnectionResetError) as e:
        return data + f"<{type(e).__name__}>".encode()
    return data


@pytest.mark.time_limit(120)
def test_every_client_is_answered_under_a_256_descriptor_limit(tmp_path):
    run = mkdir_public(tmp_path / "run")
    metrics_port = free_port()
    with MockLLM(tmp_path / "mock", tls=False, chunk_count=5, chunk_delay_ms=50) as mock, \
            Daemon(run / "fd.sock", "--backend", "openai", "--openai-base-url", mock.url,
                   "--openai-api-key", "k", "--upstream-http", "http1.1",
                   "--metrics-address", f"127.0.0.1:{metrics_port}", nofile=256) as d:
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(CLIENTS)
            pairs = [tcp_pair(listener) for _ in range(CLIENTS)]
        payload = b'{"prompt":"fd pressure","backend":"openai"}'
        with ThreadPoolExecutor(64) as pool:
            acks = list(pool.map(lambda i: acked_handoff(d.socket_path, payload, pairs[i][1].fileno(), i), range(CLIENTS)))
        for _, server in pairs:
            server.close()
        with ThreadPoolExecutor(64) as pool:
            responses = list(pool.map(lambda p: read_to_end(p[0]), pairs))
        for client, _ in pairs:
            client.close()
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        log = d.log()
    outcomes = {}
    bad = []
    for ack, raw in zip(acks, responses):
        if ack == "none":
            # Apache answers 503 itself; the daemon must not have written anything.
            kind = "apache-503" if raw == b"" else "written-after-no-ack"
        elif ack == "nak":
            kind = "nak"
        else:
            resp = parse_response(raw)
            if resp.status == 200 and resp.events() and resp.events()[-1] == "[DONE]":
                kind = "stream"
            elif resp.status == 503 and resp.header("Retry-After"):
                kind = "daemon-503"
            else:
                kind = "bad"
                bad.append(raw[:300])
        outcomes[kind] = outcomes.get(kind, 0) + 1
    print("outcomes", outcomes)
    assert set(outcomes) <= {"stream", "daemon-503", "apache-503"}, (outcomes, bad[:3])
    assert outcomes.get("stream", 0) >= 50, outcomes
    assert 'handoffd_handoff_errors_total{reason="control_truncated"} 0' in metrics
    assert log.count("accept4") <= 2, log[-2000:]
