"""End-to-end harness: a private Apache (prefork + mod_php, or event + php-fpm),
the handoffd daemon, and a raw-socket HTTP client that returns the exact bytes.

Everything runs from a temp dir under /tmp, on a free loopback port, and is
stopped by pid. Paths can be overridden with HANDOFFD_BIN, HANDOFF_MODULE,
APACHE_BIN and PHP_FPM_BIN. Run the suite with `python3 -m pytest -q e2e`.
"""

import errno
import json
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PHP_SRC = Path(__file__).resolve().parent / "php"
HANDOFFD_BIN = Path(os.environ.get("HANDOFFD_BIN", REPO / ".build/debug/handoffd"))
MOCK_LLM_BIN = Path(os.environ.get("MOCK_LLM_BIN", REPO / ".build/debug/handoff-mock-llm"))
HANDOFF_EXEC_BIN = Path(os.environ.get("HANDOFF_EXEC_BIN", REPO / ".build/debug/handoff-exec"))
MODULE_PATH = Path(os.environ.get("HANDOFF_MODULE", REPO / "apache/.libs/mod_socket_handoff.so"))
APACHE_BIN = os.environ.get("APACHE_BIN", "/usr/sbin/apache2")
APACHE_MODULES = Path("/usr/lib/apache2/modules")
PHP_FPM_BIN = os.environ.get("PHP_FPM_BIN", "/usr/sbin/php-fpm8.2")
IS_ROOT = os.geteuid() == 0
RUN_USER = "www-data"  # Debian's user for Apache children and php-fpm workers

# Server-scope settings plus per-location overrides, so one Apache covers several configs:
#   /            ConnectTimeoutMs 300, MaxRetries 2 (default)
#   /deadline/   MaxRetries 10: the 300 ms deadline, not the retry count, ends the attempts
#   /patient/    ConnectTimeoutMs 3000, MaxRetries 10: waits for a daemon that starts late
#   /off/        SocketHandoffEnabled Off
MAIN_CONF = [
    "SocketHandoffConnectTimeoutMs 300",
    'Alias /deadline/ "{docroot}/"',
    '<Location "/deadline/">', "    SocketHandoffMaxRetries 10", "</Location>",
    'Alias /patient/ "{docroot}/"',
    '<Location "/patient/">', "    SocketHandoffConnectTimeoutMs 3000",
    "    SocketHandoffMaxRetries 10", "</Location>",
    'Alias /off/ "{docroot}/"',
    '<Location "/off/">', "    SocketHandoffEnabled Off", "</Location>",
    'Alias /injected/ "{docroot}/"',
    '<Location "/injected/">', '    Header always set X-Socket-Handoff "/run/injected.sock"',
    '    Header always set X-Handoff-Data "{{\\"leak\\":1}}"', "</Location>",
]


def free_port():
    """Return a currently free TCP port on 127.0.0.1 (from the ephemeral, high range)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout, what, proc=None):
    """Poll `predicate` until true; raise if `timeout` passes or `proc` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}")
        time.sleep(0.02)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what}")


def stop_process(proc, timeout=10.0):
    """SIGTERM our child by pid, wait; SIGKILL its process group after `timeout`."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        # start_new_session=True made the child a group leader: pgid == its pid.
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def pid_alive(pid):
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stop_pid(pid, timeout=10.0):
    """SIGTERM a process we caused to start (not our child: a reload's successor) and wait."""
    if not pid_alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


def tcp_pair():
    """(client, server): a loopback TCP connection; `server` is what Apache would hand off."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    return client, server


def send_record(path, payload, fds):
    """One handoff record to the SEQPACKET socket at `path`, as the module sends it (without
    waiting for an acknowledgement): `payload` with `fds` attached."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as unix:
        unix.connect(str(path))
        if fds:
            socket.send_fds(unix, [payload], fds)
        else:
            unix.sendmsg([payload])


def read_all(sock, timeout=10.0):
    """Everything the peer sends until it closes (or resets, or `timeout` of silence)."""
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError, socket.timeout):
            return data
        if not chunk:
            return data
        data += chunk


def read_until(sock, marker, timeout=10.0):
    """What the peer sends until `marker` has arrived (or it closes)."""
    sock.settimeout(timeout)
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def handoff_client(path, payload):
    """Hands off a fresh loopback TCP client with `payload` (bytes or a JSON-able object), as
    the module does; returns the client's end, for the test to read."""
    client, server = tcp_pair()
    with server:
        send_record(path, payload if isinstance(payload, bytes) else json.dumps(payload).encode(), [server.fileno()])
    return client


def handoff_response(path, payload, timeout=10.0):
    """A handoff of a fresh client with `payload`; everything the client then receives."""
    with handoff_client(path, payload) as client:
        return read_all(client, timeout)


def status_code(raw):
    """The status of a raw HTTP/1.1 response, or None when it has no status line."""
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else None


def child_processes(pid):
    """The children of `pid`, zombies included, as (pid, state letter) from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append((int(entry), fields[0]))
    return found


def stop_and_wait(pid, timeout=5.0):
    """SIGSTOP `pid` and wait until every one of its threads is stopped: the signal is
    asynchronous, and a thread already running may still do a little work before it stops."""
    os.kill(pid, signal.SIGSTOP)

    def stopped():
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                state = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state not in ("T", "t"):
                return False
        return True
    wait_for(stopped, timeout, f"pid {pid} stopped")


def make_temp_dir(prefix="/tmp/hoe."):
    """A temp dir that Apache's children (www-data) can traverse."""
    d = Path(tempfile.mkdtemp(prefix=prefix))
    d.chmod(0o755)
    return d


def mkdir_public(path):
    """mkdir -p with mode 0755, so www-data can reach sockets inside."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)
    return path


def ensure_module():
    """Return the module path, building it with `make -C apache` if it is missing."""
    if not MODULE_PATH.exists():
        if "HANDOFF_MODULE" in os.environ:
            raise RuntimeError(f"HANDOFF_MODULE={MODULE_PATH} does not exist")
        r = subprocess.run(["make", "-C", str(REPO / "apache")], capture_output=True,
                           text=True, timeout=300)
        if r.returncode != 0 or not MODULE_PATH.exists():
            raise RuntimeError(f"building the module failed:\n{r.stdout}\n{r.stderr}")
    return MODULE_PATH


def seqpacket_accepts(path):
    """True if a SOCK_SEQPACKET listener accepts a connection at `path`."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()


class Started:
    """A process of ours: `start()` returns self once it serves, `stop()` ends it by pid, and
    `with X(...) as x` does both."""

    proc = None

    def stop(self):
        stop_process(self.proc)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class Daemon(Started):
    """handoffd on a SEQPACKET socket at `socket_path`; stderr goes to `<socket>.log`."""

    def __init__(self, socket_path, *args, mock_messages=5, mock_interval_ms=10, env=None, nofile=None):
        self.socket_path = Path(socket_path)
        self.log_path = self.socket_path.with_name(self.socket_path.name + ".log")
        mock = [] if mock_messages is None else ["--mock-messages", str(mock_messages),
                                                  "--mock-interval-ms", str(mock_interval_ms)]
        self.args = ["--socket", str(self.socket_path), "--socket-mode", "0666", *mock,
                     "--drain-timeout-s", "1", "--log-level", "info", "--metrics-address", "off",
                     *map(str, args)]
        self.env = env
        self.nofile = nofile  # an open-file limit for the daemon (soft and hard)
        self.proc = None

    def start(self, timeout=10.0):
        """Start and wait until the socket accepts. Starting a running daemon again (e.g.
        `with Daemon(...).start() as d`) keeps the running one rather than leaking it."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        mkdir_public(self.socket_path.parent)
        with open(self.log_path, "ab") as log:
            for attempt in range(50):
                try:
                    self.proc = subprocess.Popen([str(HANDOFFD_BIN), *self.args],
                                                 stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                                 start_new_session=True,
                                                 env=None if self.env is None else {**os.environ, **self.env},
                                                 preexec_fn=self._limit_files if self.nofile else None)
                    break
                except OSError as e:  # ETXTBSY: a concurrent `swift build` is relinking it
                    if e.errno != errno.ETXTBSY or attempt == 49:
                        raise
                    time.sleep(0.1)
        try:
            wait_for(lambda: seqpacket_accepts(self.socket_path), timeout,
                     f"handoffd on {self.socket_path}", self.proc)
        except RuntimeError as e:
            self.stop()
            raise RuntimeError(f"{e}\n--- handoffd log ---\n{self.log()}") from None
        return self

    def _limit_files(self):
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def stop(self):
        stop_process(self.proc)
        for pid in self.successor_pids():
            stop_pid(pid)

    def successor_pids(self):
        """The processes that took over at reloads, oldest first (started by ours, so ours)."""
        return [int(p) for p in re.findall(r"successor=(\d+) \[handoffd\] reload: the successor accepts",
                                           self.log())]

    def serving_pid(self):
        """The pid that serves now: the newest successor, or the process we started."""
        pids = self.successor_pids()
        return pids[-1] if pids else self.proc.pid

    def log(self):
        return _read(self.log_path)


class Redis(Started):
    """A private redis-server on 127.0.0.1:<free port>, no persistence, stopped by pid.
    `kill()` then `start()` (same port) plays an outage."""

    BIN = shutil.which("redis-server") or "/usr/bin/redis-server"

    def __init__(self, root):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def start(self, timeout=10.0):
        if self.proc is not None and self.proc.poll() is None:
            return self
        with open(self.root / "redis.log", "ab") as log:
            self.proc = subprocess.Popen([self.BIN, "--port", str(self.port), "--bind", "127.0.0.1",
                                          "--save", "", "--appendonly", "no", "--dir", str(self.root),
                                          "--daemonize", "no", "--loglevel", "warning"],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True)

        def ready():
            try:
                return self.command("PING") == "PONG"
            except OSError:
                return False
        wait_for(ready, timeout, f"redis-server on port {self.port}", self.proc)
        return self

    def kill(self):
        """SIGKILL (an outage, not a shutdown) and wait."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def command(self, *args):
        """One command over a fresh connection; returns the reply decoded (simple, bulk,
        integer, or a list for arrays). Raises RuntimeError on an error reply."""
        with socket.create_connection(("127.0.0.1", self.port), 2) as s:
            parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
            s.sendall(b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts))
            reader = s.makefile("rb")
            return _resp(reader)



def _resp(reader):
    line = reader.readline()
    if not line:
        raise OSError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = reader.read(n + 2)[:-2]
        return data.decode("utf-8", "replace")
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_resp(reader) for _ in range(n)]
    raise OSError(f"unexpected reply {line!r}")


class HandoffExec(Started):
    """handoff-exec on a SEQPACKET socket at `socket_path`, running `program` per handoff;
    stderr goes to `<socket>.log`."""

    def __init__(self, socket_path, program, *args, options=()):
        self.socket_path = Path(socket_path)
        self.log_path = self.socket_path.with_name(self.socket_path.name + ".log")
        self.args = ["--socket", str(self.socket_path), "--socket-mode", "0666", *map(str, options), "--", str(program), *map(str, args)]
        self.proc = None

    def start(self, timeout=10.0):
        mkdir_public(self.socket_path.parent)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([str(HANDOFF_EXEC_BIN), *self.args], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, start_new_session=True)
        wait_for(lambda: seqpacket_accepts(self.socket_path), timeout, "handoff-exec", self.proc)
        return self

    def log(self):
        return _read(self.log_path)

    def children(self):
        """Its children (zombies included), as (pid, state letter)."""
        return child_processes(self.proc.pid)


class MockLLM(Started):
    """handoff-mock-llm on 127.0.0.1:<free port>; with `tls`, a self-signed certificate whose
    PEM is at `cert_path` (so clients can verify it). `url` is the OpenAI base URL."""

    def __init__(self, root, tls=True, chunk_count=5, chunk_delay_ms=20, args=()):
        self.root = Path(root)
        self.tls = tls
        self.cert_path = self.root / "mock-llm.pem"
        self.port_file = self.root / "mock-llm.port"
        self.log_path = self.root / "mock-llm.log"
        self.args = ["--listen", "127.0.0.1:0", "--port-file", str(self.port_file),
                     "--chunk-count", str(chunk_count), "--chunk-delay-ms", str(chunk_delay_ms),
                     *(["--tls", "--tls-cert-out", str(self.cert_path)] if tls else []), *args]
        self.proc = None
        self.port = None

    def start(self, timeout=10.0):
        self.root.mkdir(parents=True, exist_ok=True)
        self.port_file.unlink(missing_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([str(MOCK_LLM_BIN), *self.args], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, start_new_session=True)
        wait_for(lambda: self.port_file.exists() and self.port_file.read_text().strip(), timeout,
                 "handoff-mock-llm", self.proc)
        self.port = int(self.port_file.read_text())
        return self

    @property
    def origin(self):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def url(self):
        return self.origin + "/v1"

    def stats(self):
        """The mock's /stats counters."""
        return json.loads(self._get("/stats"))

    def reset_stats(self):
        self._get("/stats/reset", method="POST")

    def _get(self, path, method="GET"):
        context = ssl.create_default_context(cafile=str(self.cert_path)) if self.tls else None
        request = urllib.request.Request(self.origin + path, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            return response.read()


class FakeDaemon:
    """A SEQPACKET listener on its own thread that hands each accepted Unix connection to
    `serve(conn)` (the connection is closed afterwards): a daemon in a few lines, for tests."""

    def __init__(self, path):
        self.path = str(path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._sock.bind(self.path)
        os.chmod(self.path, 0o666)
        self._sock.listen(16)
        self._sock.settimeout(0.1)
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def serve(self, conn):
        raise NotImplementedError

    def _run(self):
        while not self._stop:
            try:
                conn, _ = self._sock.accept()
            except (socket.timeout, OSError):
                continue
            with conn:
                try:
                    self.serve(conn)
                except OSError:
                    pass  # this connection's peer went away; the next one is served all the same

    def close(self):
        self._stop = True
        self._thread.join(2)
        self._sock.close()
        if os.path.exists(self.path):
            os.unlink(self.path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SeqpacketProbe(FakeDaemon):
    """Records each handoff instead of serving it: the payload and, per received fd, (family,
    type, peer address); the fds are closed unanswered."""

    def __init__(self, path):
        self.connections = 0
        self.payloads = []
        self.fds = []   # one list of (family, type, peername) per message
        super().__init__(path)

    def serve(self, conn):
        self.connections += 1
        conn.settimeout(1.0)
        try:
            msg, fds, _, _ = socket.recv_fds(conn, 256 * 1024, 4)
            self.payloads.append(msg)
            self.fds.append([_describe_and_close(fd) for fd in fds])
        except OSError:
            pass


def _describe_and_close(fd):
    with socket.socket(fileno=fd) as s:
        try:
            peer = s.getpeername()
        except OSError:
            peer = None
        return s.family, s.type, peer


class PhpFpm:
    """A private php-fpm master (foreground) with one static pool on a unix socket in `root`."""

    def __init__(self, root, children=4):
        self.root = Path(root)
        self.socket_path = self.root / "php-fpm.sock"
        self.conf = self.root / "php-fpm.conf"
        self.log_path = self.root / "logs/php-fpm.log"
        user = f"user = {RUN_USER}\ngroup = {RUN_USER}\n" if IS_ROOT else ""
        self.conf.write_text(
            "[global]\n"
            f"error_log = {self.log_path}\n"
            "daemonize = no\n"
            "[e2e]\n"
            f"{user}"
            f"listen = {self.socket_path}\n"
            "listen.mode = 0666\n"
            "pm = static\n"
            f"pm.max_children = {children}\n"
            "catch_workers_output = yes\n")
        self.proc = None

    def start(self, timeout=15.0):
        with open(self.root / "logs/php-fpm.stderr", "ab") as err:
            self.proc = subprocess.Popen([PHP_FPM_BIN, "-F", "-y", str(self.conf)],
                                         stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                         start_new_session=True)
        try:
            wait_for(self.socket_path.exists, timeout, "php-fpm socket", self.proc)
        except RuntimeError as e:
            self.stop()
            logs = _read(self.log_path) + _read(self.root / "logs/php-fpm.stderr")
            raise RuntimeError(f"{e}\n{logs}") from None
        return self

    def stop(self):
        stop_process(self.proc)


def _read(path):
    path = Path(path)
    return path.read_text(errors="replace") if path.exists() else ""


class Apache:
    """A private Apache on 127.0.0.1:<free port>.

    mpm='prefork' runs PHP with mod_php; mpm='event' runs it with a private php-fpm
    through proxy_fcgi. `run_dir` (<root>/run/) is the SocketHandoffAllowedPrefix.
    `conf` lines are appended to the server config (e.g. SocketHandoff* directives);
    `{docroot}`, `{run}` and `{root}` in them are replaced by those paths. `env` adds to the
    environment Apache starts with.
    """

    def __init__(self, mpm="prefork", workers=8, conf=(), h2=False, module=MODULE_PATH,
                 docroot_src=PHP_SRC, port=None, root=None, env=None):
        assert mpm in ("prefork", "event")
        self.mpm, self.workers, self.h2, self.module = mpm, workers, h2, module
        self.env = {**os.environ, **env} if env else None
        self.root = Path(root) if root else make_temp_dir()
        self.run_dir = mkdir_public(self.root / "run")
        self.docroot = self.root / "htdocs"
        shutil.copytree(docroot_src, self.docroot)
        for p in [self.docroot, *self.docroot.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        (self.root / "logs").mkdir()
        (self.root / "runtime").mkdir()
        self.port = port or free_port()
        self.error_log = self.root / "logs/error.log"
        self.access_log = self.root / "logs/access.log"
        self.fpm = PhpFpm(self.root, children=max(workers, 4)) if mpm == "event" else None
        self.conf_path = self.root / "httpd.conf"
        self.conf_path.write_text(self._config(conf))
        self.proc = None

    def _config(self, extra):
        mods = ["mpm_" + self.mpm, "authz_core", "mime", "dir", "alias", "headers", "env"]  # log_config, unixd: built in
        if self.mpm == "event":
            mods += ["proxy", "proxy_fcgi"]
        if self.h2:
            mods.append("http2")
        lines = [f'LoadModule {m}_module "{APACHE_MODULES}/mod_{m}.so"' for m in mods]
        if self.mpm == "prefork":
            lines.append(f'LoadModule php_module "{APACHE_MODULES}/libphp8.2.so"')
        loglevel = "info"
        if self.module:
            lines.append(f'LoadModule socket_handoff_module "{self.module}"')
            loglevel += " socket_handoff:debug"
        w = self.workers
        if self.mpm == "prefork":
            mpm = (f"StartServers {w}\nMinSpareServers 1\nMaxSpareServers {w}\n"
                   f"ServerLimit {w}\nMaxRequestWorkers {w}\n")
            php = "SetHandler application/x-httpd-php"
        else:
            tpc = min(w, 25)
            servers = -(-w // tpc)
            mpm = (f"StartServers {servers}\nServerLimit {servers}\nThreadsPerChild {tpc}\n"
                   f"ThreadLimit {tpc}\nMaxRequestWorkers {servers * tpc}\n"
                   f"MinSpareThreads 1\nMaxSpareThreads {servers * tpc + tpc}\n")
            php = f'SetHandler "proxy:unix:{self.fpm.socket_path}|fcgi://localhost"'
        user = f"User {RUN_USER}\nGroup {RUN_USER}\n" if IS_ROOT else ""
        handoff = f'SocketHandoffAllowedPrefix "{self.run_dir}/"\n' if self.module else ""
        return "\n".join(lines) + f"""
ServerRoot "{self.root}"
ServerName 127.0.0.1
Listen 127.0.0.1:{self.port}
PidFile "{self.root}/httpd.pid"
DefaultRuntimeDir "{self.root}/runtime"
ErrorLog "{self.error_log}"
LogLevel {loglevel}
{user}{mpm}MaxConnectionsPerChild 0
Timeout 30
TypesConfig /etc/mime.types
LogFormat "%h %t \\"%r\\" %>s %b %D" e2e
CustomLog "{self.access_log}" e2e
DocumentRoot "{self.docroot}"
DirectoryIndex index.html
<Directory "{self.docroot}">
    Require all granted
</Directory>
<FilesMatch "\\.php$">
    {php}
</FilesMatch>
{"Protocols h2c http/1.1" if self.h2 else ""}
{handoff}""" + "\n".join(line.format(docroot=self.docroot, run=self.run_dir, root=self.root)
                                  for line in extra) + "\n"

    def start(self, timeout=20.0):
        """Start in the foreground (own session) and wait for the port to accept."""
        if self.fpm:
            self.fpm.start()
        stderr = self.root / "logs/stderr.log"
        with open(stderr, "ab") as err:
            self.proc = subprocess.Popen([APACHE_BIN, "-d", str(self.root), "-f", str(self.conf_path),
                                          "-DFOREGROUND"], stdin=subprocess.DEVNULL, env=self.env,
                                         stdout=err, stderr=err, start_new_session=True)

        def listening():
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return True
            except OSError:
                return False
        try:
            wait_for(listening, timeout, f"apache ({self.mpm}) on port {self.port}", self.proc)
        except RuntimeError as e:
            self.stop()
            raise RuntimeError(f"{e}\n--- stderr ---\n{_read(stderr)}"
                               f"--- error.log ---\n{self.error_log_text()}") from None
        return self

    def stop(self):
        stop_process(self.proc)
        if self.fpm:
            self.fpm.stop()

    def cleanup(self):
        """Stop everything and remove the temp dir."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def error_log_text(self):
        return _read(self.error_log)

    def access_log_entries(self):
        """Access-log lines as (request line, status, bytes, %D µs)."""
        out = []
        for line in _read(self.access_log).splitlines():
            req = line.split('"')[1]
            status, nbytes, micros = line.rsplit('"', 1)[1].split()
            out.append((req, status, nbytes, int(micros)))
        return out

    def request(self, *args, **kwargs):
        return http_request(self.port, *args, **kwargs)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc):
        self.cleanup()


@dataclass
class Response:
    """What the client saw: the exact bytes plus a parsed view."""
    raw: bytes
    status: int = 0
    reason: str = ""
    headers: list = field(default_factory=list)   # [(name, value)] in wire order
    body: bytes = b""

    def header(self, name):
        """Value of the first header `name` (case-insensitive) or None."""
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def names(self):
        return {k.lower() for k, _ in self.headers}

    def events(self):
        """The `data:` payloads of the SSE body, one string per event."""
        return sse_data(self.body)


def parse_response(raw):
    """Split a complete HTTP/1.x response (read to EOF) into a Response."""
    resp = Response(raw=raw)
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return resp
    lines = head.decode("utf-8", "surrogateescape").split("\r\n")
    _, code, *reason = lines[0].split(" ", 2)
    resp.status, resp.reason = int(code), (reason[0] if reason else "")
    for line in lines[1:]:
        k, _, v = line.partition(":")
        resp.headers.append((k.strip(), v.strip()))
    if (resp.header("Transfer-Encoding") or "").lower() == "chunked":
        body = dechunk(body)
    resp.body = body
    return resp


def dechunk(data):
    out, pos = b"", 0
    while True:
        end = data.index(b"\r\n", pos)
        size = int(data[pos:end].split(b";")[0], 16)
        if size == 0:
            return out
        out += data[end + 2:end + 2 + size]
        pos = end + 2 + size + 2


def http_request(port, path, method="GET", headers=None, body=b"", timeout=10.0):
    """Send one HTTP/1.1 request (Connection: close) over a raw socket, read to EOF.

    Every byte the server sent is kept in Response.raw. Raises TimeoutError if the
    response does not end within `timeout` seconds overall.
    """
    if isinstance(body, str):
        body = body.encode()
    hdrs = {"Host": f"127.0.0.1:{port}", "Connection": "close", **(headers or {})}
    if body or method == "POST":
        hdrs["Content-Length"] = str(len(body))
    req = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
    deadline = time.monotonic() + timeout
    chunks = []
    with socket.create_connection(("127.0.0.1", port), timeout) as s:
        s.sendall(req.encode() + b"\r\n" + body)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"response not complete after {timeout}s: {b''.join(chunks)[:500]!r}")
            s.settimeout(left)
            try:
                d = s.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                break
            if not d:
                break
            chunks.append(d)
    return parse_response(b"".join(chunks))


def post_json(port, path, obj, **kw):
    """POST `obj` as a JSON body."""
    return http_request(port, path, "POST", {"Content-Type": "application/json"},
                        json.dumps(obj, ensure_ascii=False).encode(), **kw)


def sse_data(body):
    """The data payloads of an SSE body (LF-separated events, as handoffd writes them)."""
    text = body.decode("utf-8")
    events = []
    for block in text.split("\n\n"):
        data = [line[5:].removeprefix(" ") for line in block.split("\n") if line.startswith("data:")]
        if data:
            events.append("\n".join(data))
    return events


def curl(*args, timeout=20):
    """Run curl; returns (returncode, stdout bytes, stderr text)."""
    r = subprocess.run(["curl", "-sS", "--max-time", str(timeout), *args],
                       capture_output=True, timeout=timeout + 5)
    return r.returncode, r.stdout, r.stderr.decode(errors="replace")
