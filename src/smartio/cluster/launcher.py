"""Start, inspect and stop a whole cluster on this machine (``smartio cluster up|status|down``).

``up`` writes the run directory, creates the cluster's shared memory (removing a crashed
run's leftovers first), starts one daemon process per host in the background and returns
when every daemon answers. ``down`` asks each daemon to stop, kills what does not, removes
every shared-memory object and the run directory — also after a daemon was killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import zmq

from smartio.cluster import messages as m
from smartio.cluster.rundir import RunDir, pid_alive
from smartio.errors import Busy, NotRunning, SmartIOError, Timeout
from smartio.hw.fabric import Fabric
from smartio.hw.memory import cleanup_cluster, list_cluster_objects
from smartio.hw.topology import loads_topology, topology_text

START_TIMEOUT = 60.0


def _request(rundir: RunDir, host: str, msg: m.Msg, timeout: float = 2.0) -> dict[str, Any]:
    """One request to a daemon on a throw-away socket (for the launcher and status)."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    try:
        s.connect(rundir.endpoint(host))
        s.send_multipart([m.PROTOCOL, m.encode(m.Envelope(1, msg))])  # type: ignore[arg-type]
        if not s.poll(int(timeout * 1000)):
            raise Timeout(f"host {host} did not answer within {timeout:g} s")
        rep = m.decode_reply(s.recv_multipart()[-1])
    finally:
        s.close(0)
    if not rep.ok:
        raise SmartIOError(rep.error, code=rep.code)
    return rep.data


def cluster_up(topology: str | Path | None, cluster: str | None = None,
               timeout: float = START_TIMEOUT) -> RunDir:
    """Start every host of a topology in the background; returns when all are ready."""
    rundir = RunDir(cluster)
    if rundir.exists():
        topo = rundir.topology()
        live = [h.name for h in topo.hosts if rundir.alive(h.name)]
        if live:
            raise Busy(f"cluster {rundir.cluster!r} is already running (hosts {live}); "
                       f"stop it with `smartio cluster down --cluster {rundir.cluster}`")
        _cleanup(rundir)  # leftovers of a crashed run
    text, source = topology_text(topology)
    topo = loads_topology(text, source=source)
    rundir.create(text)
    Fabric.create(topo, rundir.cluster).close()
    env = {**os.environ, "SMARTIO_CLUSTER": rundir.cluster}
    for h in topo.hosts:
        with open(rundir.log(h.name), "ab") as log:
            subprocess.Popen([sys.executable, "-m", "smartio", "node", "run", "--cluster",
                              rundir.cluster, "--host", h.name], stdout=log, stderr=log,
                             stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                             cwd="/")
    deadline = time.monotonic() + timeout
    pending = [h.name for h in topo.hosts]
    while pending:
        if time.monotonic() > deadline:
            cluster_down(rundir.cluster)
            raise Timeout(f"hosts {pending} did not start within {timeout:g} s; see their "
                          f"logs in {rundir.path}")
        host = pending[0]
        if rundir.alive(host):
            with contextlib.suppress(Timeout, SmartIOError):
                _request(rundir, host, m.Ping(), 0.5)
                pending.pop(0)
                continue
        time.sleep(0.05)
    return rundir


def cluster_status(cluster: str | None = None) -> dict[str, Any]:
    """Hosts, adapters, links, segments and clients of a running cluster."""
    rundir = RunDir(cluster)
    topo = rundir.topology()
    fab = Fabric.attach(topo, rundir.cluster)
    try:
        links = [{"name": lk.name, "up": fab.link_is_up(i), "gen": lk.gen, "width": lk.width,
                  "downs": fab.link_down_count(i)} for i, lk in enumerate(topo.links)]
    finally:
        fab.close()
    hosts = []
    for h in topo.hosts:
        entry: dict[str, Any] = {"host": h.name, "pid": rundir.pid(h.name)}
        if not rundir.alive(h.name):
            entry["state"] = "dead"
        else:
            try:
                entry.update(_request(rundir, h.name, m.Status()))
                entry["state"] = "running"
            except (Timeout, SmartIOError) as e:
                entry["state"] = f"not responding ({e})"
        hosts.append(entry)
    return {"cluster": rundir.cluster, "topology": topo.name, "run_dir": str(rundir.path),
            "hosts": hosts, "links": links,
            "shm_objects": len(list_cluster_objects(rundir.cluster))}


def cluster_down(cluster: str | None = None, timeout: float = 5.0) -> list[str]:
    """Stop every daemon and remove everything the cluster created. Returns what was removed."""
    rundir = RunDir(cluster)
    if not rundir.path.exists() and not list_cluster_objects(rundir.cluster):
        raise NotRunning(f"cluster {rundir.cluster!r} is not running; start it with "
                         f"`smartio cluster up --cluster {rundir.cluster}`")
    hosts: list[str] = []
    if rundir.exists():
        hosts = [h.name for h in rundir.topology().hosts]
    # Read the pids first: a daemon removes its pid file while it shuts down, before its
    # process has exited, and down must not return while a daemon still runs.
    pids = {h: rundir.pid(h) for h in hosts}
    engines = [p for p in rundir.all_pids() if p not in pids.values()] \
        if rundir.path.exists() else []
    for h in hosts:
        if rundir.alive(h):
            with contextlib.suppress(Timeout, SmartIOError):
                _request(rundir, h, m.Shutdown(), 1.0)
    deadline = time.monotonic() + timeout
    for h in hosts:
        pid = pids[h]
        while pid and pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if pid and pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for pid in engines:  # engines end with their daemon; make sure after a daemon crash
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return _cleanup(rundir)


def _cleanup(rundir: RunDir) -> list[str]:
    removed = [p.name for p in cleanup_cluster(rundir.cluster)]
    rundir.remove()
    return removed


__all__ = ["cluster_down", "cluster_status", "cluster_up"]
