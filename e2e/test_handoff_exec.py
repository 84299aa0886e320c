"""handoff-exec through a real Apache: a program per handoff, with the client socket as its
stdin and stdout, run concurrently, bounded, timed out, reaped, drained on SIGTERM."""

import itertools
import json
import os
import signal
import time
from pathlib import Path

import pytest

from harness import Apache, HandoffExec, make_temp_dir, wait_for
from test_apache_handoff import handoff
from test_faults import many

SHELL_HANDLER = r"""#!/bin/sh
# Answers with the handoff data it was given, after an optional pause.
[ -n "$PAUSE" ] && sleep "$PAUSE"
if [ -n "$HANDOFF_DATA_FILE" ]; then body="file:$(cat "$HANDOFF_DATA_FILE")"; else body="env:$HANDOFF_DATA"; fi
printf 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s' "${#body}" "$body"
"""

SLEEPY_HANDLER = r"""#!/bin/sh
sleep "$1"
printf 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: close\r\n\r\nslept'
"""

FDS_HANDLER = r"""#!/bin/sh
printf 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n'
exec ls /proc/self/fd
"""

PHP_HANDLER = r"""#!/usr/bin/php
<?php
// A PHP-CLI handler: the client socket is STDIN/STDOUT, the handoff JSON is in HANDOFF_DATA.
$data = json_decode(getenv('HANDOFF_DATA') ?: '{}', true);
$body = json_encode(['hello' => $data['user'] ?? 'nobody', 'pid' => getmypid()]);
fwrite(STDOUT, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " . strlen($body)
    . "\r\nConnection: close\r\n\r\n" . $body);
"""


def script(directory, name, text):
    path = Path(directory) / name
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def exec_apache(module_path):
    with Apache("prefork", workers=8, module=module_path) as a:
        yield a


@pytest.fixture
def handlers():
    directory = make_temp_dir()
    directory.chmod(0o755)
    return directory


SERVERS = itertools.count()


def serve(apache, program, *args, options=()):
    """A handoff-exec of its own (socket and log) for each test, in Apache's allowed directory."""
    return HandoffExec(apache.run_dir / f"exec-{next(SERVERS)}.sock", program, *args, options=options)


def test_a_shell_handler_answers_the_client_through_apache(exec_apache, handlers):
    program = script(handlers, "answer.sh", SHELL_HANDLER)
    with serve(exec_apache, program) as hx:
        resp = handoff(exec_apache, hx.socket_path, {"prompt": "hi", "user": 7})
        assert resp.status == 200, resp.raw
        assert resp.body == b'env:{"prompt": "hi", "user": 7}'
        wait_for(lambda: "handler exited" in hx.log(), 5, "the reaped handler's log line")
        assert hx.children() == []  # reaped: no zombie


def test_a_php_cli_handler_answers_the_client(exec_apache, handlers):
    program = script(handlers, "answer.php", PHP_HANDLER)
    with serve(exec_apache, program) as hx:
        resp = handoff(exec_apache, hx.socket_path, {"user": "ada"})
        assert resp.status == 200, resp.raw
        assert json.loads(resp.body)["hello"] == "ada"


def test_large_payloads_arrive_as_a_file_that_is_removed_afterwards(exec_apache, handlers):
    program = script(handlers, "answer.sh", SHELL_HANDLER)
    files = make_temp_dir()
    with serve(exec_apache, program, options=["--max-env-payload-bytes", "16", "--payload-directory", files]) as hx:
        data = {"prompt": "x" * 2000}
        resp = handoff(exec_apache, hx.socket_path, data)
        assert resp.status == 200, resp.raw
        assert resp.body == b"file:" + json.dumps(data).encode()
        wait_for(lambda: "handler exited" in hx.log(), 5, "the handler's exit")
        [private] = list(files.glob("handoff-exec.*"))  # made for the payload files
        assert list(private.iterdir()) == []  # the file went with its handler
    assert list(files.iterdir()) == []  # and the directory with handoff-exec


def test_handlers_run_concurrently(exec_apache, handlers):
    """20 handlers that each take 1 s, through 8 Apache workers: about 1 s in all, not 20."""
    program = script(handlers, "sleepy.sh", SLEEPY_HANDLER)
    with serve(exec_apache, program, "1") as hx:
        started = time.monotonic()
        results = many(20, lambda i: handoff(exec_apache, hx.socket_path, {"i": i}, timeout=15))
        elapsed = time.monotonic() - started
        assert [r.status for r in results] == [200] * 20, results
        assert all(r.body == b"slept" for r in results)
        assert elapsed < 6, f"20 one-second handlers took {elapsed:.1f} s"


def test_over_the_limit_the_client_gets_503_from_handoff_exec(exec_apache, handlers):
    program = script(handlers, "sleepy.sh", SLEEPY_HANDLER)
    with serve(exec_apache, program, "2", options=["--max-children", "2"]) as hx:
        results = many(6, lambda i: handoff(exec_apache, hx.socket_path, {"i": i}, timeout=15))
        statuses = sorted(r.status for r in results)
        assert statuses == [200, 200, 503, 503, 503, 503], results
        busy = next(r for r in results if r.status == 503)
        assert busy.header("Retry-After") == "1"
        assert json.loads(busy.body)["error"] == "over_capacity"


def test_a_handler_over_its_time_is_ended_and_reaped(exec_apache, handlers):
    program = script(handlers, "sleepy.sh", SLEEPY_HANDLER)
    with serve(exec_apache, program, "60", options=["--timeout-s", "1"]) as hx:
        started = time.monotonic()
        resp = handoff(exec_apache, hx.socket_path, {}, timeout=15)
        elapsed = time.monotonic() - started
        assert resp.raw == b""  # the handler never answered; the connection ends with it
        assert elapsed < 5, f"the over-time handler held the client {elapsed:.1f} s"
        wait_for(lambda: hx.children() == [], 5, "the ended handler reaped")
        assert "SIGTERM" in hx.log()


def test_children_get_only_the_client_socket_and_stderr(exec_apache, handlers):
    program = script(handlers, "fds.sh", FDS_HANDLER)
    with serve(exec_apache, program) as hx:
        resp = handoff(exec_apache, hx.socket_path, {})
        assert resp.status == 200, resp.raw
        # 0 and 1 are the client, 2 is stderr, 3 is the directory `ls` itself opened.
        assert resp.body.split() == [b"0", b"1", b"2", b"3"], resp.body


def test_sigterm_stops_taking_handoffs_and_lets_running_handlers_finish(exec_apache, handlers):
    program = script(handlers, "sleepy.sh", SLEEPY_HANDLER)
    hx = serve(exec_apache, program, "2").start()
    try:
        results = {}
        import threading
        thread = threading.Thread(target=lambda: results.update(first=handoff(exec_apache, hx.socket_path, {}, timeout=15)))
        thread.start()
        wait_for(lambda: len(hx.children()) == 1, 5, "the handler running")
        os.kill(hx.proc.pid, signal.SIGTERM)
        wait_for(lambda: not hx.socket_path.exists(), 5, "the socket removed at once")
        thread.join(15)
        assert results["first"].status == 200 and results["first"].body == b"slept"
        assert hx.proc.wait(10) == 0
        assert "draining" in hx.log() and "stopped" in hx.log()
    finally:
        if hx.proc.poll() is None:
            hx.stop()
