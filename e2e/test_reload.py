"""Zero-downtime reload: SIGHUP starts a successor on the same socket, which accepts before the
old process stops; under continuous load through the real Apache nothing is refused, cut or
stalled, and streams started after the reload use the new configuration."""

import json
import os
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness import HANDOFFD_BIN, Apache, Daemon, mkdir_public, parse_response, pid_alive, read_all, send_record, stop_pid, wait_for

RATE = 60          # handoffs per second
DURATION = 4.0     # seconds of load; the reload happens in the middle
RELOAD_AT = 2.0


def stream_once(port, socket_path, prompt):
    """One handoff through Apache, read to EOF: (start, first-event latency s, Response or error)."""
    body = json.dumps({"socket": str(socket_path), "data": json.dumps({"prompt": prompt, "user_id": 1})}).encode()
    request = (b"POST /handoff.php HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
               b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    start = time.monotonic()
    first = None
    data = b""
    try:
        with socket.create_connection(("127.0.0.1", port), 10) as s:
            s.settimeout(10)
            s.sendall(request)
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
                if first is None and b"\ndata: " in b"\n" + data.partition(b"\r\n\r\n")[2]:
                    first = time.monotonic() - start
    except OSError as e:
        return start, first, f"{type(e).__name__}: {e} after {data[:200]!r}"
    return start, first, parse_response(data)


def run_load(apache, socket_path, during):
    """RATE handoffs/s for DURATION s; `during()` is called at RELOAD_AT. Returns the results
    and the monotonic time of the call."""
    results = []
    marks = {}
    with ThreadPoolExecutor(64) as pool:
        t0 = time.monotonic()
        futures = []
        for i in range(int(RATE * DURATION)):
            at = t0 + i / RATE
            time.sleep(max(0.0, at - time.monotonic()))
            if "reload" not in marks and at - t0 >= RELOAD_AT:
                marks["reload"] = time.monotonic()
                during()
            futures.append(pool.submit(stream_once, apache.port, socket_path, f"p{i}"))
        results = [f.result(30) for f in futures]
    return results, marks["reload"]


def messages_in(resp):
    """N from the mock's 'Mock message i of N' events."""
    first = json.loads(resp.events()[0])["content"]
    return int(first.split(" of ")[1].split(" ")[0])


def assert_nothing_lost(results):
    bad = [(r if isinstance(r, str) else r.raw[:300]) for _, _, r in results
           if isinstance(r, str) or r.status != 200 or not r.events() or r.events()[-1] != "[DONE]"]
    assert not bad, f"{len(bad)} of {len(results)} refused, cut or failed, e.g. {bad[:3]}"
    firsts = sorted(f for _, f, _ in results)
    p99 = firsts[int(len(firsts) * 0.99) - 1]
    print(f"reload load: {len(results)} streams, first-event p50 {firsts[len(firsts) // 2] * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
    assert p99 <= 0.250, f"first-event p99 {p99 * 1000:.0f} ms"


def write_config(path, messages):
    path.write_text(f"mock-messages: {messages}\nmock-interval-ms: 20\n")


@pytest.fixture(scope="module")
def reload_apache(module_path):
    with Apache("prefork", workers=8, conf=["SocketHandoffConnectTimeoutMs 300"], module=module_path) as a:
        yield a


@pytest.mark.time_limit(90)
@pytest.mark.parametrize("workers", [1, 2])
def test_reload_under_load_loses_nothing_and_applies_the_new_configuration(reload_apache, workers):
    a = reload_apache
    config = a.root / f"handoffd-{workers}.yaml"
    write_config(config, 5)
    d = Daemon(a.run_dir / f"reload{workers}.sock", "--config", config, "--workers", workers,
               mock_messages=None).start()
    try:
        wait_for(lambda: "workers accept handoffs" in d.log() or workers == 1, 10, "workers")

        def reload():
            write_config(config, 6)
            os.kill(d.serving_pid(), signal.SIGHUP)
        results, reloaded = run_load(a, d.socket_path, reload)
        wait_for(lambda: d.successor_pids(), 5, "the hand-over")
        successor = d.serving_pid()
        assert successor != d.proc.pid
        d.proc.wait(10)  # the old process drained and exited by itself
        assert pid_alive(successor)
    finally:
        d.stop()
    assert_nothing_lost(results)
    sizes = [(start, messages_in(r)) for start, _, r in results]
    assert {n for start, n in sizes if start < reloaded} == {5}
    late = [n for start, n in sizes if start > reloaded + 1.5]
    assert late and set(late) == {6}, sizes
    assert not os.path.exists(d.socket_path)  # the last owner unlinked it


def test_a_reload_with_a_broken_configuration_keeps_the_old_process_serving(reload_apache):
    a = reload_apache
    config = a.root / "broken.yaml"
    write_config(config, 4)
    with Daemon(a.run_dir / "broken.sock", "--config", config, mock_messages=None) as d:
        config.write_text("mock-messages: many\n")
        os.kill(d.proc.pid, signal.SIGHUP)
        wait_for(lambda: "reload failed" in d.log(), 10, "the failed reload")
        assert d.proc.poll() is None
        _, _, resp = stream_once(a.port, d.socket_path, "still")
        assert resp.status == 200 and messages_in(resp) == 4 and resp.events()[-1] == "[DONE]"
        assert "mock-messages" in d.log()  # the successor said what was wrong


class NotifySocket:
    """A stand-in for systemd's NOTIFY_SOCKET: collects sd_notify datagrams."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)
        self.messages = []

    def collect(self, until, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not until(self.messages):
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                pass
        return self.messages

    def close(self):
        self.sock.close()
        os.unlink(self.path)


def test_systemd_hears_reloading_then_the_new_main_pid(tmp_path):
    run = mkdir_public(tmp_path / "run")
    notify = NotifySocket(tmp_path / "notify")
    d = Daemon(run / "n.sock", env={"NOTIFY_SOCKET": notify.path})
    try:
        d.start()
        notify.collect(lambda m: any("READY=1" in x for x in m))
        os.kill(d.proc.pid, signal.SIGHUP)
        notify.collect(lambda m: any("MAINPID=" in x and "READY=1" in x for x in m[1:]))
        wait_for(lambda: d.successor_pids(), 5, "the hand-over")
    finally:
        d.stop()
        notify.close()
    assert "READY=1" in notify.messages[0]
    assert "RELOADING=1" in notify.messages[1] and "MONOTONIC_USEC=" in notify.messages[1]
    assert f"MAINPID={d.successor_pids()[0]}" in notify.messages[2] and "READY=1" in notify.messages[2]


def test_workers_under_socket_activation_serve_and_report_ready_once(tmp_path):
    """systemd-socket-activate --seqpacket passes the socket; the supervisor adopts it instead of
    binding (which would fail: the path is live) and sends READY=1 itself, once."""
    run = mkdir_public(tmp_path / "run")
    path = run / "sa.sock"
    notify = NotifySocket(tmp_path / "notify")
    log = open(tmp_path / "sa.log", "wb")
    proc = subprocess.Popen(
        ["systemd-socket-activate", "--seqpacket", "-l", str(path),
         "-E", f"NOTIFY_SOCKET={notify.path}",
         str(HANDOFFD_BIN), "--socket", str(path), "--workers", "2", "--mock-messages", "3",
         "--mock-interval-ms", "5", "--metrics-address", "off", "--drain-timeout-s", "1"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    try:
        wait_for(path.exists, 5, "the activation socket")
        # The first connection starts the daemon; its handoff must be served, not dropped.
        data = handoff_over(path)
        notify.collect(lambda m: len(m) >= 1, timeout=5)
        time.sleep(0.3)
        notify.collect(lambda m: False, timeout=0.2)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
        log.close()
        notify.close()
    assert data.startswith(b"HTTP/1.1 200 OK"), (data[:300], (tmp_path / "sa.log").read_text())
    assert data.endswith(b"data: [DONE]\n\n")
    assert [m for m in notify.messages if "READY=1" in m] == [notify.messages[0]], notify.messages
    assert "2 workers" in notify.messages[0]


def test_reload_under_socket_activation_keeps_serving(tmp_path):
    """systemd-socket-activate owns the socket: a SIGHUP hands it to a successor, the socket
    path stays (the service manager's), and handoffs are served before and after."""
    run = mkdir_public(tmp_path / "run")
    path = run / "sa.sock"
    log_path = tmp_path / "sa.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        ["systemd-socket-activate", "--seqpacket", "-l", str(path),
         str(HANDOFFD_BIN), "--socket", str(path), "--mock-messages", "3", "--mock-interval-ms", "5",
         "--metrics-address", "off", "--drain-timeout-s", "1"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    successor = None
    try:
        wait_for(path.exists, 5, "the activation socket")
        assert handoff_over(path).endswith(b"data: [DONE]\n\n")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "successor accepts" in log_path.read_text(), 10, "the hand-over")
        successor = int(log_path.read_text().split("successor=")[-1].split()[0])
        proc.wait(10)  # the old process drained and left
        assert path.exists()
        assert handoff_over(path).endswith(b"data: [DONE]\n\n")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
        if successor:
            stop_pid(successor)
        log.close()


def handoff_over(path):
    """One handoff as Apache makes it, over a socketpair; the client's bytes read to the end."""
    client, server = socket.socketpair()
    send_record(path, b'{"prompt":"sa"}', [server.fileno()])
    server.close()
    data = read_all(client)
    client.close()
    return data
