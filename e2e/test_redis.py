"""Beyond one host: resumable streams, followers and pub/sub channels on a real, private
redis-server, with handoffd out of process over real SEQPACKET sockets and real fds, and
through two real Apaches (two "web hosts") sharing one Redis."""

import json
import random
import re
import socket
import threading
import time

import pytest

from harness import Apache, Daemon, MockLLM, Redis, http_request, mkdir_public, read_all, read_until, wait_for
from harness import handoff_client as handoff
from harness import handoff_response as fetch
from harness import status_code as status

EVENT_ID = re.compile(rb"^id: (\d+)$", re.M)


def events(raw):
    """(id, block) of every event after the head, in order; `block` is the event's bytes."""
    body = raw.split(b"\r\n\r\n", 1)[1]
    out = []
    for block in body.split(b"\n\n"):
        if not block or block.startswith(b":"):
            continue
        match = EVENT_ID.search(block)
        out.append((int(match.group(1)) if match else None, block))
    return out


def assert_exact_tail(raw, after, total):
    """The response holds events after+1 … total, each once and in order, ending with [DONE]."""
    assert status(raw) == 200, raw[:300]
    got = events(raw)
    assert [i for i, _ in got] == list(range(after + 1, total + 1)), raw[-500:]
    assert got[-1][1].endswith(b"data: [DONE]")


@pytest.fixture()
def redis(tmp_path):
    server = Redis(tmp_path / "redis").start()
    yield server
    server.stop()


def start_daemon(tmp_path, name, redis, *args, messages=8, interval_ms=20):
    """A daemon to use as a context manager (it starts on entering)."""
    root = tmp_path / name
    mkdir_public(root)
    extra = ["--redis-url", redis.url] if redis else []
    return Daemon(root / "d.sock", *extra, "--event-loops", "2", *args,
                  mock_messages=messages, mock_interval_ms=interval_ms)


def test_a_resumable_stream_numbers_and_records_every_event(tmp_path, redis):
    with start_daemon(tmp_path, "a", redis, messages=6, interval_ms=5) as d:
        raw = fetch(d.socket_path, {"stream_id": "chat-1.a:b_c", "resumable": True})
        assert_exact_tail(raw, 0, 7)
        key = "handoff:{chat-1.a:b_c}:events"
        wait_for(lambda: redis.command("XLEN", key) == 7, 5, "all 7 events recorded")
        entries = redis.command("XRANGE", key, "-", "+")
        # What a follower replays is byte for byte what the first client got.
        recorded = [entry[1][1].encode() for entry in entries]
        assert recorded == [block + b"\n\n" for _, block in events(raw)]
        assert entries[-1][1][2:] == ["end", "1"]
        assert 0 < redis.command("TTL", key) <= 600
        assert 0 < redis.command("TTL", "handoff:{chat-1.a:b_c}:meta") <= 600


def test_a_dropped_client_resumes_on_another_daemon_with_exactly_the_rest(tmp_path, redis):
    """Generation goes on when the client leaves; a second daemon (another host, same
    Redis) replays what was missed, then follows live, exactly once, in order."""
    with start_daemon(tmp_path, "a", redis, messages=30, interval_ms=30) as a, \
            start_daemon(tmp_path, "b", redis, messages=30, interval_ms=30) as b:
        client = handoff(a.socket_path, {"stream_id": "drop", "resumable": True})
        seen = read_until(client, b"id: 5\n")
        seen += read_until(client, b"\n\n") if not seen.endswith(b"\n\n") else b""
        client.close()
        last = max(i for i, _ in events(seen))
        time.sleep(0.1)
        raw = fetch(b.socket_path, {"stream_id": "drop", "resume": True, "last_event_id": str(last)})
        assert_exact_tail(raw, last, 31)
        # The drop did not cancel the upstream: the recording is complete.
        assert redis.command("XLEN", "handoff:{drop}:events") == 31


def test_a_paid_upstream_is_not_cancelled_when_a_resumable_client_drops(tmp_path, redis):
    """On the openai backend (the mock LLM over TLS h2), a plain stream's upstream is cancelled
    when its client leaves; a resumable one's runs to the end, recorded, and resumes."""
    mock = MockLLM(tmp_path / "llm", chunk_count=20, chunk_delay_ms=40).start()
    try:
        with start_daemon(tmp_path, "a", redis, "--backend", "openai", "--openai-base-url", mock.url,
                          "--upstream-ca-file", mock.cert_path) as d:
            client = handoff(d.socket_path, {"prompt": "p", "stream_id": "paid", "resumable": True})
            seen = read_until(client, b"id: 3\n")
            client.close()
            wait_for(lambda: mock.stats()["completed"] == 1, 10, "the upstream stream completed")
            assert mock.stats()["cancelled"] == 0
            raw = fetch(d.socket_path, {"stream_id": "paid", "resume": True, "last_event_id": 3})
            assert_exact_tail(raw, 3, 21)
            tokens = [json.loads(block.split(b"data: ", 1)[1])["content"] for _, block in events(seen + b"\n\n")[:3]]
            tokens += [json.loads(block.split(b"data: ", 1)[1])["content"] for _, block in events(raw)[:-1]]
            assert "".join(tokens) == "".join(f"Mock token {i} " for i in range(1, 21))
            mock.reset_stats()
            plain = handoff(d.socket_path, {"prompt": "p"})
            read_until(plain, b"Mock token 2 ")
            plain.close()
            wait_for(lambda: mock.stats()["cancelled"] == 1, 10, "the plain stream's upstream cancelled")
    finally:
        mock.stop()


def test_a_stalled_resumable_client_is_detached_and_the_stream_still_completes(tmp_path, redis):
    """A resumable stream whose client stops reading pauses its source (the client's queue is
    full); when the write timeout gives up on the client, the stream detaches and must go on
    to the end, recorded, instead of staying paused."""
    mock = MockLLM(tmp_path / "llm", chunk_count=1500, chunk_delay_ms=0).start()
    try:
        with start_daemon(tmp_path, "a", redis, "--write-timeout-s", "1", "--backend", "openai",
                          "--openai-base-url", mock.url, "--upstream-ca-file", mock.cert_path) as d:
            # 4 KiB chunks (6 MiB in all) that the client never reads: the kernel's buffers and
            # the daemon's queue for it fill, and the upstream is paused.
            client = handoff(d.socket_path, {"prompt": "p", "stream_id": "stalled", "resumable": True, "test_pattern": "long"})
            wait_for(lambda: redis.command("XLEN", "handoff:{stalled}:events") > 10, 5, "the stream started")
            wait_for(lambda: redis.command("XLEN", "handoff:{stalled}:events") == 1501, 20, "the whole stream recorded")
            client.close()
            raw = fetch(d.socket_path, {"stream_id": "stalled", "resume": True, "last_event_id": 1490})
            assert_exact_tail(raw, 1490, 1501)
            assert mock.stats()["completed"] == 1
    finally:
        mock.stop()


def test_a_resume_after_the_end_is_a_204_and_bad_combinations_are_refused(tmp_path, redis):
    with start_daemon(tmp_path, "a", redis, messages=3, interval_ms=5) as d:
        assert_exact_tail(fetch(d.socket_path, {"stream_id": "ended", "resumable": True}), 0, 4)
        wait_for(lambda: redis.command("XLEN", "handoff:{ended}:events") == 4, 5, "the recording complete")
        # EventSource reconnects after the last event it saw, [DONE]: nothing more will come.
        assert status(fetch(d.socket_path, {"stream_id": "ended", "resume": True, "last_event_id": 4})) == 204
        assert_exact_tail(fetch(d.socket_path, {"stream_id": "ended", "resume": True, "last_event_id": 3}), 3, 4)
        raw = fetch(d.socket_path, {"backend": "channel", "channel": "c", "stream_id": "chan", "resumable": True})
        assert status(raw) == 400, raw
        raw = fetch(d.socket_path, {"backend": "channel", "channel": "handoff:{ended}:notify"})
        assert status(raw) == 400 and b"handoff:" in raw, raw


def test_a_detached_stream_ended_by_shutdown_records_its_end(tmp_path, redis):
    """SIGTERM with nothing left to drain but a client-less (detached) stream: its end, the
    shutdown error event, still reaches the recording, so followers elsewhere end too."""
    with start_daemon(tmp_path, "a", redis, "--drain-timeout-s", "0", messages=100, interval_ms=50) as d:
        client = handoff(d.socket_path, {"stream_id": "cut", "resumable": True})
        read_until(client, b"id: 3\n")
        client.close()
        time.sleep(0.2)
        d.stop()
        entries = redis.command("XRANGE", "handoff:{cut}:events", "-", "+")
        assert entries[-1][1][2:] == ["end", "1"], entries[-1]
        assert "event: error" in entries[-1][1][1] and "shutdown" in entries[-1][1][1]
        assert [int(e[0].split("-")[1]) for e in entries] == list(range(1, len(entries) + 1))


def test_followers_on_two_daemons_get_the_same_events(tmp_path, redis):
    with start_daemon(tmp_path, "a", redis, messages=20, interval_ms=25) as a, \
            start_daemon(tmp_path, "b", redis, messages=20, interval_ms=25) as b:
        origin = handoff(a.socket_path, {"stream_id": "multi", "resumable": True})
        read_until(origin, b"id: 1\n")
        followers = [handoff(d.socket_path, {"stream_id": "multi", "resume": True})
                     for d in (a, b, a, b, b)]
        results = [None] * len(followers)

        def collect(index, sock):
            with sock:
                results[index] = read_all(sock)
        threads = [threading.Thread(target=collect, args=(i, s)) for i, s in enumerate(followers)]
        for t in threads:
            t.start()
        rest = read_all(origin)
        origin.close()
        for t in threads:
            t.join(20)
        for raw in results:
            assert_exact_tail(raw, 0, 21)
            assert events(raw) == events(results[0])
        assert [block for _, block in events(results[0])][1:] == [block for _, block in events(b"\r\n\r\n" + rest)][-20:]


def test_resumes_racing_the_appends_are_exact(tmp_path, redis):
    """Resumes land at random moments while events are appended: each gets every event after
    its last id, once, in order (no gap at the replay/live seam, no duplicate)."""
    rng = random.Random(7)
    with start_daemon(tmp_path, "a", redis, messages=150, interval_ms=3) as a, \
            start_daemon(tmp_path, "b", redis, messages=150, interval_ms=3) as b:
        origin = handoff(a.socket_path, {"stream_id": "race", "resumable": True})
        followers = []
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(0.005, 0.03))
            last = rng.randrange(0, 100)
            daemon = rng.choice((a, b))
            followers.append((last, handoff(daemon.socket_path, {"stream_id": "race", "resume": True,
                                                                 "last_event_id": last})))
        assert len(followers) >= 10
        read_all(origin)
        origin.close()
        for last, sock in followers:
            with sock:
                assert_exact_tail(read_all(sock), last, 151)


def test_a_follower_of_an_unfollowed_stream_gets_live_events_promptly(tmp_path, redis):
    """A stream nobody follows publishes its wake-ups sparsely; a follower that joins then
    still gets each new event within the sparse interval, and promptly once it is heard."""
    with start_daemon(tmp_path, "a", redis, messages=40, interval_ms=100) as a, \
            start_daemon(tmp_path, "b", redis, messages=40, interval_ms=100) as b:
        origin = handoff(a.socket_path, {"stream_id": "sparse", "resumable": True})
        times = {}

        def watch(sock, label):
            sock.settimeout(10)
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                now = time.monotonic()
                data += chunk
                for match in EVENT_ID.finditer(data):
                    times.setdefault((label, int(match.group(1))), now)
        reader = threading.Thread(target=watch, args=(origin, "origin"))
        reader.start()
        time.sleep(1.2)                                  # the producer has seen nobody listen
        follower = handoff(b.socket_path, {"stream_id": "sparse", "resume": True})
        watch(follower, "follower")
        reader.join(10)
        origin.close()
        follower.close()
        assert all(("follower", i) in times for i in range(1, 42))
        for i in range(20, 41):
            delay = times[("follower", i)] - times[("origin", i)]
            assert delay < 1.5, (i, delay)
        late = [times[("follower", i)] - times[("origin", i)] for i in range(30, 41)]
        assert max(late) < 0.3, late                    # heard: every event at once


def test_slow_and_fast_followers_of_one_stream_each_get_every_event(tmp_path, redis):
    """Followers on one daemon share one read per wake-up; one that falls behind (a slow
    reader: its queue fills and it pauses) catches up on its own, exactly once, in order."""
    mock = MockLLM(tmp_path / "llm", chunk_count=300, chunk_delay_ms=5).start()
    try:
        with start_daemon(tmp_path, "a", redis, "--backend", "openai", "--openai-base-url", mock.url,
                          "--upstream-ca-file", mock.cert_path) as d:
            origin = handoff(d.socket_path, {"prompt": "p", "stream_id": "crowd", "resumable": True, "test_pattern": "long"})
            read_until(origin, b"id: 1\n")
            followers = [handoff(d.socket_path, {"stream_id": "crowd", "resume": True}) for _ in range(12)]
            results = [None] * len(followers)

            def collect(index, sock):
                sock.settimeout(20)
                data = b""
                while True:
                    chunk = sock.recv(65536 if index % 2 else 8192)
                    if not chunk:
                        break
                    data += chunk
                    if index % 2 == 0:
                        time.sleep(0.01)                      # a slow reader
                results[index] = data
                sock.close()
            threads = [threading.Thread(target=collect, args=(i, s)) for i, s in enumerate(followers)]
            for t in threads:
                t.start()
            read_all(origin, 20)
            origin.close()
            for t in threads:
                t.join(30)
            for raw in results:
                assert_exact_tail(raw, 0, 301)
    finally:
        mock.stop()


def test_unknown_taken_and_unconfigured_stream_ids_are_answered(tmp_path, redis):
    with start_daemon(tmp_path, "a", redis, messages=3, interval_ms=5) as d:
        raw = fetch(d.socket_path, {"stream_id": "nobody", "resume": True, "last_event_id": "3"})
        assert status(raw) == 204
        assert raw.endswith(b"\r\n\r\n")                  # a 204 has no body
        assert_exact_tail(fetch(d.socket_path, {"stream_id": "twice", "resumable": True}), 0, 4)
        raw = fetch(d.socket_path, {"stream_id": "twice", "resumable": True})
        assert status(raw) == 409 and b"stream_id_taken" in raw
        for payload in ({"resumable": True}, {"stream_id": "bad id!", "resumable": True},
                        {"stream_id": "x", "resume": True, "last_event_id": "-1"},
                        {"stream_id": "x", "resume": True, "resumable": True}):
            assert status(fetch(d.socket_path, payload)) == 400, payload
    with start_daemon(tmp_path, "plain", None) as d:
        for payload in ({"stream_id": "s", "resumable": True}, {"stream_id": "s", "resume": True},
                        {"backend": "channel", "channel": "c"}):
            raw = fetch(d.socket_path, payload)
            assert status(raw) == 501 and b"--redis-url" in raw, raw


def test_redis_killed_mid_stream(tmp_path, redis):
    """Redis dies mid-stream: the live stream still completes; resumes answer 503 +
    Retry-After meanwhile; once Redis is back, new streams are recorded again."""
    with start_daemon(tmp_path, "a", redis, messages=12, interval_ms=40) as d:
        client = handoff(d.socket_path, {"stream_id": "outage", "resumable": True})
        read_until(client, b"id: 2\n")
        redis.kill()
        rest = read_all(client)
        client.close()
        assert rest.rstrip().endswith(b"data: [DONE]")
        ids = [int(m) for m in EVENT_ID.findall(rest)]
        assert ids == list(range(ids[0], 14))            # numbered to the end, no gap
        raw = fetch(d.socket_path, {"stream_id": "outage", "resume": True})
        assert status(raw) == 503 and b"Retry-After: " in raw
        assert "Redis is unavailable" in d.log()
        redis.start()

        def recorded_again():
            sid = f"after-{time.monotonic_ns()}"
            fetch(d.socket_path, {"stream_id": sid, "resumable": True})
            return redis.command("EXISTS", f"handoff:{{{sid}}}:events") == 1
        wait_for(recorded_again, 15, "a stream recorded after Redis came back")
        assert d.log().count("Redis is unavailable") == 1  # one warning per outage


def test_a_channel_fans_out_to_every_local_client(tmp_path, redis):
    with start_daemon(tmp_path, "a", redis, "--keepalive-interval-s", "1") as a, \
            start_daemon(tmp_path, "b", redis) as b:
        clients = [handoff(d.socket_path, {"backend": "channel", "channel": "room:7"})
                   for d in [a] * 40 + [b] * 10]
        heads = [read_until(c, b"\r\n\r\n") for c in clients]
        assert all(status(h) == 200 for h in heads)
        assert redis.command("PUBSUB", "NUMSUB", "room:7")[1] == 2   # one subscription per daemon
        time.sleep(1.3)                                              # a keep-alive on a
        for message in ["plain text", json.dumps({"event": "update", "data": {"n": 1}}),
                        json.dumps({"data": "two\nlines", "id": "m3"}), json.dumps({"close": True, "data": "bye"})]:
            assert redis.command("PUBLISH", "room:7", message) == 2
        bodies = [head + read_all(c) for head, c in zip(heads, clients)]
        for c in clients:
            c.close()
        expected = (b"data: plain text\n\nevent: update\ndata: {\"n\": 1}\n\n"
                    b"data: two\ndata: lines\nid: m3\n\ndata: bye\n\ndata: [DONE]\n\n")
        for i, body in enumerate(bodies):
            stream = body.split(b"\r\n\r\n", 1)[1]
            if i < 40:
                assert stream.startswith(b": ping\n\n")
            assert stream.replace(b": ping\n\n", b"") == expected
        wait_for(lambda: redis.command("PUBSUB", "NUMSUB", "room:7")[1] == 0, 5, "unsubscribed after the close")


def test_a_channel_without_redis_is_a_503(tmp_path, redis):
    with start_daemon(tmp_path, "a", redis) as d:
        redis.kill()
        started = time.monotonic()
        raw = fetch(d.socket_path, {"backend": "channel", "channel": "down"})
        assert status(raw) == 503 and b"Retry-After: " in raw
        assert time.monotonic() - started < 7


def test_a_browser_reconnect_through_a_second_web_host(tmp_path, redis):
    """Two web hosts (Apache + PHP + handoffd each) share one Redis. The demo's PHP starts a
    recorded stream on the first; the connection drops; the reconnect — a GET with
    Last-Event-ID, as EventSource sends it — lands on the second host and gets the rest."""
    from harness import REPO
    hosts = []
    try:
        for name in ("web1", "web2"):
            apache = Apache("prefork", workers=4, docroot_src=REPO / "demo",
                            conf=['SetEnv HANDOFF_SOCKET "{run}/d.sock"', "SetEnv HANDOFF_RESUMABLE 1"])
            daemon = Daemon(apache.run_dir / "d.sock", "--redis-url", redis.url,
                            mock_messages=25, mock_interval_ms=40)
            hosts.append((apache, daemon))
            daemon.start()
            apache.start()
        (web1, _), (web2, _) = hosts
        sock = socket.create_connection(("127.0.0.1", web1.port), 5)
        body = json.dumps({"prompt": "resume me", "backend": "mock"}).encode()
        sock.sendall(b"POST /stream.php HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        seen = read_until(sock, b"id: 4\n")
        seen += read_until(sock, b"\n\n", 5) if not seen.endswith(b"\n\n") else b""
        sock.close()
        match = re.search(rb"X-Stream-Id: ([0-9a-f]{32})\r\n", seen)
        assert match, seen[:600]
        stream_id = match.group(1).decode()
        last = max(i for i, _ in events(seen))
        response = http_request(web2.port, f"/stream.php?stream_id={stream_id}",
                                headers={"Last-Event-ID": str(last)}, timeout=20)
        assert response.status == 200
        ids = [int(m) for m in EVENT_ID.findall(response.body)]
        assert ids == list(range(last + 1, 27))
        assert response.body.rstrip().endswith(b"data: [DONE]")
        # An id that is unknown (or expired) tells EventSource to stop: 204.
        assert http_request(web2.port, "/stream.php?stream_id=feedface", headers={"Last-Event-ID": "3"}).status == 204
    finally:
        for apache, daemon in hosts:
            apache.stop()
            apache.cleanup()
            daemon.stop()


# ---- The finished answer back to the app: signed completion callbacks -------------------

SECRET = "s3cret-for-the-completion-tests-0123456789"


def completion_host(tmp_path, redis, name="app"):
    """An Apache serving the demo (stream.php, completion.php) with a store for answers
    (both under Apache's own root, which its www-data children can reach)."""
    from harness import REPO
    apache = Apache("prefork", workers=4, docroot_src=REPO / "demo",
                    conf=['SetEnv HANDOFF_SOCKET "{run}/d.sock"', "SetEnv HANDOFF_RESUMABLE 1",
                          'SetEnv HANDOFF_COMPLETION_SECRET_FILE "{root}/completion-secret"',
                          'SetEnv HANDOFF_COMPLETIONS_DIR "{root}/answers"'])
    secret = apache.root / "completion-secret"
    secret.write_text(SECRET + "\n")
    secret.chmod(0o644)
    store = mkdir_public(apache.root / "answers")
    store.chmod(0o777)
    return apache, secret, store


def answers(store):
    return [json.loads(p.read_text()) for p in sorted(store.glob("*.json"))]


def test_the_finished_answer_reaches_the_app_signed(tmp_path, redis):
    apache, secret, store = completion_host(tmp_path, redis)
    daemon = Daemon(apache.run_dir / "d.sock", "--redis-url", redis.url,
                    "--completion-url", f"http://127.0.0.1:{apache.port}/completion.php",
                    "--completion-secret-file", secret, mock_messages=6, mock_interval_ms=5)
    try:
        daemon.start()
        apache.start()
        response = http_request(apache.port, "/stream.php", method="POST",
                                headers={"Content-Type": "application/json"},
                                body=json.dumps({"prompt": "store me", "backend": "mock"}), timeout=20)
        assert response.status == 200
        streamed = "".join(json.loads(d)["content"] for d in response.events() if d != "[DONE]")
        wait_for(lambda: len(answers(store)) == 1, 10, "the callback stored by completion.php")
        [answer] = answers(store)
        assert answer["status"] == "completed" and answer["text"] == streamed
        assert answer["stream_id"] == response.header("X-Stream-Id") and answer["user_id"] == "demo-user"
        assert answer["error"] is None
        # A handoff that opts out gets no callback.
        assert status(fetch(daemon.socket_path, {"prompt": "private", "completion": False})) == 200
        time.sleep(1.0)
        assert len(answers(store)) == 1
        # The receiver refuses what handoffd did not sign.
        forged = http_request(apache.port, "/completion.php", method="POST",
                              headers={"Content-Type": "application/json", "X-Handoff-Signature": "sha256=" + "0" * 64},
                              body=json.dumps({"delivery_id": "f" * 32, "text": "forged"}))
        assert forged.status == 401 and len(answers(store)) == 1
    finally:
        apache.stop()
        apache.cleanup()
        daemon.stop()


def test_an_undelivered_answer_survives_a_daemon_restart(tmp_path, redis):
    """The receiver is down and the daemon is killed: the callback waits in Redis, and the
    next daemon (same Redis) delivers it once the receiver is up."""
    apache, secret, store = completion_host(tmp_path, redis)
    args = ["--redis-url", redis.url, "--completion-url", f"http://127.0.0.1:{apache.port}/completion.php",
            "--completion-secret-file", secret, "--completion-timeout-ms", "500"]
    first = Daemon(apache.run_dir / "d.sock", *args, mock_messages=3, mock_interval_ms=5).start()
    try:
        raw = fetch(first.socket_path, {"prompt": "p", "request_id": "kept-1", "stream_id": "kept", "resumable": True})
        assert status(raw) == 200
        wait_for(lambda: redis.command("HLEN", "handoff:{callbacks}") == 1, 5, "the callback stored in Redis")
        wait_for(lambda: "completion callback failed" in first.log(), 5, "a failed first attempt")
        first.proc.kill()
        first.proc.wait(5)
    finally:
        first.stop()
    second = Daemon(apache.run_dir / "d.sock", *args, mock_messages=3, mock_interval_ms=5)
    try:
        apache.start()
        second.start()
        wait_for(lambda: len(answers(store)) == 1, 15, "the callback delivered by the next daemon")
        [answer] = answers(store)
        assert answer["request_id"] == "kept-1" and answer["status"] == "completed"
        wait_for(lambda: redis.command("HLEN", "handoff:{callbacks}") == 0, 5, "the delivered callback removed")
    finally:
        apache.stop()
        apache.cleanup()
        second.stop()
