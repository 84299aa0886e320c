"""Faults through the real Apache: every client gets an answer, whatever the daemon does.

The acknowledged handoff (SocketHandoffAck On, the default) is what makes these hold: Apache
keeps the client until the daemon says it owns it, and answers 503 itself when it does not.
"""

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness import Apache, Daemon, FakeDaemon, free_port, make_temp_dir, post_json, stop_and_wait
from test_apache_handoff import assert_error_page, handoff, mock_stream

# Connect 300 ms + send/ack 200 ms by default; /slowack/ waits up to 5 s for the ack.
FAULT_CONF = [
    "SocketHandoffConnectTimeoutMs 300",
    "SocketHandoffSendTimeoutMs 200",
    'Alias /slowack/ "{docroot}/"',
    '<Location "/slowack/">', "    SocketHandoffSendTimeoutMs 5000", "</Location>",
    'Alias /patient/ "{docroot}/"',
    '<Location "/patient/">', "    SocketHandoffConnectTimeoutMs 3000", "    SocketHandoffMaxRetries 10", "</Location>",
    'Alias /noack/ "{docroot}/"',
    '<Location "/noack/">', "    SocketHandoffAck Off", "</Location>",
]
WORKER_BOUND_US = 500_000  # connect + send timeouts: no worker waits longer than this


@pytest.fixture(scope="module")
def fault_apache(module_path):
    with Apache("prefork", workers=8, conf=FAULT_CONF, module=module_path) as a:
        yield a


def many(n, fn):
    """Runs `fn(i)` for i in range(n) at once; returns the results (exceptions as strings)."""
    def guarded(i):
        try:
            return fn(i)
        except Exception as e:  # reported by the caller's assertion
            return repr(e)
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(guarded, range(n)))


def handoff_times(apache, since):
    """%D (µs) of the handoff requests logged after the first `since` entries."""
    return [us for req, _, _, us in apache.access_log_entries()[since:] if "handoff.php" in req]


def test_stopped_then_killed_daemon_every_queued_client_gets_503(fault_apache):
    """SIGSTOP the daemon, queue 12 handoffs: each gets Apache's 503 with Retry-After within the
    connect + send bound; no bare close. Then SIGKILL: nothing more arrives for anyone."""
    a = fault_apache
    d = Daemon(a.run_dir / "stopped.sock").start()
    logged = len(a.access_log_entries())
    try:
        stop_and_wait(d.proc.pid)
        results = many(12, lambda i: handoff(a, d.socket_path, {"prompt": f"q{i}"}, timeout=10))
        os.kill(d.proc.pid, signal.SIGKILL)
        d.proc.wait(5)
    finally:
        d.stop()
    for resp in results:
        assert not isinstance(resp, str), resp
        assert_error_page(resp, 503)
        assert resp.header("Retry-After") == "1"
    times = handoff_times(a, logged)
    assert len(times) == 12
    assert max(times) < WORKER_BOUND_US + 150_000, times


def test_stopped_daemon_that_wakes_up_writes_nothing_to_abandoned_clients(fault_apache):
    """The daemon resumes after Apache answered 503: it sees its acks fail and closes those
    clients unwritten. The next handoff is served normally."""
    a = fault_apache
    metrics_port = free_port()
    with Daemon(a.run_dir / "wakes.sock", "--metrics-address", f"127.0.0.1:{metrics_port}") as d:
        stop_and_wait(d.proc.pid)
        raw = []
        socks = []
        try:
            # Keep the client sockets open after Apache's answer, to see if anything follows.
            for i in range(3):
                s = socket.create_connection(("127.0.0.1", a.port), 10)
                body = f'{{"socket":"{d.socket_path}","data":"{{}}"}}'.encode()
                s.sendall(b"POST /handoff.php HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
                socks.append(s)
            for s in socks:
                s.settimeout(5)
                data = b""
                while b"</html>" not in data:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                raw.append(data)
        finally:
            os.kill(d.proc.pid, signal.SIGCONT)
        time.sleep(0.5)  # the daemon works through the abandoned records
        for s, first in zip(socks, raw):
            assert first.startswith(b"HTTP/1.1 503 "), first[:200]
            s.settimeout(2)
            rest = b""
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    rest += chunk
            except (socket.timeout, ConnectionResetError):
                pass
            s.close()
            assert rest == b"", rest[:300]
        resp = handoff(a, d.socket_path, {"prompt": "after", "user_id": 3})
        assert resp.raw == mock_stream(5, 3, "after")
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        assert 'handoffd_handoff_errors_total{reason="abandoned"} 3' in metrics, metrics


def test_daemon_killed_while_handoffs_wait_for_the_ack(fault_apache):
    """/slowack/ waits up to 5 s: a daemon SIGKILLed while handoffs wait is noticed at once
    (the kernel resets the queued connections) and each client gets 503 long before 5 s."""
    a = fault_apache
    d = Daemon(a.run_dir / "killed.sock").start()
    try:
        stop_and_wait(d.proc.pid)
        timer = threading.Timer(0.5, lambda: os.kill(d.proc.pid, signal.SIGKILL))
        timer.start()
        t0 = time.monotonic()
        results = many(6, lambda i: handoff(a, d.socket_path, {"prompt": "k"},
                                            path="/slowack/handoff.php", timeout=10))
        elapsed = time.monotonic() - t0
        timer.join()
    finally:
        d.stop()
    for resp in results:
        assert not isinstance(resp, str), resp
        assert_error_page(resp, 503)
    assert elapsed < 2.5, elapsed


def test_daemon_killed_mid_stream_loses_nothing_that_was_queued(fault_apache):
    """Streams the daemon owned end with it (unavoidable); handoffs queued behind the stopped
    daemon get 503 from Apache, never a bare close."""
    a = fault_apache
    d = Daemon(a.run_dir / "midstream.sock", mock_messages=200, mock_interval_ms=50).start()
    owned = []
    try:
        def stream(i):
            return handoff(a, d.socket_path, {"prompt": "long", "user_id": i}, timeout=20)
        streaming = ThreadPoolExecutor(4)
        owned = [streaming.submit(stream, i) for i in range(4)]
        time.sleep(0.5)  # the streams are running
        stop_and_wait(d.proc.pid)
        timer = threading.Timer(0.6, lambda: os.kill(d.proc.pid, signal.SIGKILL))
        timer.start()
        queued = many(4, lambda i: handoff(a, d.socket_path, {"prompt": "queued"},
                                           path="/slowack/handoff.php", timeout=10))
        timer.join()
        streams = [f.result(20) for f in owned]
        streaming.shutdown()
    finally:
        d.stop()
    for resp in queued:
        assert not isinstance(resp, str), resp
        assert_error_page(resp, 503)
    for resp in streams:
        assert resp.status == 200
        assert resp.events() and resp.events()[-1] != "[DONE]"  # cut, as it must be


def test_over_capacity_the_daemon_answers_503_itself(module_path):
    """--max-connections 2 with 2 long streams held: the third handoff is acknowledged and
    answered by the daemon with 503 + Retry-After (a JSON body, not Apache's HTML)."""
    with Apache("prefork", workers=4, conf=FAULT_CONF, module=module_path) as a, \
            Daemon(a.run_dir / "full.sock", "--max-connections", "2",
                   mock_messages=40, mock_interval_ms=50) as d:
        pool = ThreadPoolExecutor(2)
        held = [pool.submit(handoff, a, d.socket_path, {"prompt": "hold"}, timeout=20) for _ in range(2)]
        time.sleep(0.5)
        resp = handoff(a, d.socket_path, {"prompt": "third"})
        assert resp.status == 503, resp.raw[:500]
        assert resp.header("Retry-After")
        assert resp.header("Content-Type") == "application/json"
        for f in held:
            assert f.result(20).events()[-1] == "[DONE]"
        pool.shutdown()


# --- old and new halves together ---------------------------------------------------------------

class LegacyDaemon(FakeDaemon):
    """An original daemon: reads the record, closes the Unix connection without a byte, and
    writes a fixed response to the client itself. It knows nothing of the ack."""

    RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nlegacy"

    def serve(self, conn):
        _, fds, _, _ = socket.recv_fds(conn, 65536, 1)
        conn.close()
        for fd in fds:
            with socket.socket(fileno=fd) as client:
                client.sendall(self.RESPONSE)
                client.shutdown(socket.SHUT_WR)


@pytest.mark.parametrize("path", ["/handoff.php", "/noack/handoff.php"])
def test_an_original_daemon_keeps_working_with_this_module(fault_apache, path):
    """The module asks for an ack; a daemon that never sends one but reads and closes has
    taken the client, as in the original protocol: its response reaches the client."""
    legacy = LegacyDaemon(fault_apache.run_dir / "legacy.sock")
    try:
        resp = handoff(fault_apache, legacy.path, {"prompt": "x"}, path=path)
    finally:
        legacy.close()
    assert resp.raw == LegacyDaemon.RESPONSE


def test_the_original_protocol_still_streams(fault_apache):
    """SocketHandoffAck Off: the fire-and-forget handoff an original module makes; handoffd
    serves it exactly as before."""
    with Daemon(fault_apache.run_dir / "noack.sock") as d:
        resp = handoff(fault_apache, d.socket_path, {"prompt": "plain", "user_id": 5},
                       path="/noack/handoff.php")
    assert resp.raw == mock_stream(5, 5, "plain")


def test_a_symlink_planted_between_retries_is_refused(fault_apache):
    """The path does not exist at the first attempt (ENOENT: retry). A symlink to a daemon
    outside the prefix appears before the next attempt: the module checks the path again on
    every attempt, so it refuses (403) instead of handing the client to that daemon."""
    outside = make_temp_dir()  # reachable by Apache's children, outside the prefix
    link = fault_apache.run_dir / "planted.sock"
    with Daemon(outside / "evil.sock") as evil:
        timer = threading.Timer(0.15, lambda: os.symlink(evil.socket_path, link))
        timer.start()
        try:
            resp = handoff(fault_apache, link, {"prompt": "x"}, path="/patient/handoff.php")
        finally:
            timer.join()
            link.unlink(missing_ok=True)
            shutil.rmtree(outside, ignore_errors=True)
    assert_error_page(resp, 403)
    assert "outside the allowed prefix" in fault_apache.error_log_text()


def test_a_record_too_large_for_the_socket_gets_413_from_apache(fault_apache):
    """300 KB of X-Handoff-Data cannot go in one SEQPACKET record (EMSGSIZE): Apache answers
    413 itself, not 503 (retrying cannot help)."""
    with Daemon(fault_apache.run_dir / "big.sock") as d:
        resp = post_json(fault_apache.port, "/handoff.php",
                         {"socket": str(d.socket_path), "data": '{"prompt":"' + "x" * 300_000 + '"}'})
    assert_error_page(resp, 413)


class RefusingDaemon(FakeDaemon):
    """A daemon that refuses every record: it closes the client it was passed unanswered, sends
    the refusal byte and closes the Unix connection at once, as handoffd does for a record it
    cannot use."""

    def serve(self, conn):
        _, fds, _, _ = socket.recv_fds(conn, 65536, 1)
        for fd in fds:
            os.close(fd)
        conn.send(b"\x15")


def test_a_refusal_read_as_the_end_of_stream_still_gets_its_answer(module_path, tmp_path):
    """Linux can report a SEQPACKET peer's close with its last byte still queued (the module's
    first looks do not wait). A refusal read that way looked like an original daemon that took
    the client, so nobody answered it. An interposed recv(2) makes that happen on every
    handoff here: each client still gets the module's 500."""
    library = tmp_path / "seqpacket_early_eof.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(library),
                    str(Path(__file__).parent / "interpose/seqpacket_early_eof.c"), "-ldl"], check=True)
    with Apache("prefork", workers=2, conf=FAULT_CONF, module=module_path,
                env={"LD_PRELOAD": str(library)}) as apache:
        refusing = RefusingDaemon(apache.run_dir / "refusing.sock")
        try:
            for _ in range(5):
                assert_error_page(handoff(apache, refusing.path, {"prompt": "x"}), 500)
        finally:
            refusing.close()
        assert "refused the record" in apache.error_log_text()
