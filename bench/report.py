"""Renders bench/results/report.json as REPORT.md."""


def fmt(value, digits=2):
    return "–" if value is None else f"{value:.{digits}f}"


def lat(report, name, p):
    return report.get("latency_summary_ms", {}).get(name, {}).get(p)


def met(ok):
    return "met" if ok else "**not met**"


def curve(report):
    samples = report.get("daemonSamples") or []
    if not samples:
        return ""
    rows = "\n".join(f"| {s['elapsedSeconds']:.0f} | {s['rssKiB']} | {s['cpuPercent']:.0f} | {s['openFiles']} |" for s in samples)
    return "\n<details><summary>daemon RSS and CPU, once a second</summary>\n\n| t (s) | RSS (KiB) | CPU % of one core | open fds |\n|---|---|---|---|\n" + rows + "\n\n</details>\n"


def latency_table(report):
    names = ["connect", "handoff", "status", "first_event", "first_content", "duration"]
    rows = []
    for name in names:
        summary = report.get("latency_summary_ms", {}).get(name)
        if summary and summary.get("count"):
            rows.append(f"| {name} | {summary['p50']:.3f} | {summary['p90']:.3f} | {summary['p99']:.3f} | {summary['p99.9']:.3f} | {summary['max']:.3f} |")
    return "| latency (ms) | p50 | p90 | p99 | p99.9 | max |\n|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n"


def streams_line(report):
    r = report["result"]
    failures = ", ".join(f"{k} {v}" for k, v in sorted(r.get("failures", {}).items())) or "none"
    return (f"{r['started']} started, **{r['completed']} completed**, failures: {failures}; "
            f"peak concurrent {r['peakConcurrent']}; {report.get('completed_per_second', 0):.0f} completed/s over {r['elapsedSeconds']:.1f} s.\n")


def section(title, report, method, extra="", measured=None):
    if report is None:
        return f"## {title}\n\nNot measured in this run.\n\n"
    when = f"Measured {measured}. " if measured else ""
    return (f"## {title}\n\n{when}{method}\n\n`{report['command']}`\n\n" + streams_line(report) + "\n" + latency_table(report)
            + (f"\nDaemon RSS: idle {report.get('daemonIdleRSSKiB')} KiB, peak {report.get('daemonPeakRSSKiB')} KiB; "
               f"(peak − idle) / peak concurrent = **{fmt(report.get('daemon_kib_per_stream'))} KiB per stream**.\n"
               if report.get("daemonIdleRSSKiB") is not None else "") + extra + curve(report) + "\n")


def cpu_section(cpu, measured):
    rows = []
    for path, label in (("openai", "openai (TLS h2 upstream, chunks every 20 ms, 2 000 streams over 2 s)"),
                        ("mock", "mock (back to back, 64 senders, closed loop 10 s)")):
        for events, suffix, note in ((18, "", ""), (18, "_unbatched", ", wake-up batching off"), (6, "", "")):
            rep = cpu.get(f"{path}_{events}{suffix}")
            if not rep:
                continue
            res = rep["result"]
            runs = ", ".join(f"{v:.0f}" for v in rep.get("runs_cpu_us_per_stream", []))
            rows.append(f"| {label}{note} | {events} | **{rep['cpu_us_per_stream']:.0f}** ({runs}) | {res['completed']} of {res['started']} | "
                        f"{fmt(lat(rep, 'first_event', 'p50'), 2)} / {fmt(lat(rep, 'first_event', 'p99'), 2)} |")
    out = ("## CPU per stream and per event\n\n" + (f"Measured {measured}. " if measured else "")
           + "Daemon CPU (user + system, `/proc/<pid>/stat`) over a whole `handoff-bench load` run, divided by the streams completed; "
             "three runs each, the median shown in bold and every run in brackets. The per-event cost is the slope between "
             "18 and 6 events per stream, so per-stream costs (handoff, headers, upstream request, close) cancel out.\n\n"
             "| path | events per stream | daemon CPU per stream, µs (runs) | completed | first event p50 / p99, ms |\n|---|---|---|---|---|\n"
           + "\n".join(rows) + "\n\n"
           + f"Per relayed event: openai {fmt(cpu.get('openai_us_per_event'), 1)} µs, mock {fmt(cpu.get('mock_us_per_event'), 1)} µs.\n")
    o18 = cpu.get("openai_18") or {}
    unbatched = cpu.get("openai_18_unbatched") or {}
    if o18 and unbatched:
        out += (f"\nWake-up batching (`--loop-batch-us`, default 5000: a loop woken again within 5 ms rests for the rest of it, "
                f"then relays what arrived meanwhile together) against none, in alternating runs: "
                f"{o18['cpu_us_per_stream']:.0f} against {unbatched['cpu_us_per_stream']:.0f} µs per stream "
                f"({o18['cpu_us_per_stream'] / unbatched['cpu_us_per_stream']:.2f}×), first event p50 "
                f"{fmt(lat(o18, 'first_event', 'p50'), 2)} against {fmt(lat(unbatched, 'first_event', 'p50'), 2)} ms.\n")
    if o18.get("upstream_cpu_us_per_stream") is not None:
        out += (f"\nThe upstream (handoff-mock-llm, TLS h2) runs on the same two cores and used "
                f"{o18['upstream_cpu_us_per_stream']:.0f} µs of CPU per 18-chunk stream in the median run: at 1 000 handoffs/s the "
                f"daemon and the mock together need {(o18['cpu_us_per_stream'] + o18['upstream_cpu_us_per_stream']) / 1000:.2f} cores "
                "of the two, beside the load generator, which is what first-event latency measures on this box.\n")
    profile = cpu.get("openai_profile") or {}
    if profile.get("self"):
        out += (f"\nProfile of the first openai run with 18 chunks (`perf record -e cpu-clock -g`, {profile['samples']} samples), "
                "so the next hot spot is visible without re-running anything:\n\n| hottest frames (self) | % | | our frames (inclusive) | % |\n|---|---|---|---|---|\n")
        pairs = zip(profile["self"], profile["inclusive"] + [["", ""]] * len(profile["self"]))
        out += "\n".join(f"| `{a}` | {b} | | {'`' + c + '`' if c else ''} | {d} |" for (a, b), (c, d) in pairs) + "\n"
    elif profile.get("error"):
        out += f"\nNo profile: {profile['error']}.\n"
    return out


def render_markdown(r):
    m = r["machine"]
    memory, ttfe, throughput = r.get("memory"), r.get("ttfe"), r.get("throughput")
    fifty, apache = r.get("fifty_thousand"), r.get("apache")
    openai1, openai5, cancel = r.get("openai_1000"), r.get("openai_5000"), r.get("cancel")
    dates = r.get("dates", {})
    out = ["# handoffd benchmark report\n",
           f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, Linux {m['kernel']}, "
           f"{m['open_files_per_process']} open files per process. Build: `swift build -c release` ({m['swift']}). "
           f"Run: {m['date']}. Daemon and load generator share the same cores, with the machine's other tenants.\n",
           "Reproduce with `make bench` (`BENCH_QUICK=1 make bench` for a small smoke run)."
           + (" **This is a quick smoke run; the figures below are not the targets' loads.**" if r.get("quick") else "") + "\n"]

    rows = []
    if memory:
        v = memory.get("daemon_kib_per_stream")
        rows.append(("Daemon RSS per held stream, 15 000 × (18 events × 500 ms), mock", "≤ 2.0 KB (1.95 KiB)", f"{fmt(v)} KiB", met(v is not None and v <= 2000 / 1024)))
    if throughput:
        v = throughput.get("completed_per_second")
        rows.append(("Handoffs per second, 1-event streams, 64 concurrent senders", "≥ 12 000", f"{v:.0f}", met(v >= 12000)))
    if ttfe:
        v = lat(ttfe, "first_event", "p99")
        rows.append(("Time to first event, 15 000 streams ramped over 10 s, p99 (median of runs)", "≤ 5 ms", f"{fmt(v, 3)} ms", met(v is not None and v <= 5)))
    if fifty:
        res = fifty["result"]
        ok = res["completed"] == res["started"] and res["peakConcurrent"] >= 50000
        rows.append(("Concurrent streams held and completed (3 workers)", "50 000", f"{res['completed']} of {res['started']}, peak {res['peakConcurrent']}", met(ok)))
    hundred = r.get("hundred_thousand")
    if hundred:
        res = hundred["result"]
        ok = res["completed"] == res["started"] and res["peakConcurrent"] >= 100000
        rows.append(("Concurrent streams held and completed (7 workers, 7 load processes)", "100 000, 100%", f"{res['completed']} of {res['started']}, peak {res['peakConcurrent']}", met(ok)))
        v = hundred.get("independent_rss", {}).get("kib_per_stream")
        rows.append(("Daemon RSS per held stream at 100 000 (supervisor + workers)", "≤ 1 KiB", f"{fmt(v)} KiB", met(v is not None and v <= 1)))
    if apache:
        res = apache["result"]
        d = apache.get("apache_D_us", {}).get("p50")
        rows.append(("Through Apache (prefork + mod_php, 16 workers): streams completed", "10 000, 100%", f"{res['completed']} of {res['started']}, peak {res['peakConcurrent']}", met(res["completed"] == res["started"] and res["started"] >= 10000)))
        rows.append(("Apache's own time per handoff (%D), p50", "≤ 200 µs", f"{d} µs", met(d is not None and d <= 200)))
        floor = dict(apache.get("apache_under_load_D_us") or []).get("bench.php, SocketHandoffEnabled Off")
        if floor is not None:
            rows.append(("The same script under the same load, no handoff (%D), p50", "–", f"{floor:.0f} µs", "–"))
    if openai1 and openai5:
        for report, n in ((openai1, "1 000"), (openai5, "5 000")):
            v = report.get("daemon_kib_per_stream")
            rows.append((f"openai backend: daemon RSS per stream at {n} (client + upstream side)", "≤ 6 KB (5.86 KiB) at 5 000", f"{fmt(v)} KiB", met(v is not None and v <= 6000 / 1024) if n == "5 000" else "–"))
        rows.append(("openai backend: upstream TCP connections for 1 000 streams", "few", str(openai1.get("upstream", {}).get("http2_connections")), "–"))
    if cancel:
        rows.append(("Upstream cancelled after client disconnect (median / max of runs)", "≤ 100 ms", f"{cancel['median_ms']:.1f} / {cancel['max_ms']:.1f} ms", met(cancel["max_ms"] <= 100)))
    cpu = r.get("cpu")
    if cpu:
        o18, m18 = cpu.get("openai_18"), cpu.get("mock_18")
        if o18:
            v = o18["cpu_us_per_stream"]
            rows.append(("openai path: daemon CPU per 18-chunk stream (TLS h2 upstream, 1 000 handoffs/s)", "≤ 400 µs", f"{v:.0f} µs", met(v <= 400)))
            p50, p99 = lat(o18, "first_event", "p50"), lat(o18, "first_event", "p99")
            res = o18["result"]
            ok = p50 is not None and p50 <= 10 and p99 <= 100 and res["completed"] == res["started"]
            rows.append(("openai path: first event at 2 000 streams over 2 s, p50 / p99, all complete", "≤ 10 / ≤ 100 ms",
                         f"{fmt(p50, 1)} / {fmt(p99, 1)} ms, {res['completed']} of {res['started']}", met(ok)))
        if m18:
            v = m18["cpu_us_per_stream"]
            rows.append(("mock path: daemon CPU per 18-event stream, back to back", "≤ 100 µs", f"{v:.0f} µs", met(v <= 100)))
        rows.append(("daemon CPU per relayed event (slope 18 − 6 events), openai / mock", "–",
                     f"{fmt(cpu.get('openai_us_per_event'), 1)} / {fmt(cpu.get('mock_us_per_event'), 1)} µs", "–"))
    stalled = r.get("stalled")
    if stalled:
        d, k = stalled["daemon_kib_per_stream"], stalled["mock_kib_per_stream"]
        rows.append((f"{stalled['clients']} clients that stop reading (openai, endless upstream): RSS per stalled stream, daemon / mock",
                     "≤ 128 KiB each", f"{d:.1f} / {k:.1f} KiB", met(d <= 128 and k <= 128)))
    redis = r.get("redis")
    if redis:
        rec, ch = redis["recording"], redis["channel"]
        rows.append(("Resumable (recorded) streams at 5 000: daemon CPU per event vs plain", "≤ 1.5×",
                     f"{rec['cpu_ratio']:.2f}× ({rec['resumable']['cpu_us_per_event']:.2f} / {rec['plain']['cpu_us_per_event']:.2f} µs)", met(rec["cpu_ratio"] <= 1.5)))
        rows.append(("Resumable streams: extra daemon RSS per stream", "≤ 2 KiB", f"{rec['extra_kib_per_stream']:.2f} KiB", met(rec["extra_kib_per_stream"] <= 2)))
        p99 = ch["delivered_after_publish_ms"].get("p99")
        rows.append((f"One channel message to {ch['result']['started']} local clients, p99", "–", f"{fmt(p99, 1)} ms", "–"))
    out.append("## Summary\n\n| figure | target | measured | |\n|---|---|---|---|\n" + "\n".join(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows) + "\n")
    figures = r.get("figures") or []
    if figures:
        out.append("## Figures\n\n" + "\n\n".join(f"![{title}]({name})" for title, name in figures) + "\n")
    errors = {k: v for k, v in r.items() if k.endswith("_error")}
    if errors:
        out.append("Figures that could not be measured: " + "; ".join(f"`{k[:-6]}`: {v}" for k, v in errors.items()) + "\n")

    independent = ""
    if memory and memory.get("independent_rss"):
        ind = memory["independent_rss"]
        independent = (f"\nIndependent check: a second sampler (bench/run.py, `/proc/<pid>/status` every 100 ms) saw idle "
                       f"{ind['idle_kib']} KiB and peak {ind['peak_kib']} KiB, i.e. {ind['kib_per_stream']:.2f} KiB per stream, "
                       f"against handoff-bench's {fmt(memory.get('daemon_kib_per_stream'))} KiB from its own 1 s sampler.\n")
    out.append(section("Memory per held stream", memory,
                       "Mode: `handoff-bench load`, socketpair clients handed off exactly as Apache does; mock backend, "
                       "18 events × 500 ms per stream; streams started over 5 s so all are held at once; fresh daemon. "
                       "Figure: (peak RSS − idle RSS) / peak concurrent streams.", independent, measured=dates.get("memory")))
    ttfe_runs = ""
    if ttfe and ttfe.get("runs_p99_ms"):
        ttfe_runs = ("\nFirst-event p99 of each run: " + ", ".join(f"{v:.3f} ms" for v in ttfe["runs_p99_ms"])
                     + f"; the median run is shown, and its p90 is {fmt(lat(ttfe, 'first_event', 'p90'), 3)} ms.\n")
    out.append(section("Time to first event", ttfe,
                       "Mode: as above, 15 000 streams started evenly over 10 s (1 500 handoffs/s), two load processes; three runs. "
                       "Timed from the start of a stream (client socket creation) to its first event.", ttfe_runs, measured=dates.get("ttfe")))
    out.append(section("Handoff throughput", throughput,
                       "Mode: closed loop, 64 concurrent senders, each stream one event then `[DONE]`; one load process.", measured=dates.get("throughput")))
    out.append(section("50 000 concurrent streams", fifty,
                       "Mode: `handoffd --workers 3` (one socket, three processes: this machine allows 20 000 descriptors per process), "
                       "four load processes, 60 events × 500 ms per stream, ramp 20 s, acknowledged handoffs (the module's default). RSS is the supervisor plus its workers.", measured=dates.get("fifty_thousand")))
    hundred_extra = ""
    if hundred and hundred.get("independent_rss"):
        ind = hundred["independent_rss"]
        hundred_extra = (f"\nRSS of the supervisor and its workers (bench/run.py, `/proc` every 100 ms): idle {ind['idle_kib']} KiB, "
                         f"peak {ind['peak_kib']} KiB, {ind['kib_per_stream']:.2f} KiB per held stream.\n")
    out.append(section("100 000 concurrent streams", hundred,
                       "Mode: `handoffd --workers 7` (one socket, seven processes: 20 000 descriptors per process here), seven load "
                       "processes, 60 events × 1 s per stream, ramp 40 s, so all streams are held at once; acknowledged handoffs "
                       "(`--ack-timeout-ms 1000`), as the module sends by default.", hundred_extra,
                       measured=dates.get("hundred_thousand")))
    apache_extra = ""
    if apache and apache.get("apache_D_us"):
        d = apache["apache_D_us"]
        apache_extra = f"\nApache's `%D` for the {d['count']} handoff requests under that load: p50 {d['p50']} µs, p90 {d['p90']} µs, p99 {d['p99']} µs.\n"
        loaded = apache.get("apache_under_load_D_us")
        if loaded:
            apache_extra += ("\nUnder the same load, side requests in shuffled rounds every 50 ms (`%D` median): "
                             + ", ".join(f"{k} {v:.0f} µs" if v is not None else f"{k}: no sample" for k, v in loaded)
                             + ". The first is the same script with the module doing nothing: Apache's own floor under this load.\n")
        base = apache.get("apache_baseline_D_us")
        if base:
            apache_extra += ("\nWhere Apache's time goes, without load (sequential POSTs, the variants alternating in rounds, "
                             "`%D` median): " + ", ".join(f"{k} {v:.0f} µs" for k, v in base) + ".\n")
            by = dict(base)
            off = by.get("bench.php, SocketHandoffEnabled Off")
            for label, name in (("bench.php, handed off, acknowledged", "with the acknowledged handoff"),
                                ("bench.php, handed off, SocketHandoffAck Off", "without the acknowledgement")):
                if off is not None and by.get(label) is not None:
                    added = by[label] - off
                    apache_extra += (f"\nThe handoff adds {added:.0f} µs to the same script's `%D` {name} "
                                     f"(target ≤ 60 µs: {met(added <= 60)}).\n")
    out.append(section("Through a real Apache", apache,
                       "Mode: `handoff-bench http`: TCP clients POST to a PHP endpoint on a private Apache (prefork + mod_php, 16 workers, "
                       "`ListenBacklog 4096`); the endpoint (`e2e/php/bench.php`) only sets the two handoff headers, mod_socket_handoff "
                       "hands off, the daemon streams 18 events × 1 s; streams start over 15 s. Apache, PHP, the daemon and the load generator share "
                       "the cores; the load generator runs at `nice 10`, standing in for remote clients.",
                       apache_extra, measured=dates.get("apache")))
    for report, n in ((openai1, 1000), (openai5, 5000)):
        extra = ""
        if report and report.get("upstream"):
            up = report["upstream"]
            extra = f"\nUpstream (handoff-mock-llm /stats): {up.get('requests')} requests, {up.get('http2_connections')} HTTP/2 connections, {up.get('completed')} completed.\n"
        out.append(section(f"openai backend, {n} streams", report,
                           "Mode: daemon with `--backend openai` against handoff-mock-llm over TLS with ALPN h2 (18 chunks × 500 ms); "
                           "RSS covers the client side and the upstream HTTP/2 streams.", extra))
    if cpu:
        out.append(cpu_section(cpu, dates.get("cpu")))
    if stalled:
        rows_ = "\n".join(f"| {t} | {d} | {k} |" for t, d, k in stalled["samples"])
        out.append("## Clients that stop reading\n\n" + (f"Measured {dates.get('stalled')}. " if dates.get("stalled") else "")
                   + f"{stalled['clients']} TCP clients handed off (openai backend, handoff-mock-llm over TLS h2 with 100 000 chunks and no delay) "
                   "that never read. The daemon stops giving the upstream stream HTTP/2 window once its queue for the client is full, and "
                   "the mock waits for the window: memory stays flat. Idle RSS: daemon "
                   f"{stalled['daemon_idle_kib']} KiB, mock {stalled['mock_idle_kib']} KiB; after 15 s: "
                   f"{stalled['daemon_kib_per_stream']:.1f} KiB per stalled stream in the daemon, {stalled['mock_kib_per_stream']:.1f} KiB in the mock.\n\n"
                   "| t (s) | daemon RSS (KiB) | mock RSS (KiB) |\n|---|---|---|\n" + rows_ + "\n")
    if redis:
        import redis_bench
        out.append(redis_bench.render(redis, dates.get("redis")))
    if cancel:
        out.append(f"## Cancel latency\n\nThe conformance scenario `client-disconnect`, {cancel['runs']} runs: the client closes mid-stream; "
                   f"the time until the mock's `/stats` shows the upstream stream cancelled (polled over a fresh TLS connection, so it "
                   f"includes the poll's own latency): median {cancel['median_ms']:.1f} ms, max {cancel['max_ms']:.1f} ms.\n")
    return "\n".join(out)
