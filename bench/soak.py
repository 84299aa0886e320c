"""`make soak`: a million short streams through one daemon; its open descriptors and RSS at the
end must be within 2% of what they were after the first 10 000 (nothing leaks per stream).

Not part of `make test` (it takes minutes). Release build; loopback and Unix sockets only.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "e2e"))
from harness import Daemon, make_temp_dir, mkdir_public  # noqa: E402

RELEASE = REPO / ".build/release"


def footprint(pid):
    """(open descriptors, RSS in KiB) of `pid`, from /proc."""
    fds = len(list(Path(f"/proc/{pid}/fd").iterdir()))
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return fds, int(line.split()[1])
    return fds, 0


def burst(socket_path, seconds, pid):
    """One closed-loop burst of 1-event streams; returns how many completed and failed."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run([str(RELEASE / "handoff-bench"), "load", "--socket", str(socket_path), "--connections", "64",
                        "--sustained", "--hold", str(seconds), "--expect-events", "1", "--json", out.name],
                       check=True, capture_output=True, timeout=seconds + 120)
        result = json.loads(Path(out.name).read_text())["result"]
    return result["completed"], sum(result.get("failures", {}).values())


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--streams", type=int, default=1_000_000)
    parser.add_argument("--tolerance", type=float, default=0.02)
    args = parser.parse_args()

    import harness
    harness.HANDOFFD_BIN = RELEASE / "handoffd"
    root = make_temp_dir()
    mkdir_public(root)
    daemon = Daemon(root / "soak.sock", mock_messages=1, mock_interval_ms=0).start()
    try:
        pid = daemon.proc.pid
        completed, failed = burst(daemon.socket_path, 2, pid)
        while completed < 10_000:
            more, bad = burst(daemon.socket_path, 2, pid)
            completed, failed = completed + more, failed + bad
        time.sleep(1)  # lingering closes finish
        early = footprint(pid)
        print(f"after {completed} streams: {early[0]} open descriptors, {early[1]} KiB RSS", flush=True)
        started = time.monotonic()
        while completed < args.streams:
            more, bad = burst(daemon.socket_path, 10, pid)
            completed, failed = completed + more, failed + bad
            print(f"  {completed} streams, {failed} failed, {footprint(pid)[1]} KiB RSS", flush=True)
        time.sleep(1)
        late = footprint(pid)
        elapsed = time.monotonic() - started
    finally:
        daemon.stop()
    print(f"after {completed} streams ({elapsed:.0f} s): {late[0]} open descriptors, {late[1]} KiB RSS")
    fd_growth = (late[0] - early[0]) / early[0]
    rss_growth = (late[1] - early[1]) / early[1]
    print(f"growth since the first 10 000: descriptors {fd_growth:+.1%}, RSS {rss_growth:+.1%} "
          f"(limit ±{args.tolerance:.0%}); {failed} streams failed")
    ok = fd_growth <= args.tolerance and rss_growth <= args.tolerance and failed == 0
    print("soak: " + ("passed" if ok else "FAILED"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
