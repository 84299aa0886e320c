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


CLIENT = "tcp"
ACK = ["--ack-timeout-ms", "1000"]


def burst(socket_path, seconds, pid):
    """One closed-loop burst of 1-event streams; returns how many completed and the failures
    by kind (handoff-bench exits 1 when there are any; the report says which)."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        proc = subprocess.run([str(RELEASE / "handoff-bench"), "load", "--socket", str(socket_path), "--connections", "64",
                               "--client", CLIENT, "--sustained", "--hold", str(seconds), "--expect-events", "1", "--json", out.name,
                               *ACK],
                              capture_output=True, text=True, timeout=seconds + 120)
        text = Path(out.name).read_text()
        if not text:
            raise RuntimeError(f"handoff-bench wrote no report (exit {proc.returncode}): {proc.stderr[-2000:]}")
        result = json.loads(text)["result"]
    return result["completed"], result.get("failures", {})


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--streams", type=int, default=1_000_000)
    parser.add_argument("--tolerance", type=float, default=0.02)
    parser.add_argument("--client", default="tcp", choices=["tcp", "socketpair"],
                        help="what the handed-off client socket is: loopback TCP, as Apache passes, or a socketpair")
    parser.add_argument("--no-ack", action="store_true",
                        help="hand off the original fire-and-forget way instead of with the acknowledgement")
    parser.add_argument("--arena-max", default="2", help="MALLOC_ARENA_MAX for the daemon ('' for glibc's default)")
    args = parser.parse_args()
    global CLIENT, ACK
    CLIENT = args.client
    if args.no_ack:
        ACK = []

    import harness
    harness.HANDOFFD_BIN = RELEASE / "handoffd"
    root = make_temp_dir()
    mkdir_public(root)
    # As deployed (deploy/handoffd.service): glibc's per-thread arenas capped. (Both ways pass
    # now: +1.2% with the cap, +0.5% without, over 1.1 M streams. The growth of +11 to +15%
    # seen before was the timer wheel holding ended streams until their linger timer was due.)
    daemon = Daemon(root / "soak.sock", mock_messages=1, mock_interval_ms=0,
                    env={"MALLOC_ARENA_MAX": args.arena_max} if args.arena_max else None).start()
    try:
        pid = daemon.proc.pid
        failed = {}

        def add(kinds):
            for kind, count in kinds.items():
                failed[kind] = failed.get(kind, 0) + count

        completed, kinds = burst(daemon.socket_path, 2, pid)
        add(kinds)
        while completed < 10_000:
            more, kinds = burst(daemon.socket_path, 2, pid)
            completed += more
            add(kinds)
        time.sleep(1)  # lingering closes finish
        early = footprint(pid)
        print(f"after {completed} streams: {early[0]} open descriptors, {early[1]} KiB RSS", flush=True)
        started = time.monotonic()
        halfway = None
        while completed < args.streams:
            more, kinds = burst(daemon.socket_path, 10, pid)
            completed += more
            add(kinds)
            now = footprint(pid)
            if halfway is None and completed >= args.streams // 2:
                halfway = (completed, now)
            print(f"  {completed} streams, failures {failed or 'none'}, {now[1]} KiB RSS", flush=True)
        time.sleep(1)
        late = footprint(pid)
        elapsed = time.monotonic() - started
    finally:
        daemon.stop()
    print(f"after {completed} streams ({elapsed:.0f} s): {late[0]} open descriptors, {late[1]} KiB RSS")
    fd_growth = (late[0] - early[0]) / early[0]
    rss_growth = (late[1] - early[1]) / early[1]
    print(f"growth since the first 10 000: descriptors {fd_growth:+.1%}, RSS {rss_growth:+.1%} "
          f"(limit ±{args.tolerance:.0%}); failures: {failed or 'none'}")
    if halfway:
        print(f"second half, since {halfway[0]} streams: descriptors {late[0] - halfway[1][0]:+d}, "
              f"RSS {(late[1] - halfway[1][1]) / halfway[1][1]:+.1%} (allocator high-water marks settle in the first half)")
    ok = fd_growth <= args.tolerance and rss_growth <= args.tolerance and not failed
    print("soak: " + ("passed" if ok else "FAILED"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
