"""Resumable streams, followers and channels on a private redis-server: what recording costs
against plain streaming (CPU per event, RSS per stream, Redis commands per event), 1 000
followers of one stream, and one channel message fanned out to 10 000 clients. Imported by
bench/run.py (the `redis` figure)."""

import json
import time
import urllib.request

import cpu
from harness import Daemon, Redis, free_port, make_temp_dir, mkdir_public, send_record, tcp_pair, wait_for


def redis_calls(redis):
    """Commands Redis has executed so far (INFO commandstats, all commands)."""
    text = redis.command("INFO", "commandstats")
    return sum(int(part.split("=")[1]) for line in text.splitlines() if line.startswith("cmdstat_")
               for part in line.split(":", 1)[1].split(",") if part.startswith("calls="))


def redis_cpu_seconds(redis):
    return cpu.cpu_seconds([redis.proc.pid])


def daemon(root, redis, *args, messages, interval):
    mkdir_public(root)
    return Daemon(root / "d.sock", "--redis-url", redis.url, *args,
                  mock_messages=messages, mock_interval_ms=interval).start()


def recording_cost(run_bench, rss_watcher, scale, quick):
    """Plain against resumable streams, alternately, at 5 000 concurrent streams of 18 events
    (200 ms apart) on the mock backend: median of the runs for each mode."""
    n = scale(5000)
    root = make_temp_dir()
    redis = Redis(root / "redis").start()
    modes = {"plain": '{"prompt":"bench"}', "resumable": '{"prompt":"bench","stream_id":"bench-{n}","resumable":true}'}
    runs = {mode: [] for mode in modes}
    try:
        for attempt in range(1 if quick else 5):
            for mode, data in modes.items():
                d = daemon(root / f"{mode}{attempt}", redis, messages=18, interval=200)
                try:
                    time.sleep(0.5)
                    calls, redis_cpu = redis_calls(redis), redis_cpu_seconds(redis)
                    args = ["load", "--socket", d.socket_path, "--connections", n, "--ramp-up", 2, "--hold", 4,
                            "--expect-events", 18, "--data", data, "--pid", d.proc.pid]
                    with rss_watcher(d.proc.pid) as watch:
                        report = cpu.measured(lambda: [d.proc.pid], lambda: run_bench(args, f"redis-{mode}"))
                    events = report["result"]["completed"] * 19          # 18 contents + [DONE]
                    report["cpu_us_per_event"] = report["daemon_cpu_s"] * 1e6 / max(1, events)
                    report["kib_per_stream"] = (watch.peak - watch.idle) / max(1, report["result"]["peakConcurrent"])
                    report["redis_commands_per_event"] = (redis_calls(redis) - calls) / max(1, events)
                    report["redis_cpu_us_per_event"] = (redis_cpu_seconds(redis) - redis_cpu) * 1e6 / max(1, events)
                    runs[mode].append(report)
                finally:
                    d.stop()
    finally:
        redis.stop()
    out = {}
    for mode, reports in runs.items():
        chosen = sorted(reports, key=lambda r: r["cpu_us_per_event"])[len(reports) // 2]
        chosen["runs_cpu_us_per_event"] = [r["cpu_us_per_event"] for r in reports]
        out[mode] = chosen
    out["cpu_ratio"] = out["resumable"]["cpu_us_per_event"] / max(1e-9, out["plain"]["cpu_us_per_event"])
    out["extra_kib_per_stream"] = out["resumable"]["kib_per_stream"] - out["plain"]["kib_per_stream"]
    return out


def followers(run_bench, scale):
    """1 000 followers of one recorded stream (100 events, 50 ms apart), handed off over
    0.5 s while it runs: each replays from the start, then follows live."""
    n = scale(1000)
    root = make_temp_dir()
    redis = Redis(root / "redis").start()
    d = daemon(root / "d", redis, messages=100, interval=50)
    try:
        time.sleep(0.5)
        client, server = tcp_pair()
        send_record(d.socket_path, b'{"prompt":"followed","stream_id":"followed","resumable":true}', [server.fileno()])
        server.close()
        time.sleep(0.5)
        calls = redis_calls(redis)
        args = ["load", "--socket", d.socket_path, "--connections", n, "--ramp-up", 0.5, "--hold", 6,
                "--expect-events", 100, "--data", '{"stream_id":"followed","resume":true}', "--pid", d.proc.pid]
        report = cpu.measured(lambda: [d.proc.pid], lambda: run_bench(args, "redis-followers"))
        events = report["result"]["completed"] * 101
        report["cpu_us_per_event"] = report["daemon_cpu_s"] * 1e6 / max(1, events)
        report["redis_commands_per_event"] = (redis_calls(redis) - calls) / max(1, events)
        client.close()
        return report
    finally:
        d.stop()
        redis.stop()


def channel_fanout(run_bench, scale):
    """10 000 clients of one channel (one subscription in the daemon): the time from a
    PUBLISH to each client's copy of the message (p50/p99 over the clients), then a close."""
    import threading
    n = scale(10000)
    root = make_temp_dir()
    redis = Redis(root / "redis").start()
    port = free_port()
    d = daemon(root / "d", redis, "--metrics-address", f"127.0.0.1:{port}", messages=1, interval=1)
    mark = root / "mark"
    result = {}

    def clients():
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        except OSError:
            return 0
        return int(float(next((line.split()[1] for line in text.splitlines() if line.startswith("handoffd_channel_clients ")), "0")))

    def publish():
        wait_for(lambda: clients() >= n, 120, f"{n} channel clients")
        time.sleep(1.0)
        before = cpu.cpu_seconds([d.proc.pid])
        mark.write_text(str(time.monotonic_ns()))
        redis.command("PUBLISH", "fan", '{"content":"to everyone"}')
        time.sleep(2.0)
        result["daemon_cpu_s_one_message"] = cpu.cpu_seconds([d.proc.pid]) - before
        for i in range(4):
            redis.command("PUBLISH", "fan", json.dumps({"content": f"message {i + 2}"}))
            time.sleep(0.3)
        redis.command("PUBLISH", "fan", '{"close":true}')

    try:
        publisher = threading.Thread(target=publish, daemon=True)
        publisher.start()
        args = ["load", "--socket", d.socket_path, "--connections", n, "--ramp-up", 5, "--hold", 0, "--stream-timeout", 150,
                "--expect-events", 5, "--data", '{"backend":"channel","channel":"fan"}', "--mark-file", mark, "--pid", d.proc.pid]
        report = run_bench(args, "redis-channel")
        publisher.join(30)
        report.update(result)
        report["delivered_after_publish_ms"] = report["latency_summary_ms"].get("after_mark", {})
        return report
    finally:
        d.stop()
        redis.stop()


def figure(results, run_bench, rss_watcher, scale, quick):
    results["redis"] = {
        "recording": recording_cost(run_bench, rss_watcher, scale, quick),
        "followers": followers(run_bench, scale),
        "channel": channel_fanout(run_bench, scale),
    }


def render(redis, measured):
    rec, fol, ch = redis["recording"], redis["followers"], redis["channel"]
    p, r = rec["plain"], rec["resumable"]
    out = ["## Resumable streams, followers and channels (Redis)\n",
           (f"Measured {measured}. " if measured else "")
           + "A private `redis-server` on loopback, no persistence; the daemon on the mock backend. "
           f"Plain and resumable runs alternate ({len(p.get('runs_cpu_us_per_event', [1]))} each, medians): "
           f"{p['result']['started']} streams of 18 events 200 ms apart, started over 2 s.\n",
           "| | plain | resumable | ratio / extra |\n|---|---|---|---|",
           f"| daemon CPU per event | {p['cpu_us_per_event']:.2f} µs | {r['cpu_us_per_event']:.2f} µs | {rec['cpu_ratio']:.2f}× (goal ≤ 1.5×) |",
           f"| daemon RSS per stream at peak | {p['kib_per_stream']:.2f} KiB | {r['kib_per_stream']:.2f} KiB | +{rec['extra_kib_per_stream']:.2f} KiB (goal ≤ 2) |",
           f"| Redis commands per event | {p['redis_commands_per_event']:.2f} | {r['redis_commands_per_event']:.2f} | |",
           f"| Redis CPU per event | {p['redis_cpu_us_per_event']:.2f} µs | {r['redis_cpu_us_per_event']:.2f} µs | |",
           f"| streams completed | {p['result']['completed']} of {p['result']['started']} | {r['result']['completed']} of {r['result']['started']} | |",
           "",
           f"**{fol['result']['started']} followers of one stream** (100 events, 50 ms apart; handed off over 0.5 s while it ran, "
           f"each replaying from the start): {fol['result']['completed']} complete, daemon CPU {fol['cpu_us_per_event']:.2f} µs per "
           f"delivered event, {fol['redis_commands_per_event']:.3f} Redis commands per delivered event, first event p50 / p99 "
           f"{fol['latency_summary_ms'].get('first_event', {}).get('p50', 0):.1f} / {fol['latency_summary_ms'].get('first_event', {}).get('p99', 0):.1f} ms.\n",
           f"**One channel, {ch['result']['started']} clients on one daemon** (one Redis subscription): a PUBLISH reached every "
           f"client after p50 {ch['delivered_after_publish_ms'].get('p50', 0):.1f} ms, p99 {ch['delivered_after_publish_ms'].get('p99', 0):.1f} ms, "
           f"max {ch['delivered_after_publish_ms'].get('max', 0):.1f} ms (daemon CPU for that message: "
           f"{ch.get('daemon_cpu_s_one_message', 0) * 1e3:.0f} ms); {ch['result']['completed']} of {ch['result']['started']} streams "
           "got all 5 messages and the close.\n"]
    return "\n".join(out)
