"""`make demo`: a private Apache (prefork + mod_php) with mod_socket_handoff, handoffd and the
mock LLM upstream, all on 127.0.0.1, with a page where you type a prompt and watch the tokens.

    python3 e2e/demo.py start    # start everything, print a streamed response, leave it running
    python3 e2e/demo.py stop     # stop what `start` started (by pid)

With OPENAI_BASE_URL (and OPENAI_API_KEY) set, the page's "OpenAI-compatible" backend talks to
that API instead of the local mock.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import APACHE_MODULES, REPO, Apache, Daemon, MockLLM, Redis, free_port, mkdir_public  # noqa: E402

STATE_DIR = Path(os.environ.get("HANDOFF_DEMO_DIR", "/tmp/handoff-demo"))
STATE = STATE_DIR / "state.json"
DEMO_DOCROOT = REPO / "demo"


def status_panel_conf(metrics_port):
    """Apache lines for the page's "why" panel: mod_status on loopback, and where the daemon's
    /metrics are."""
    return [f'LoadModule status_module "{APACHE_MODULES}/mod_status.so"',
            f'LoadModule authz_host_module "{APACHE_MODULES}/mod_authz_host.so"',
            '<Location "/server-status">', "    SetHandler server-status", "    Require local", "</Location>",
            f'SetEnv HANDOFF_METRICS_URL "http://127.0.0.1:{metrics_port}/metrics"']


def port_is_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def start():
    if STATE.exists():
        print(f"A demo seems to be running already (see {STATE}); run `make demo-stop` first.")
        return 1
    shutil.rmtree(STATE_DIR, ignore_errors=True)
    mkdir_public(STATE_DIR)
    pids = {}
    try:
        upstream_args = []
        if os.environ.get("OPENAI_BASE_URL"):
            upstream = os.environ["OPENAI_BASE_URL"]
            print(f"openai backend: {upstream}")
        else:
            mock = MockLLM(STATE_DIR / "mock-llm", chunk_count=24, chunk_delay_ms=120).start()
            pids["mock-llm"] = mock.proc.pid
            upstream = mock.url
            upstream_args = ["--upstream-ca-file", str(mock.cert_path)]
            print(f"openai backend: handoff-mock-llm at {upstream} (TLS, HTTP/2)")

        # With redis-server installed, streams are resumable: the page's "Drop connection"
        # button shows a reconnect picking up where it was, and a second tab can follow.
        metrics_port = free_port()
        redis_args, conf = [], ['SetEnv HANDOFF_SOCKET "{run}/handoffd.sock"', *status_panel_conf(metrics_port)]
        if shutil.which("redis-server"):
            redis = Redis(STATE_DIR / "redis").start()
            pids["redis"] = redis.proc.pid
            redis_args = ["--redis-url", redis.url]
            conf.append("SetEnv HANDOFF_RESUMABLE 1")
            print(f"redis: {redis.url} (resumable streams)")

        port = int(os.environ.get("HANDOFF_DEMO_PORT", "8080"))
        if not port_is_free(port):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
        apache = Apache("prefork", workers=8, docroot_src=DEMO_DOCROOT, port=port, root=STATE_DIR / "apache", conf=conf)
        daemon = Daemon(apache.run_dir / "handoffd.sock", "--openai-base-url", upstream, *upstream_args, *redis_args,
                        "--mock-text", "words", "--metrics-address", f"127.0.0.1:{metrics_port}",
                        mock_messages=18, mock_interval_ms=150).start()
        pids["handoffd"] = daemon.proc.pid
        apache.start()
        pids["apache"] = apache.proc.pid
        STATE.write_text(json.dumps({"pids": pids, "port": port, "root": str(STATE_DIR)}))
    except Exception:
        for pid in pids.values():
            _stop(pid)
        raise

    url = f"http://127.0.0.1:{port}/"
    print(f"\nA streamed response through Apache (curl -N -X POST {url}stream.php):\n")
    body = json.dumps({"prompt": "Why hand off the socket?", "backend": "mock"})
    subprocess.run(["curl", "-sS", "-N", "-i", "-X", "POST", "-H", "Content-Type: application/json",
                    "--data", body, f"{url}stream.php"], check=False, timeout=30)
    print(f"\nOpen {url} in a browser, type a prompt and watch the tokens arrive.")
    print("Logs: " + str(STATE_DIR) + "  ·  Stop everything with: make demo-stop")
    return 0


def _stop(pid):
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    except PermissionError:
        os.kill(pid, signal.SIGTERM)
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stop():
    if not STATE.exists():
        print("No demo is running.")
        return 0
    state = json.loads(STATE.read_text())
    # Apache first (no new handoffs), then the daemon (drains), then the upstream.
    for name in ("apache", "handoffd", "mock-llm", "redis"):
        if name in state["pids"]:
            _stop(state["pids"][name])
    STATE.unlink()
    print("Demo stopped.")
    return 0


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "start"
    sys.exit({"start": start, "stop": stop}.get(command, lambda: print(__doc__) or 2)())
