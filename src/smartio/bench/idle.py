"""``smartio bench idle``: how much CPU an idle cluster's daemons and device engines use.

Starts a private cluster, lets it settle, then reads each process's CPU time from
``/proc/<pid>/stat`` before and after a quiet interval: the share of one core each
process used (the target is below 5% per engine).
"""

from __future__ import annotations

import os
import time
from typing import Any

from smartio.cluster.launcher import cluster_down, cluster_up

TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def bench_idle(topology: str = "back-to-back", seconds: float = 5.0,
               settle: float = 1.0) -> dict[str, Any]:
    cluster = f"bench-idle-{os.getpid()}"
    rundir = cluster_up(topology, cluster)
    try:
        time.sleep(settle)
        procs: dict[str, int] = {}
        for h in rundir.topology().hosts:
            pid = rundir.pid(h.name)
            if pid:
                procs[f"daemon {h.name}"] = pid
        for f in rundir.path.glob("*.engine.pid"):
            procs["engine " + f.name.removesuffix(".engine.pid")] = int(f.read_text())
        before = {k: _cpu_seconds(p) for k, p in procs.items()}
        t0 = time.monotonic()
        time.sleep(seconds)
        dt = time.monotonic() - t0
        rows = {k: 100 * (_cpu_seconds(p) - before[k]) / dt for k, p in procs.items()}
        return {"topology": topology, "seconds": dt, "percent_of_core": rows}
    finally:
        cluster_down(cluster)


__all__ = ["bench_idle"]
