"""End-to-end: client -> Apache + PHP -> mod_socket_handoff -> handoffd -> client.

Each test asserts what a client sees on the wire (raw bytes read to EOF).
"""

import json
import os
import random
import socket
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness import MAIN_CONF, Apache, Daemon, SeqpacketProbe, curl, post_json

HANDOFF_HEADERS = (b"x-socket-handoff", b"x-handoff-data")


def mock_stream(n, user, about, extra_headers=()):
    """The exact bytes handoffd's mock backend writes for `n` messages."""
    head = ("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            "Connection: close\r\nX-Accel-Buffering: no\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in extra_headers) + "\r\n")
    events = "".join(
        "data: " + json.dumps({"content": f'Mock message {i} of {n} for user {user} about "{about}". '},
                              separators=(",", ":"), ensure_ascii=False) + "\n\n"
        for i in range(1, n + 1))
    return (head + events + "data: [DONE]\n\n").encode()


def handoff(apache, socket_path, data=None, path="/handoff.php", **kw):
    """POST to the PHP endpoint asking for a handoff to `socket_path` with optional data."""
    params = {"socket": str(socket_path)}
    if data is not None:
        params["data"] = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return post_json(apache.port, path, params, **kw)


def assert_no_handoff_headers(resp):
    """Neither handoff header may appear anywhere in the response head."""
    head = resp.raw.partition(b"\r\n\r\n")[0].lower()
    for name in HANDOFF_HEADERS:
        assert name not in head, f"{name!r} leaked to the client: {resp.raw[:2000]!r}"


def assert_error_page(resp, status):
    """A small HTML error from Apache; no PHP body, no handoff headers."""
    assert resp.status == status, resp.raw[:2000]
    assert_no_handoff_headers(resp)
    assert (resp.header("Content-Type") or "").startswith("text/html")
    assert b"PHP-BODY" not in resp.body
    assert len(resp.body) < 2048


def timed(fn, *args, **kw):
    t0 = time.monotonic()
    r = fn(*args, **kw)
    return r, time.monotonic() - t0


# --- handoff succeeds -------------------------------------------------------------------------

def test_handoff_streams_all_events_with_daemon_headers(apache, daemon):
    """The client gets exactly the daemon's response: status, headers, events, [DONE]."""
    data = {"prompt": "hello", "user_id": 42, "response_headers": {"X-Request-Id": "e2e-1"}}
    resp = handoff(apache, daemon.socket_path, data)
    assert resp.raw == mock_stream(5, 42, "hello", [("X-Request-Id", "e2e-1")])
    assert resp.status == 200
    assert resp.header("Content-Type") == "text/event-stream"
    assert resp.header("X-Accel-Buffering") == "no"
    assert resp.events()[-1] == "[DONE]"
    assert_no_handoff_headers(resp)


def test_curl_keepalive_client_gets_the_stream(apache, daemon):
    """A stock HTTP/1.1 client (curl, keep-alive, GET with a query string) sees the exact stream."""
    query = urllib.parse.urlencode({"socket": daemon.socket_path,
                                    "data": json.dumps({"prompt": "curl", "user_id": 5})})
    rc, out, err = curl("-i", "-N", f"http://127.0.0.1:{apache.port}/handoff.php?{query}")
    assert rc == 0, err
    assert out == mock_stream(5, 5, "curl")


def test_no_handoff_data_serves_anonymous_defaults(apache, daemon):
    """Without X-Handoff-Data the daemon gets a lone NUL and serves user 'anonymous'."""
    resp = handoff(apache, daemon.socket_path)
    assert resp.raw == mock_stream(5, "anonymous", "")


def test_empty_handoff_data_serves_anonymous_defaults(apache, daemon):
    """An empty X-Handoff-Data value is served like no data at all."""
    resp = handoff(apache, daemon.socket_path, "")
    assert resp.raw == mock_stream(5, "anonymous", "")


def test_handoff_data_reaches_daemon_verbatim(apache, daemon):
    """Unicode and JSON escapes survive PHP, Apache and the wire (echo test pattern)."""
    prompt = 'Grüße, 世界 😀 "quoted" \\ back\tslash'
    resp = handoff(apache, daemon.socket_path, {"test_pattern": "echo", "prompt": prompt})
    assert resp.status == 200
    events = resp.events()
    assert events[-1] == "[DONE]"
    assert "".join(json.loads(e)["content"] for e in events[:-1]) == prompt


def test_invalid_handoff_json_gets_400_from_daemon(apache, daemon):
    """Bad JSON is still handed off; the daemon answers 400 on the client socket."""
    resp = handoff(apache, daemon.socket_path, "{not json")
    assert resp.status == 400, resp.raw
    assert resp.header("Content-Type") == "application/json"
    json.loads(resp.body)
    assert_no_handoff_headers(resp)


def test_dotdot_that_stays_inside_prefix_is_allowed(apache, daemon):
    """`..` is normalised lexically; a path that stays under the prefix is fine."""
    path = f"{apache.run_dir}/sub/../{daemon.socket_path.name}"
    assert handoff(apache, path).raw == mock_stream(5, "anonymous", "")


def test_symlink_inside_prefix_to_inside_is_allowed(apache, daemon):
    link = apache.run_dir / "inside-link.sock"
    if not link.is_symlink():
        link.symlink_to(daemon.socket_path)
    assert handoff(apache, link).raw == mock_stream(5, "anonymous", "")


@pytest.mark.parametrize("data", [None, "", '{"prompt":"Grüße 😀","user_id":3}'])
def test_wire_message_is_header_bytes_plus_client_fd(apache, data):
    """What the daemon receives: the X-Handoff-Data bytes verbatim (a lone NUL without the
    header) and exactly one fd, the client's own TCP connection. After the commit Apache
    writes nothing, even though this 'daemon' closes the fd unanswered."""
    with SeqpacketProbe(apache.run_dir / "probe.sock") as probe:
        params = {"socket": probe.path, **({"data": data} if data is not None else {})}
        body = json.dumps(params).encode()
        with socket.create_connection(("127.0.0.1", apache.port), 10) as s:
            s.sendall(b"POST /handoff.php HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(body) + body)
            received = s.recv(65536)  # EOF once the probe has closed the last copy
            client_addr = s.getsockname()
    assert received == b""
    # No header, or an empty one, is a lone NUL: a zero-length record would read as EOF.
    assert probe.payloads == [data.encode() if data else b"\x00"]
    assert probe.fds == [[(socket.AF_INET, socket.SOCK_STREAM, client_addr)]]


def test_head_request_gets_the_stream_head_without_a_handoff(apache):
    """HEAD cannot be handed off (the daemon would send a body): Apache answers with the head a
    streamed GET gets, and nothing reaches the daemon."""
    with SeqpacketProbe(apache.run_dir / "head-probe.sock") as probe:
        query = urllib.parse.urlencode({"socket": probe.path, "data": '{"prompt":"x"}'})
        resp = apache.request(f"/handoff.php?{query}", method="HEAD")
    assert resp.status == 200, resp.raw
    assert resp.header("Content-Type") == "text/event-stream"
    assert resp.body == b""
    assert_no_handoff_headers(resp)
    assert probe.payloads == []


def test_handoff_headers_from_apache_config_never_leak(apache):
    """`Header always set X-Socket-Handoff …` (mod_headers) asks for a handoff like PHP would: here
    to a socket outside the prefix, so 403, and neither header reaches the client."""
    resp = apache.request("/injected/plain.php")
    assert_error_page(resp, 403)


# --- requests without a handoff ---------------------------------------------------------------

def test_plain_php_untouched(apache):
    """An ordinary PHP page is served by Apache + PHP as if the module were absent."""
    resp = apache.request("/plain.php")
    sapi = "apache2handler" if apache.mpm == "prefork" else "fpm-fcgi"
    assert resp.status == 200
    assert resp.body == f"plain page, sapi={sapi}\n".encode()
    assert resp.header("X-Plain") == "yes"
    assert resp.header("Server").startswith("Apache")


def test_php_without_handoff_header_untouched(apache):
    """The handoff script without a socket param: its body and own headers reach the client."""
    resp = post_json(apache.port, "/handoff.php", {"header": "X-App: kept"})
    assert resp.status == 200
    assert resp.body == b"PHP-BODY\n"
    assert resp.header("X-App") == "kept"


def test_data_header_alone_is_stripped(apache):
    """X-Handoff-Data without X-Socket-Handoff: no handoff, and the data header is removed."""
    resp = post_json(apache.port, "/handoff.php", {"data": '{"secret":"x"}'})
    assert resp.status == 200
    assert resp.body == b"PHP-BODY\n"
    assert_no_handoff_headers(resp)


def test_disabled_location_strips_headers_without_handoff(apache, daemon):
    """SocketHandoffEnabled Off (per location): PHP's response goes out, minus the handoff headers."""
    resp = handoff(apache, daemon.socket_path, {"prompt": "x"}, path="/off/handoff.php")
    assert resp.status == 200
    assert resp.body == b"PHP-BODY\n"
    assert_no_handoff_headers(resp)


# --- refused paths: 403 -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def outside(apache):
    """A live daemon whose socket is outside the allowed prefix (a handoff there would work)."""
    d = Daemon(apache.root / "outside" / "d.sock").start()
    link = apache.run_dir / "escape-link.sock"
    link.symlink_to(d.socket_path)
    yield d
    d.stop()


@pytest.mark.parametrize("case", ["outside", "dotdot", "symlink", "prefix-sibling", "relative",
                                  "control-char"])
def test_path_outside_prefix_gets_403(apache, outside, case):
    run = apache.run_dir
    path = {
        "outside": str(outside.socket_path),
        "dotdot": f"{run}/../outside/d.sock",
        "symlink": str(run / "escape-link.sock"),
        "prefix-sibling": f"{run}x/d.sock",
        "relative": "run/d.sock",
        "control-char": f"{run}/d.sock\x7f",
    }[case]
    resp, elapsed = timed(handoff, apache, path, {"prompt": "x"})
    assert_error_page(resp, 403)
    assert elapsed < 1.0


# --- daemon unreachable: 503 quickly, or reached within the retry window ------------------------

def _stale_socket(path):
    """A socket file nobody listens on (ECONNREFUSED)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.bind(str(path))
    os.chmod(path, 0o666)  # else www-data gets EACCES, which is (rightly) not retried
    s.close()


def _full_backlog(path):
    """A listener that never accepts, with its backlog full (Linux: EAGAIN at once)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.bind(str(path))
    os.chmod(path, 0o666)
    s.listen(0)
    fillers = []
    while True:
        c = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        c.setblocking(False)
        try:
            c.connect(str(path))
        except BlockingIOError:
            c.close()
            return [s, *fillers]
        fillers.append(c)


@pytest.mark.parametrize("kind", ["missing", "stale", "backlog-full"])
def test_unreachable_daemon_gets_503_quickly(apache, kind):
    """ConnectTimeoutMs 300, 2 retries: all attempts fail → 503 well inside the deadline,
    but only after the backoff (10 + 20 ms) shows it retried the transient error."""
    path = apache.run_dir / f"nobody-{kind}.sock"
    keep = []
    if kind == "stale":
        _stale_socket(path)
    elif kind == "backlog-full":
        keep = _full_backlog(path)
    try:
        resp, elapsed = timed(handoff, apache, path, {"prompt": "x"})
    finally:
        for s in keep:
            s.close()
        if path.exists():
            path.unlink()
    assert_error_page(resp, 503)
    assert 0.025 <= elapsed < 1.5, elapsed


def test_deadline_bounds_retries(apache):
    """MaxRetries 10 would back off for ~10 s; the 300 ms connect deadline ends it."""
    resp, elapsed = timed(handoff, apache, apache.run_dir / "nobody.sock", path="/deadline/handoff.php")
    assert_error_page(resp, 503)
    assert 0.28 <= elapsed < 1.5, elapsed


def test_daemon_starting_within_retry_window_is_reached(apache):
    """ConnectTimeoutMs 3000, MaxRetries 10: a daemon that appears 400 ms later gets the handoff."""
    sock = apache.run_dir / "late.sock"
    result = {}

    def client():
        try:
            result["resp"] = handoff(apache, sock, {"prompt": "late", "user_id": 1},
                                     path="/patient/handoff.php", timeout=15)
        except Exception as e:  # reported below
            result["error"] = e
    t0 = time.monotonic()
    thread = threading.Thread(target=client)
    thread.start()
    time.sleep(0.4)
    with Daemon(sock):
        thread.join(15)
    elapsed = time.monotonic() - t0
    assert "error" not in result, result.get("error")
    assert result["resp"].raw == mock_stream(5, 1, "late")
    assert elapsed >= 0.4


# --- large handoff data -----------------------------------------------------------------------

def _random_prompt(nbytes, seed=1234):
    """Printable ASCII (quotes and backslashes included) with some multi-byte UTF-8."""
    rng = random.Random(seed)
    alphabet = [chr(c) for c in range(0x20, 0x7f)] + list("éßЖ中文€😀🎉")
    out, size = [], 0
    while size < nbytes:
        ch = rng.choice(alphabet)
        out.append(ch)
        size += len(ch.encode())
    return "".join(out)


def _echo_roundtrip(apache, daemon, prompt):
    data = json.dumps({"test_pattern": "echo", "prompt": prompt}, ensure_ascii=False)
    assert "\n" not in data
    resp = handoff(apache, daemon.socket_path, data, timeout=20)
    assert resp.status == 200, resp.raw[:2000]
    assert_no_handoff_headers(resp)
    events = resp.events()
    assert events[-1] == "[DONE]"
    return "".join(json.loads(e)["content"] for e in events[:-1])


def test_100k_handoff_data_arrives_intact(prefork, prefork_daemon):
    """100 KiB of X-Handoff-Data (mod_php) reaches the daemon byte for byte."""
    prompt = _random_prompt(100 * 1024)
    assert _echo_roundtrip(prefork, prefork_daemon, prompt) == prompt


def test_8k_handoff_data_arrives_intact_through_php_fpm(apache, daemon):
    """Through php-fpm + proxy_fcgi a response header line is capped near 8 KiB by Apache
    (MAX_STRING_LEN); just under that works with both MPMs."""
    prompt = _random_prompt(7800)
    assert _echo_roundtrip(apache, daemon, prompt) == prompt


@pytest.mark.parametrize("apache", ["event"], indirect=True)
def test_handoff_data_over_fpm_header_limit_fails_cleanly(apache, daemon):
    """Known limit, not the module's: proxy_fcgi rejects a header line over 8189 bytes with
    its own 500 before any output filter runs. Nothing is handed off; nothing leaks."""
    resp = handoff(apache, daemon.socket_path, json.dumps({"prompt": "z" * 9000}))
    assert resp.status == 500, resp.raw[:2000]
    assert_no_handoff_headers(resp)
    assert b"text/event-stream" not in resp.raw


def test_handoff_data_over_daemon_limit_gets_413(prefork, prefork_daemon):
    """160 KiB (over the daemon's 128 KiB default) is delivered; the daemon answers 413."""
    data = json.dumps({"prompt": "y" * (160 * 1024)})
    resp = handoff(prefork, prefork_daemon.socket_path, data, timeout=20)
    assert resp.status == 413, resp.raw[:2000]
    assert_no_handoff_headers(resp)


# --- HTTP/2: refused ---------------------------------------------------------------------------

def test_http2_request_gets_500_and_no_handoff(module_path):
    """mod_http2 (event MPM, h2c): handoff refused with 500; nothing reaches the socket."""
    with Apache("event", conf=MAIN_CONF, h2=True, module=module_path) as a, \
            SeqpacketProbe(a.run_dir / "probe.sock") as probe, \
            Daemon(a.run_dir / "d.sock") as daemon:
        hdr_file, body_file = a.root / "h2.headers", a.root / "h2.body"
        body = json.dumps({"socket": probe.path, "data": '{"prompt":"h2"}'})
        rc, out, err = curl("--http2-prior-knowledge", "-D", str(hdr_file), "-o", str(body_file),
                            "-w", "%{http_version} %{http_code}", "-H", "Content-Type: application/json",
                            "--data-binary", body, f"http://127.0.0.1:{a.port}/handoff.php")
        assert rc == 0, err
        assert out.decode() == "2 500"
        head = hdr_file.read_bytes().lower()
        for name in HANDOFF_HEADERS:
            assert name not in head
        assert b"text/event-stream" not in head
        assert b"PHP-BODY" not in body_file.read_bytes()
        time.sleep(0.2)
        assert probe.connections == 0
        # Control: the same server hands off an HTTP/1.1 request.
        resp = handoff(a, daemon.socket_path)
        assert resp.raw == mock_stream(5, "anonymous", "")


# --- capacity: workers are freed at once -------------------------------------------------------

@pytest.mark.time_limit(120)
def test_200_concurrent_streams_with_4_workers(module_path):
    """200 one-second streams through an Apache limited to 4 workers all complete quickly:
    held workers would need 200 / 4 × 1 s = 50 s."""
    n = 200
    with Apache("prefork", workers=4, conf=["SocketHandoffConnectTimeoutMs 2000"],
                module=module_path) as a, \
            Daemon(a.run_dir / "d.sock", mock_messages=5, mock_interval_ms=200) as d:
        expected = mock_stream(5, 7, "c")

        def one(_):
            try:
                return handoff(a, d.socket_path, {"prompt": "c", "user_id": 7}, timeout=60).raw
            except Exception as e:
                return repr(e).encode()
        t0 = time.monotonic()
        with ThreadPoolExecutor(n) as pool:
            results = list(pool.map(one, range(n)))
        elapsed = time.monotonic() - t0
        bad = [r for r in results if r != expected]
        assert not bad, f"{len(bad)} of {n} wrong, e.g. {bad[0][:600]!r}"
        assert elapsed < 20, elapsed
        # Apache's own time per request (%D) stays far below a stream's duration.
        times = [us for req, _, _, us in a.access_log_entries() if "handoff.php" in req]
        assert len(times) == n
        assert max(times) < 1_000_000, max(times)


# --- configuration ------------------------------------------------------------------------------

@pytest.mark.parametrize("line", ["SocketHandoffMaxRetries 11", "SocketHandoffConnectTimeoutMs 0",
                                  "SocketHandoffSendTimeoutMs 60001", "SocketHandoffConnectTimeoutMs 10ms",
                                  "SocketHandoffEnabled maybe", "SocketHandoffAllowedPrefix run/"])
def test_bad_directive_value_stops_apache(module_path, line):
    """Strict parsing: Apache refuses to start and names the directive."""
    a = Apache("prefork", conf=[line], module=module_path)
    with pytest.raises(RuntimeError) as err:
        with a:
            pass
    assert line.split()[0] in str(err.value)
