"""`handoffd --workers`: a worker that keeps dying is restarted with a growing delay, and a
worker that cannot be started again never takes the others down or leaves them orphaned."""

import os
import re
import shutil
import signal
import time

from harness import HANDOFFD_BIN, Daemon, make_temp_dir, pid_alive, wait_for


def workers_of(pid):
    """The supervisor's child processes."""
    children = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            children.update(int(p) for p in f.read().split())
    return children


def delays(log):
    """The restart delays the supervisor logged, in milliseconds, in order."""
    out = []
    for value in re.findall(r"delay=([0-9.e-]+) (seconds|ms)", log):
        number, unit = float(value[0]), value[1]
        out.append(number * 1000 if unit == "seconds" else number)
    return out


def test_a_worker_that_keeps_dying_is_restarted_with_a_growing_delay():
    root = make_temp_dir()
    d = Daemon(root / "w.sock", "--workers", "2").start()
    try:
        wait_for(lambda: "workers accept handoffs" in d.log(), 10, "two workers")
        others = workers_of(d.proc.pid)
        victim = min(others)
        others.discard(victim)
        for round_ in range(3):
            # Always the same worker: the one that is not the untouched other.
            os.kill(victim, signal.SIGKILL)
            wait_for(lambda: victim not in workers_of(d.proc.pid) and len(workers_of(d.proc.pid)) == 2, 10,
                     f"the restart after kill {round_ + 1}")
            (victim,) = workers_of(d.proc.pid) - others
        log = d.log()
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)
    assert log.count("worker exited; restarting it") == 3, log[-2000:]
    # 200 ms, doubling while the same worker keeps dying soon after its start.
    assert [round(ms) for ms in delays(log)] == [200, 400, 800], log[-2000:]


def test_a_worker_that_cannot_be_restarted_leaves_the_others_serving_and_none_orphaned():
    root = make_temp_dir()
    binary = root / "handoffd-copy"
    shutil.copy2(HANDOFFD_BIN, binary)
    d = Daemon(root / "w.sock", "--workers", "2")
    import harness
    saved = harness.HANDOFFD_BIN
    harness.HANDOFFD_BIN = binary
    try:
        d.start()
        wait_for(lambda: "workers accept handoffs" in d.log(), 10, "two workers")
        workers = workers_of(d.proc.pid)
        binary.unlink()  # from now on, no worker can be started
        victim = min(workers)
        survivor = max(workers)
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: "restarting a worker failed" in d.log(), 10, "a failed restart")
        assert pid_alive(survivor) and pid_alive(d.proc.pid)
        d.proc.send_signal(signal.SIGTERM)
        d.proc.wait(20)
        time.sleep(0.2)
        assert not pid_alive(survivor), "the other worker was left behind"
    finally:
        harness.HANDOFFD_BIN = saved
        d.stop()
        shutil.rmtree(root, ignore_errors=True)
