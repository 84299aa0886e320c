"""`make bench`: every performance figure of the project, measured side by side in one run on
this machine, written to bench/results/REPORT.md and bench/results/report.json.

Release builds; daemon and load generator share the machine's cores (stated in the report).
Each figure starts a fresh daemon, so RSS baselines are clean. Benchmarks report numbers; they
do not pass or fail.
"""

import json
import os
import platform
import random
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RELEASE = REPO / ".build/release"
os.environ.setdefault("HANDOFFD_BIN", str(RELEASE / "handoffd"))
os.environ.setdefault("MOCK_LLM_BIN", str(RELEASE / "handoff-mock-llm"))
sys.path.insert(0, str(REPO / "e2e"))
sys.path.insert(0, str(REPO / "bench"))
from harness import Apache, Daemon, MockLLM, child_processes, make_temp_dir, mkdir_public, send_record, tcp_pair  # noqa: E402

BENCH = RELEASE / "handoff-bench"
RESULTS = REPO / "bench/results"
QUICK = os.environ.get("BENCH_QUICK") == "1"  # a smoke run with small numbers


def scale(n):
    return max(10, n // 50) if QUICK else n


class RSSWatcher:
    """An independent RSS measurement: polls /proc/<pid>/status (VmRSS) of the daemon and its
    children every 100 ms, beside handoff-bench's own 1 s sampler."""

    def __init__(self, pid):
        self.pid, self.peak, self.running = pid, 0, True
        self.thread = threading.Thread(target=self._run, daemon=True)

    def family(self):
        return [self.pid] + [pid for pid, _ in child_processes(self.pid)]

    def rss(self):
        total = 0
        for pid in self.family():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
        return total

    def _run(self):
        while self.running:
            self.peak = max(self.peak, self.rss())
            time.sleep(0.1)

    def __enter__(self):
        self.idle = self.rss()
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()


def run_bench(args, title, nice=0):
    """Runs handoff-bench with --json; returns the parsed report."""
    out = make_temp_dir() / "report.json"
    cmd = [str(BENCH), *map(str, args), "--json", str(out), "--title", title]
    if nice:
        cmd = ["nice", "-n", str(nice), *cmd]
    print("$", " ".join(cmd[0:1] + [a if len(a) < 80 else a[:77] + "..." for a in cmd[1:]]), flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    print(proc.stdout, flush=True)
    if not out.exists():
        raise RuntimeError(f"handoff-bench failed: {proc.stderr[-2000:]}")
    report = json.loads(out.read_text())
    report["command"] = ("nice -n %d " % nice if nice else "") + " ".join(map(str, ["handoff-bench", *args]))
    report["stdout"] = proc.stdout
    return report


def request_head(port, path):
    """POSTs to `path` and reads only the response head (a stream would take its full length)."""
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk


def fresh_daemon(root, *args, messages=18, interval=500):
    """The daemon as deployed: the access log stays on (its default), written to the log file."""
    mkdir_public(root)
    return Daemon(root / "d.sock", *args, mock_messages=messages, mock_interval_ms=interval).start()


def lat(report, name, p):
    return report["latency_summary_ms"].get(name, {}).get(p, 0.0)


def figure_memory(results):
    """Daemon RSS per held stream at 15 000 streams of 18 events x 500 ms."""
    n = scale(15000)
    root = make_temp_dir()
    daemon = fresh_daemon(root)
    try:
        time.sleep(0.5)
        with RSSWatcher(daemon.proc.pid) as watch:
            report = run_bench(["load", "--socket", daemon.socket_path, "--connections", n, "--ramp-up", 5, "--hold", 12,
                                "--expect-events", 18, "--processes", 2, "--pid", daemon.proc.pid], "memory")
        report["independent_rss"] = {"idle_kib": watch.idle, "peak_kib": watch.peak,
                                     "kib_per_stream": (watch.peak - watch.idle) / max(1, report["result"]["peakConcurrent"])}
        results["memory"] = report
    finally:
        daemon.stop()


def figure_ttfe(results):
    """Time to first event at 15 000 streams ramped over 10 s: three runs (tail latency on two
    shared, noisy cores varies from run to run); the run with the median p99 is reported."""
    n = scale(15000)
    runs = []
    for _ in range(1 if QUICK else 3):
        daemon = fresh_daemon(make_temp_dir())
        try:
            runs.append(run_bench(["load", "--socket", daemon.socket_path, "--connections", n, "--ramp-up", 10,
                                   "--hold", 15, "--expect-events", 18, "--processes", 2, "--pid", daemon.proc.pid], "ttfe"))
        finally:
            daemon.stop()
    runs.sort(key=lambda r: lat(r, "first_event", "p99") or 0)
    median = runs[len(runs) // 2]
    median["runs_p99_ms"] = [lat(r, "first_event", "p99") for r in runs]
    results["ttfe"] = median


def figure_throughput(results):
    """Handoffs per second: 1-event streams, 64 concurrent senders, closed loop for 10 s."""
    daemon = fresh_daemon(make_temp_dir(), messages=1, interval=0)
    try:
        results["throughput"] = run_bench(["load", "--socket", daemon.socket_path, "--connections", 64, "--sustained",
                                           "--hold", 3 if QUICK else 10, "--expect-events", 1, "--pid", daemon.proc.pid],
                                          "throughput")
    finally:
        daemon.stop()


def figure_fifty_thousand(results):
    """50 000 concurrent streams: 3 daemon workers (20 000 fds per process here), 4 bench processes;
    acknowledged handoffs, as the module sends by default (fire-and-forget handoffs lose about
    one record in 250 000–500 000 in the kernel: bench/repro/seqpacket_loss.c)."""
    n = scale(50000)
    root = make_temp_dir()
    daemon = fresh_daemon(root, "--workers", 3, messages=60, interval=500)
    try:
        time.sleep(1)
        results["fifty_thousand"] = run_bench(["load", "--socket", daemon.socket_path, "--connections", n, "--ramp-up", 20,
                                               "--hold", 20, "--stream-timeout", 90, "--expect-events", 60,
                                               "--processes", 4, "--ack-timeout-ms", 1000, "--pid", daemon.proc.pid], "50k")
    finally:
        daemon.stop()


def figure_hundred_thousand(results):
    """100 000 concurrent streams on this box: 7 daemon workers and 7 load processes (20 000
    descriptors per process here), 60 events x 1 s per stream, ramp 40 s, so all are held at
    once; acknowledged handoffs, as the module sends by default. RSS is the supervisor plus its
    workers, measured by both samplers."""
    n = scale(100000)
    root = make_temp_dir()
    daemon = fresh_daemon(root, "--workers", 7, messages=60, interval=1000)
    try:
        time.sleep(1.5)
        with RSSWatcher(daemon.proc.pid) as watch:
            report = run_bench(["load", "--socket", daemon.socket_path, "--connections", n, "--ramp-up", 40, "--hold", 30,
                                "--stream-timeout", 150, "--expect-events", 60, "--processes", 7, "--ack-timeout-ms", 1000,
                                "--pid", daemon.proc.pid], "100k")
        report["independent_rss"] = {"idle_kib": watch.idle, "peak_kib": watch.peak,
                                     "kib_per_stream": (watch.peak - watch.idle) / max(1, report["result"]["peakConcurrent"])}
        results["hundred_thousand"] = report
    finally:
        daemon.stop()


def figure_apache(results):
    """10 000 concurrent streams through a real Apache (prefork + mod_php, 16 workers)."""
    n = scale(10000)
    # LogLevel warn, as in production: the module's one INFO line per handoff is not written.
    apache = Apache("prefork", workers=16, conf=["ListenBacklog 4096", "KeepAlive Off", "LogLevel warn", 'SetEnv HANDOFF_SOCKET "{run}/d.sock"',
                                                 'Alias /off/ "{docroot}/"', '<Location "/off/">', "SocketHandoffEnabled Off", "</Location>",
                                                 'Alias /noack/ "{docroot}/"', '<Location "/noack/">', "SocketHandoffAck Off", "</Location>",
                                                 'Alias /ack/ "{docroot}/"'])
    (apache.docroot / "empty.php").write_text("<?php\n")
    (apache.docroot / "static.txt").write_text("static\n")
    daemon = fresh_daemon(apache.run_dir, messages=18, interval=1000)
    try:
        apache.start()
        # Apache's own cost per request without load, side by side: where the time goes. The
        # variants alternate in rounds of 10 requests, so drift on this shared machine hits all.
        variants = [("static file", "/static.txt"), ("empty PHP script", "/empty.php"),
                    ("bench.php, SocketHandoffEnabled Off", "/off/bench.php"),
                    ("bench.php, handed off, SocketHandoffAck Off", "/noack/bench.php"),
                    ("bench.php, handed off, acknowledged", "/bench.php")]
        samples = {label: [] for label, _ in variants}
        for round_ in range(10 if QUICK else 150):
            for label, path in variants:
                before = len(apache.access_log_entries())
                for _ in range(10):
                    request_head(apache.port, path)
                if round_ >= 5:  # warm-up rounds are not counted
                    samples[label] += [e[3] for e in apache.access_log_entries()[before:]]
        baseline = [[label, statistics.median(samples[label])] for label, _ in variants]
        before = len(apache.access_log_entries())
        # Under the load, the same script without a handoff, handed off without and with the
        # ack, in shuffled rounds every 50 ms: what the load costs Apache whatever the module does.
        probing = threading.Event()
        under_load = [("bench.php, SocketHandoffEnabled Off", "/off/bench.php"),
                      ("bench.php, handed off, SocketHandoffAck Off", "/noack/bench.php"),
                      ("bench.php, handed off, acknowledged", "/ack/bench.php")]

        def probe():
            rounds = random.Random(7)
            while not probing.wait(0.05):
                for _, path in rounds.sample(under_load, len(under_load)):
                    request_head(apache.port, path)
        prober = threading.Thread(target=probe, daemon=True)
        prober.start()
        try:
            # The load generator stands in for remote clients: it runs at a lower priority.
            report = run_bench(["http", "--url", f"http://127.0.0.1:{apache.port}/bench.php", "--data", "",
                                "--connections", n, "--ramp-up", 15, "--hold", 25, "--expect-events", 18,
                                "--pid", daemon.proc.pid], "apache", nice=10)
        finally:
            probing.set()
            prober.join()
        report["apache_baseline_D_us"] = baseline
        entries = apache.access_log_entries()[before:]
        def path_of(entry):
            parts = entry[0].split()  # "-" for a request Apache never read (408)
            return parts[1] if len(parts) > 1 else None

        def median_or_none(values):
            return statistics.median(values) if values else None
        report["apache_under_load_D_us"] = [[label, median_or_none([e[3] for e in entries if path_of(e) == path])]
                                            for label, path in under_load]
        micros = sorted(entry[3] for entry in entries if path_of(entry) == "/bench.php")
        report["apache_D_us"] = {
            "count": len(micros),
            "p50": statistics.median(micros) if micros else None,
            "p90": micros[int(len(micros) * 0.9)] if micros else None,
            "p99": micros[int(len(micros) * 0.99)] if micros else None,
        }
        results["apache"] = report
    finally:
        apache.cleanup()
        daemon.stop()


def figure_openai(results):
    """The openai backend against the mock over TLS h2: daemon RSS per stream (client side and
    upstream side together) and upstream connections, at 1 000 and 5 000 streams."""
    for nominal in (1000, 5000):
        n = scale(nominal)
        root = make_temp_dir()
        mock = MockLLM(root / "llm", chunk_count=18, chunk_delay_ms=500, args=["--quiet"]).start()
        daemon = fresh_daemon(root / "run", "--backend", "openai", "--openai-base-url", mock.url,
                              "--upstream-ca-file", mock.cert_path)
        try:
            time.sleep(0.5)
            mock.reset_stats()
            report = run_bench(["load", "--socket", daemon.socket_path, "--connections", n, "--ramp-up", 3, "--hold", 15,
                                "--expect-events", 18, "--processes", 2, "--pid", daemon.proc.pid], f"openai-{n}")
            report["upstream"] = mock.stats()
            results[f"openai_{nominal}"] = report
        finally:
            daemon.stop()
            mock.stop()


def figure_cancel(results):
    """Cancel latency: client disconnect mid-stream until the mock's /stats shows the upstream
    stream cancelled (20 runs of the conformance scenario)."""
    root = make_temp_dir()
    mock = MockLLM(root / "llm", chunk_count=6, chunk_delay_ms=20, args=["--quiet"]).start()
    daemon = fresh_daemon(root / "run", "--openai-base-url", mock.url, "--upstream-ca-file", mock.cert_path)
    latencies = []
    try:
        for _ in range(5 if QUICK else 20):
            proc = subprocess.run([str(BENCH), "conformance", "--socket", str(daemon.socket_path), "--upstream", mock.origin,
                                   "--upstream-ca-file", str(mock.cert_path), "--only", "client-disconnect", "--format", "json"],
                                  capture_output=True, text=True, timeout=60)
            note = json.loads(proc.stdout)["results"][0]["notes"]
            match = re.search(r"([\d.]+)\s*ms", note[0]) if note else None
            if match:
                latencies.append(float(match.group(1)))
        results["cancel"] = {"runs": len(latencies), "median_ms": statistics.median(latencies),
                             "max_ms": max(latencies), "samples_ms": latencies}
    finally:
        daemon.stop()
        mock.stop()


def figure_cpu(results):
    """Daemon CPU per stream and per relayed event, both paths, three runs each (median):
    openai against handoff-mock-llm over TLS h2 (chunks every 20 ms, 2 000 streams over 2 s,
    i.e. 1 000 handoffs/s), and the mock backend back to back (64 senders, closed loop, 10 s).
    Per event: the slope between 18 and 6 events per stream. openai with 18 chunks also runs
    with wake-up batching off (`--loop-batch-us 0`), alternating with the default. A profile
    of one openai run."""
    import cpu
    figures = {}

    def openai_run(events, daemon_args, title, profiled):
        root = make_temp_dir()
        mock = MockLLM(root / "llm", chunk_count=events, chunk_delay_ms=20, args=["--quiet"]).start()
        daemon = fresh_daemon(root / "run", "--backend", "openai", "--openai-base-url", mock.url, "--upstream-ca-file", mock.cert_path, *daemon_args)
        try:
            time.sleep(0.5)
            args = ["load", "--socket", daemon.socket_path, "--connections", scale(2000), "--ramp-up", 2, "--hold", 5,
                    "--expect-events", events, "--pid", daemon.proc.pid]
            profile = cpu.Profile(daemon.proc.pid, root / "perf.data") if profiled else None
            upstream_before = cpu.cpu_seconds([mock.proc.pid])
            if profile:
                with profile:
                    report = cpu.measured(lambda: [daemon.proc.pid], lambda: run_bench(args, title))
                figures["openai_profile"] = profile.summary()
            else:
                report = cpu.measured(lambda: [daemon.proc.pid], lambda: run_bench(args, title))
            # The mock upstream shares the cores: its CPU explains first-event latency here.
            report["upstream_cpu_us_per_stream"] = (cpu.cpu_seconds([mock.proc.pid]) - upstream_before) * 1e6 / max(1, report["result"]["completed"])
            return report
        finally:
            daemon.stop()
            mock.stop()

    # 18 chunks with wake-up batching (the default) and without, alternating, so the two
    # compare under the same neighbours.
    for events, variants in ((18, (("", []), ("_unbatched", ["--loop-batch-us", 0]))), (6, (("", []),))):
        runs = {suffix: [] for suffix, _ in variants}
        for attempt in range(1 if QUICK else 3):
            for suffix, daemon_args in variants:
                profiled = events == 18 and attempt == 0 and suffix == ""
                runs[suffix].append(openai_run(events, daemon_args, f"cpu-openai-{events}{suffix}", profiled))
        for suffix, _ in variants:
            figures[f"openai_{events}{suffix}"] = cpu.median_run(runs[suffix])
    for events in (18, 6):
        runs = []
        for _ in range(1 if QUICK else 3):
            daemon = fresh_daemon(make_temp_dir(), messages=events, interval=0)
            try:
                args = ["load", "--socket", daemon.socket_path, "--connections", 64, "--sustained", "--hold", 3 if QUICK else 10,
                        "--expect-events", events, "--pid", daemon.proc.pid]
                runs.append(cpu.measured(lambda: [daemon.proc.pid], lambda: run_bench(args, f"cpu-mock-{events}")))
            finally:
                daemon.stop()
        figures[f"mock_{events}"] = cpu.median_run(runs)
    for path in ("openai", "mock"):
        figures[f"{path}_us_per_event"] = cpu.slope([figures[f"{path}_18"]["cpu_us_per_stream"], figures[f"{path}_6"]["cpu_us_per_stream"]], [18, 6])
    results["cpu"] = figures


def figure_stalled(results):
    """Clients that stop reading, on the openai backend with a long upstream stream (100 000
    chunks, no delay): the daemon pauses each upstream stream (no HTTP/2 window given back) and
    the mock waits for its window, so both stay bounded. RSS of both, before and after 15 s."""
    n = scale(300)
    root = make_temp_dir()
    mock = MockLLM(root / "llm", chunk_count=100000, chunk_delay_ms=0, args=["--quiet"]).start()
    daemon = fresh_daemon(root / "run", "--backend", "openai", "--openai-base-url", mock.url, "--upstream-ca-file", mock.cert_path)
    clients = []
    try:
        time.sleep(0.5)
        daemon_idle, mock_idle = RSSWatcher(daemon.proc.pid).rss(), RSSWatcher(mock.proc.pid).rss()
        for _ in range(n):
            client, server = tcp_pair()
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            send_record(daemon.socket_path, b'{"backend":"openai","prompt":"stall"}', [server.fileno()])
            server.close()
            clients.append(client)  # never read
        samples = []
        for second in range(15):
            time.sleep(1)
            samples.append((second + 1, RSSWatcher(daemon.proc.pid).rss(), RSSWatcher(mock.proc.pid).rss()))
        results["stalled"] = {
            "clients": n, "daemon_idle_kib": daemon_idle, "mock_idle_kib": mock_idle, "samples": samples,
            "daemon_kib_per_stream": (samples[-1][1] - daemon_idle) / n, "mock_kib_per_stream": (samples[-1][2] - mock_idle) / n,
        }
    finally:
        for client in clients:
            client.close()
        daemon.stop()
        mock.stop()


def figure_redis(results):
    """Resumable against plain streams at 5 000, 1 000 followers, a channel to 10 000 clients."""
    import redis_bench
    redis_bench.figure(results, run_bench, RSSWatcher, scale, QUICK)


def machine():
    cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
    mem = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) // 1024 // 1024
    swift = subprocess.run(["swift", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    limit = subprocess.run(["sh", "-c", "ulimit -n"], capture_output=True, text=True).stdout.strip()
    return {"cores": os.cpu_count(), "cpu": cpu.group(1) if cpu else "?", "memory_gib": mem,
            "kernel": platform.release(), "swift": swift, "open_files_per_process": limit,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def main():
    subprocess.run(["swift", "build", "-c", "release"], cwd=REPO, check=True)
    subprocess.run(["make", "-C", str(REPO / "apache")], check=True, capture_output=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    only = set(sys.argv[1:])
    previous = RESULTS / "raw" / "report-full.json"
    if not previous.exists():
        previous = RESULTS / "report.json"
    # Re-running some figures keeps the others from the last full run.
    results = json.loads(previous.read_text()) if only and previous.exists() else {}
    # Every figure keeps the date it was measured on, so a report that mixes runs says so.
    dates = results.setdefault("dates", {})
    earlier = results.get("machine", {}).get("date")
    for name in ("memory", "ttfe", "throughput", "fifty_thousand", "apache", "openai_1000", "openai_5000", "cancel", "cpu", "hundred_thousand", "stalled", "redis"):
        if name in results and earlier:
            dates.setdefault(name, earlier)
    results.update({"machine": machine(), "quick": QUICK})
    for name, run in [("memory", figure_memory), ("ttfe", figure_ttfe), ("throughput", figure_throughput),
                      ("fifty_thousand", figure_fifty_thousand), ("hundred_thousand", figure_hundred_thousand), ("apache", figure_apache), ("openai", figure_openai),
                      ("cancel", figure_cancel), ("cpu", figure_cpu), ("stalled", figure_stalled), ("redis", figure_redis)]:
        if only and name not in only:
            continue
        print(f"\n=== {name} ===", flush=True)
        try:
            run(results)
            stamp = results["machine"]["date"]
            for key in (["openai_1000", "openai_5000"] if name == "openai" else [name]):
                results["dates"][key] = stamp
        except Exception as error:  # a figure that could not be measured is reported as such
            results[f"{name}_error"] = str(error)
            print(f"{name} failed: {error}", flush=True)
    # The full reports (every sample, the load generator's output) stay out of git; report.json
    # keeps what REPORT.md is made of.
    (RESULTS / "raw").mkdir(exist_ok=True)
    (RESULTS / "raw" / "report-full.json").write_text(json.dumps(results, indent=2, sort_keys=True))
    # Figures from the full results (the raw histograms they need stay out of git).
    import figures
    results["figures"] = figures.draw(results, RESULTS)
    (RESULTS / "report.json").write_text(json.dumps(summary(results), indent=2, sort_keys=True))
    (RESULTS / "REPORT.md").write_text(render(results))
    print(f"\nwrote {RESULTS / 'REPORT.md'} and report.json")


def summary(results):
    """The results without the raw parts: the load generator's stdout, timelines and raw latency
    histograms (their percentiles stay, in `latency_summary_ms`)."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("stdout", "timeline", "latencies")}
        return value
    return strip(results)


def render(r):
    from report import render_markdown
    return render_markdown(r)


if __name__ == "__main__":
    main()
