"""handoffd out of process, over real SEQPACKET sockets and real fds: every malformed
handoff is refused (with an HTTP answer when we passed a client), the daemon keeps serving,
and its open-fd count returns to the baseline afterwards."""

import os
import socket
import time

import pytest

from harness import Daemon, handoff_response, mkdir_public, read_all, send_record, sse_data, tcp_pair, wait_for
from harness import status_code as status

ROUNDS = 40


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def handoff(path, payload):
    """A well-formed handoff carrying `payload`; returns what the client receives."""
    return handoff_response(path, payload, 5.0)


@pytest.fixture()
def daemon(tmp_path_factory):
    root = tmp_path_factory.mktemp("wire")
    mkdir_public(root)
    d = Daemon(root / "run" / "d.sock", "--handoff-timeout-ms", "300", "--max-handoff-bytes", "4096",
               "--access-log", "off", mock_messages=2, mock_interval_ms=5).start()
    yield d
    d.stop()


def test_malformed_handoffs_are_answered_and_leak_nothing(daemon):
    path = daemon.socket_path
    pid = daemon.proc.pid
    assert status(handoff(path, b"{}")) == 200          # warm up: loops, buffers, metrics
    time.sleep(0.3)
    baseline = open_fds(pid)

    for _ in range(ROUNDS):
        # Answered with an HTTP error: the client fd is ours.
        assert status(handoff(path, b"{not json")) == 400
        assert status(handoff(path, b'{"prompt":"\xc3\x28"}')) == 400           # invalid UTF-8
        assert status(handoff(path, b'{"prompt":1,"user_id":true}')) == 400     # wrong types
        assert status(handoff(path, b"x" * 5000)) == 413                         # over the limit
        client, server = tcp_pair()
        extra_client, extra_server = tcp_pair()
        with client, server, extra_client, extra_server:
            send_record(path, b"{}", [server.fileno(), extra_server.fileno()])
            server.close()
            extra_server.close()
            assert status(read_all(client)) == 400
            assert read_all(extra_client) == b""                                # extra fd closed

        # Dropped: nothing we could answer, everything closed.
        send_record(path, b"{}", [])                                           # no fd
        r, w = os.pipe()
        send_record(path, b"{}", [w])                                          # a pipe
        os.close(w)
        with os.fdopen(r, "rb") as reader:
            assert reader.read() == b""                                        # daemon closed its copy
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as listening:
            listening.bind(f"\0handoff-wire-{os.getpid()}")
            listening.listen(1)
            send_record(path, b"{}", [listening.fileno()])                    # a listening socket
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as unix:
            unix.connect(str(path))                                            # connects, says nothing
        # Well-formed edge cases are served.
        assert sse_data(handoff(path, b"").partition(b"\r\n\r\n")[2])[-1] == "[DONE]"
        assert sse_data(handoff(path, b"\0").partition(b"\r\n\r\n")[2])[-1] == "[DONE]"

    # A peer that connects and never sends is cut off after the handoff timeout.
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as silent:
        silent.connect(str(path))
        started = time.monotonic()
        silent.settimeout(5)
        assert silent.recv(16) == b""
        assert 0.2 <= time.monotonic() - started < 3

    # A client that leaves mid-stream.
    client, server = tcp_pair()
    send_record(path, b'{"prompt":"bye"}', [server.fileno()])
    server.close()
    client.recv(64)
    client.close()

    wait_for(lambda: open_fds(pid) == baseline, 5, f"fd count back to {baseline} (now {open_fds(pid)})")
    assert status(handoff(path, b"{}")) == 200


def test_access_log_writes_one_escaped_line_per_stream(tmp_path):
    """The access log (on by default) gives each stream one line, and a value from upstream or
    the handoff cannot break it: a request id with a line break is refused before it is logged."""
    run = mkdir_public(tmp_path / "run")
    with Daemon(run / "log.sock") as d:
        client, server = tcp_pair()
        send_record(d.socket_path, b'{"request_id":"req-1","user_id":"u \\"q\\"","model":"m"}', [server.fileno()])
        server.close()
        assert read_all(client).endswith(b"data: [DONE]\n\n")
        client.close()
        forged, server = tcp_pair()
        send_record(d.socket_path, b'{"request_id":"a\\nFORGED-LINE x=1"}', [server.fileno()])
        server.close()
        assert read_all(forged).startswith(b"HTTP/1.1 400 ")
        forged.close()
        wait_for(lambda: "request_id=req-1" in d.log(), 5, "the access-log line")
    lines = [line for line in d.log().splitlines() if " stream " in line]
    assert len(lines) == 1, lines
    assert 'request_id=req-1 user_id="u \\"q\\"" backend=mock model=m status=200' in lines[0]
    assert "outcome=completed" in lines[0]
    assert "FORGED-LINE" not in d.log().replace("a\\nFORGED-LINE", "")
