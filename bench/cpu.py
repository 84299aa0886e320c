"""CPU per stream and per relayed event, for the mock and the openai paths, and a profile of the
openai path's hot frames. Imported by bench/run.py (the `cpu` figure)."""

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids):
    """User + system CPU of `pids` so far, from /proc/<pid>/stat."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


def measured(daemon_pids, run):
    """Runs `run()` (a handoff-bench run) and returns its report with the daemon's CPU per
    completed stream in µs."""
    before = cpu_seconds(daemon_pids())
    report = run()
    used = cpu_seconds(daemon_pids()) - before
    done = report["result"]["completed"]
    report["daemon_cpu_s"] = used
    report["cpu_us_per_stream"] = used * 1e6 / max(1, done)
    return report


def slope(per_stream, events):
    """µs per relayed event from two event counts: (cpu(a) − cpu(b)) / (a − b)."""
    (a, cpu_a), (b, cpu_b) = sorted(zip(events, per_stream), reverse=True)
    return (cpu_a - cpu_b) / (a - b)


def median_run(runs):
    runs = sorted(runs, key=lambda r: r["cpu_us_per_stream"])
    chosen = runs[len(runs) // 2]
    chosen["runs_cpu_us_per_stream"] = [r["cpu_us_per_stream"] for r in runs]
    return chosen


class Profile:
    """`perf record -e cpu-clock -g` on the daemon while a run goes; summarised into the hottest
    frames (self time) and the project's own frames (inclusive). Needs `perf`; without it the
    summary says so."""

    def __init__(self, pid, path):
        self.pid, self.path, self.proc = pid, Path(path), None

    def __enter__(self):
        if shutil.which("perf"):
            self.proc = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", os.environ.get("PERF_FREQ", "4000"), "-g", "-o", str(self.path), "-p", str(self.pid)],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.3)
        return self

    def __exit__(self, *exc):
        if self.proc:
            self.proc.send_signal(2)
            self.proc.wait(timeout=60)

    def summary(self, top=12):
        if not self.proc or not self.path.exists():
            return {"error": "perf is not available"}
        script = subprocess.run(["perf", "script", "-i", str(self.path), "-F", "ip,sym"], capture_output=True, text=True).stdout
        # Each sample: lines of "<ip> <symbol>", leaf first; samples end with a blank line.
        samples = [[line.split(None, 1)[1] for line in block.strip().splitlines() if len(line.split(None, 1)) == 2]
                   for block in script.split("\n\n")]
        samples = [s for s in samples if s]
        leaf, inclusive = {}, {}
        for frames in samples:
            leaf[frames[0]] = leaf.get(frames[0], 0) + 1
            for name in set(frames):
                if re.match(r"\$s\d*Handoff", name):
                    inclusive[name] = inclusive.get(name, 0) + 1
        names = [n for n, _ in sorted(leaf.items(), key=lambda kv: -kv[1])[:3 * top]] + \
                [n for n, _ in sorted(inclusive.items(), key=lambda kv: -kv[1])[:3 * top]]
        readable = demangle(names)
        total = len(samples)
        def rows(counts):
            merged = {}  # a closure and its function read the same once shortened: keep the larger
            for name, count in counts.items():
                short = readable.get(name, name)
                merged[short] = max(merged.get(short, 0), count)
            return [[n, round(100 * c / total, 1)] for n, c in sorted(merged.items(), key=lambda kv: -kv[1])[:top]]
        return {"samples": total, "self": rows(leaf), "inclusive": rows(inclusive)}


def demangle(names):
    """Swift symbols, shortened to `Module.Type.method`."""
    proc = subprocess.run(["swift", "demangle", "--simplified", "--compact"], input="\n".join(names), capture_output=True, text=True)
    lines = proc.stdout.splitlines() if proc.returncode == 0 else names
    out = {}
    for name, line in zip(names, lines):
        line = re.sub(r"^(specialized |closure #\d+ (.*? )?in |partial apply for |merged |outlined .*? of |protocol witness for )+", "", line)
        out[name] = re.sub(r"\(.*$", "", line)[:90]
    return out

