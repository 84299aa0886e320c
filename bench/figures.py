"""The figures of bench/results/REPORT.md, drawn with matplotlib from the run's full results:
RSS against streams held, daemon CPU per stream by path, and first-event latency
distributions. PNGs next to the report; the raw data they come from stays out of git."""

import subprocess
import sys
from pathlib import Path


def ensure_matplotlib():
    """matplotlib from PyPI when it is missing (bench tooling only; `make test` does not need it)."""
    try:
        import matplotlib  # noqa: F401
        return True
    except ImportError:
        result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--root-user-action=ignore", "matplotlib"],
                                capture_output=True, text=True)
        return result.returncode == 0


def draw(results, directory):
    """Writes every figure it has data for; returns [(title, file name)]."""
    if not ensure_matplotlib():
        return []
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    directory = Path(directory)
    drawn = []
    machine = results.get("machine", {})
    label = f"{machine.get('cores', '?')} cores, {machine.get('date', '')}"

    # RSS against streams held (open descriptors of the daemon, once a second).
    series = [(name, results.get(key)) for name, key in
              (("mock, 15 000 streams", "memory"), ("mock, 100 000 streams, 7 workers", "hundred_thousand"),
               ("openai, 5 000 streams", "openai_5000"))]
    series = [(name, report) for name, report in series if report and report.get("daemonSamples")]
    if series:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for name, report in series:
            samples = report["daemonSamples"]
            # The ramp up to the most streams held: RSS as streams are added.
            peak = max(range(len(samples)), key=lambda i: samples[i]["openFiles"])
            samples = samples[:peak + 1]
            ax.plot([s["openFiles"] for s in samples], [s["rssKiB"] / 1024 for s in samples], marker=".", label=name)
        ax.set_xlabel("open descriptors (≈ streams held)")
        ax.set_ylabel("daemon RSS (MiB)")
        ax.set_title(f"Daemon memory as streams are added\n{label}")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(directory / "rss_vs_streams.png", dpi=100)
        plt.close(fig)
        drawn.append(("Daemon RSS against streams held", "rss_vs_streams.png"))

    # Daemon CPU per stream, by path and events per stream (every run, the median marked).
    cpu = results.get("cpu") or {}
    bars = [(f"{path}\n{events} events", cpu.get(f"{path}_{events}")) for path in ("openai", "mock") for events in (18, 6)]
    bars = [(name, report) for name, report in bars if report]
    if bars:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for index, (name, report) in enumerate(bars):
            ax.bar(index, report["cpu_us_per_stream"], color="tab:blue" if "openai" in name else "tab:green")
            runs = report.get("runs_cpu_us_per_stream", [])
            ax.scatter([index] * len(runs), runs, color="black", s=12, zorder=3)
        ax.axhline(400, color="tab:red", linestyle="--", linewidth=1, label="openai target (400 µs)")
        ax.axhline(100, color="tab:orange", linestyle="--", linewidth=1, label="mock target (100 µs)")
        ax.set_xticks(range(len(bars)), [name for name, _ in bars])
        ax.set_ylabel("daemon CPU per stream (µs)")
        ax.set_title(f"Daemon CPU per stream: median (bar), every run (dots)\n{label}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(directory / "cpu_per_stream.png", dpi=100)
        plt.close(fig)
        drawn.append(("Daemon CPU per stream by path", "cpu_per_stream.png"))

    # First-event latency distributions (cumulative), from the load generator's histograms.
    curves = [(name, report) for name, report in
              (("mock, 15 000 streams over 10 s", results.get("ttfe")), ("openai, 2 000 streams over 2 s", cpu.get("openai_18")),
               ("through Apache, 10 000 streams", results.get("apache")))
              if report and report.get("result", {}).get("latencies", {}).get("first_event")]
    if curves:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for name, report in curves:
            points = sorted(report["result"]["latencies"]["first_event"])
            total = sum(count for _, count in points)
            running, xs, ys = 0, [], []
            for value, count in points:
                running += count
                xs.append(max(value, 1) / 1000)
                ys.append(running / total)
            ax.step(xs, ys, where="post", label=name)
        ax.set_xscale("log")
        ax.set_xlabel("time to first event (ms, log scale)")
        ax.set_ylabel("share of streams")
        ax.set_title(f"First-event latency, cumulative\n{label}")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
        fig.tight_layout()
        fig.savefig(directory / "first_event_latency.png", dpi=100)
        plt.close(fig)
        drawn.append(("First-event latency distribution", "first_event_latency.png"))
    return drawn
