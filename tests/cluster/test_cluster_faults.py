"""Faults in a running multi-process cluster: killed programs, killed daemons, dead links.

DESIGN §4.2/§5 and SISCI's segment events: when a program dies (kill -9) its host daemon
frees what it held and tells the peers ('lost' for its segments, 'disconnect' for its
connections); when a daemon dies its peers (watching every 0.5 s) report its segments
lost; a dead cluster is cleaned by ``down`` or by the next ``up``; a link that goes down
under a mapping makes reads return 0xFF and drops writes until it comes back.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from smartio import sisci
from smartio.cluster.launcher import cluster_down, cluster_status
from smartio.cluster.rundir import RunDir, pid_alive
from smartio.errors import NotConnected, NotRunning
from smartio.hw.memory import list_cluster_objects
from smartio.sisci import SeqStatus

GetCluster = Callable[[str], RunDir]
MakeCluster = Callable[..., RunDir]

#: A program that opens a descriptor on a host, offers segments (each starts with b"SEG"
#: and its id byte), optionally connects to and maps peers' segments, then sleeps.
PROGRAM = r"""
import json, sys, time
from smartio import sisci
host, cluster, segs, connects = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), \
    json.loads(sys.argv[4])
sd = sisci.open(host, cluster, name="victim")
keep = []
for sid in segs:
    seg = sd.create_segment(64 << 10, sid)
    seg.prepare()
    seg.set_available()
    mp = seg.map()
    mp.view[:4] = b"SEG" + bytes([sid & 0xFF])
    keep += [seg, mp]
for node, sid in connects:
    rs = sd.connect_segment(node, sid)
    keep += [rs, rs.map()]
print("READY", flush=True)
time.sleep(600)
"""


@contextlib.contextmanager
def program(cluster: str, host: str, segments: Sequence[int] = (),
            connects: Sequence[tuple[int, int]] = ()) -> Iterator[subprocess.Popen[str]]:
    """Run PROGRAM as a child process until it says READY; always kill it at the end."""
    proc = subprocess.Popen([sys.executable, "-c", PROGRAM, host, cluster,
                             json.dumps(list(segments)), json.dumps(list(connects))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        line = proc.stdout.readline() if ready else ""
        if line.strip() != "READY":
            proc.kill()
            raise AssertionError(f"program did not start: {proc.communicate()[1]}")
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def kill9(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def kill9_daemon(pid: int) -> None:
    """SIGKILL a daemon and wait (bounded) until it no longer runs."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while pid_alive(pid):
        assert time.monotonic() < deadline, f"daemon {pid} survived SIGKILL"
        time.sleep(0.01)


def host_entry(status: dict[str, Any], host: str) -> dict[str, Any]:
    return next(h for h in status["hosts"] if h["host"] == host)


def lut_used(cluster: str, host: str) -> int:
    return int(host_entry(cluster_status(cluster), host)["adapters"][0]["lut_used"])


def poll_status(cluster: str, host: str, done: Callable[[dict[str, Any]], bool],
                timeout: float = 3.0) -> dict[str, Any]:
    """Poll a host's status until ``done`` holds; fail with the last status otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        entry = host_entry(cluster_status(cluster), host)
        if done(entry):
            return entry
        if time.monotonic() > deadline:
            raise AssertionError(f"{host} did not get there within {timeout} s: {entry}")
        time.sleep(0.05)


# -- a program dies -----------------------------------------------------------------------------


def test_killed_program_frees_its_segments(module_cluster: GetCluster) -> None:
    """kill -9 of a program: its host frees its segments, memory and client entry."""
    rd = module_cluster("back-to-back")
    base = host_entry(cluster_status(rd.cluster), "lender")["pool_used"]
    with program(rd.cluster, "lender", segments=[101, 102]) as proc:
        entry = host_entry(cluster_status(rd.cluster), "lender")
        assert {s["id"] for s in entry["segments"] if s["owner"] == "victim"} == {101, 102}
        assert entry["pool_used"] == base + 2 * (64 << 10)
        assert any(c["pid"] == proc.pid for c in entry["clients"])
        kill9(proc)
        poll_status(rd.cluster, "lender", lambda e: not any(
            s["owner"] == "victim" for s in e["segments"]) and e["pool_used"] == base
            and not any(c["pid"] == proc.pid for c in e["clients"]))
    with sisci.open("lender", rd.cluster) as sd:
        sd.create_segment(4096, 101).remove()  # the id is free again


def test_peer_of_killed_program_sees_segment_lost(module_cluster: GetCluster) -> None:
    """A program mapping a killed program's segment gets 'lost', its LUT freed, 0xFF reads."""
    rd = module_cluster("back-to-back")
    base = lut_used(rd.cluster, "borrower")
    with program(rd.cluster, "lender", segments=[111]) as proc, \
            sisci.open("borrower", rd.cluster) as sd:
        rs = sd.connect_segment(4, 111)
        mp = rs.map()
        assert bytes(mp.view[:4]) == b"SEG\x6f"
        assert lut_used(rd.cluster, "borrower") == base + 1
        kill9(proc)
        ev = rs.wait_for_event(timeout=5)
        assert (ev.reason, ev.node_id) == ("lost", 4)
        assert bytes(mp.view[:4]) == b"\xff" * 4
        assert rs.lost and lut_used(rd.cluster, "borrower") == base
        (conn,) = [c for c in host_entry(cluster_status(rd.cluster), "borrower")["connections"]
                   if c["segment"] == 111]
        assert conn["lost"] is True and conn["maps"] == 0
        with pytest.raises(NotConnected, match="lost"):
            rs.map()
        rs.disconnect()


def test_killed_program_releases_its_connections(module_cluster: GetCluster) -> None:
    """kill -9 of a connected program: the owner sees 'disconnect' and the LUT entry is freed."""
    rd = module_cluster("back-to-back")
    base = lut_used(rd.cluster, "borrower")
    with sisci.open("lender", rd.cluster) as owner:
        seg = owner.create_segment(64 << 10, 121)
        seg.prepare().set_available()
        with program(rd.cluster, "borrower", connects=[(4, 121)]) as proc:
            ev = seg.wait_for_event(timeout=5)
            assert (ev.reason, ev.node_id) == ("connect", 8)
            assert lut_used(rd.cluster, "borrower") == base + 1
            kill9(proc)
            ev = seg.wait_for_event(timeout=5)
            assert (ev.reason, ev.node_id) == ("disconnect", 8)
        assert lut_used(rd.cluster, "borrower") == base
        (s,) = [s for s in host_entry(cluster_status(rd.cluster), "lender")["segments"]
                if s["id"] == 121]
        assert s["connections"] == 0
        seg.remove()  # no longer busy: nobody is connected


# -- a daemon dies ------------------------------------------------------------------------------


def test_killed_daemon_is_dead_and_peers_lose_its_segments(make_cluster: MakeCluster) -> None:
    """kill -9 of a daemon: status says dead, peers get 'lost', and down still cleans all."""
    rd = make_cluster("back-to-back")
    pids = [p for h in ("lender", "borrower") if (p := rd.pid(h))]
    with program(rd.cluster, "lender", segments=[131, 132]) as proc:
        sd = sisci.open("borrower", rd.cluster)
        try:
            conns = [sd.connect_segment(4, sid) for sid in (131, 132)]
            maps = [rs.map() for rs in conns]
            assert [bytes(mp.view[:4]) for mp in maps] == [b"SEG\x83", b"SEG\x84"]
            kill9_daemon(pids[0])
            for rs, mp in zip(conns, maps, strict=True):
                assert rs.wait_for_event(timeout=5).reason == "lost"
                assert bytes(mp.view[:4]) == b"\xff" * 4
            st = cluster_status(rd.cluster)
            lender, borrower = host_entry(st, "lender"), host_entry(st, "borrower")
            assert lender["state"] == "dead" and lender["pid"] == pids[0]
            assert "adapters" not in lender
            assert borrower["state"] == "running"
            assert borrower["adapters"][0]["lut_used"] == 0
            assert all(c["lost"] for c in borrower["connections"])
            with pytest.raises(NotRunning, match="smartio cluster up"):
                sisci.open("lender", rd.cluster)
        finally:
            sd.close()  # lost connections disconnect locally: the dead host is not asked
        kill9(proc)
    cluster_down(rd.cluster)
    assert not any(pid_alive(p) for p in pids)
    assert not rd.path.exists() and list_cluster_objects(rd.cluster) == []


def test_up_after_crash_starts_clean(make_cluster: MakeCluster) -> None:
    """After every daemon was killed, `up` of the same name removes the leftovers and starts."""
    rd = make_cluster("back-to-back")
    old = [p for h in ("lender", "borrower") if (p := rd.pid(h))]
    with program(rd.cluster, "lender", segments=[141]) as proc:
        with sisci.open("borrower", rd.cluster) as sd:
            sd.link_set("lender:ntb0", False)
        for pid in old:
            kill9_daemon(pid)
        kill9(proc)
    st = cluster_status(rd.cluster)  # a crashed cluster: leftovers, no daemons
    assert [h["state"] for h in st["hosts"]] == ["dead", "dead"]
    assert st["links"][0]["up"] is False and st["shm_objects"] > 0
    assert rd.pid_file("lender").exists() and rd.socket("lender").exists()

    rd = make_cluster("back-to-back", name=rd.cluster)
    st = cluster_status(rd.cluster)
    assert [h["state"] for h in st["hosts"]] == ["running", "running"]
    assert not {h["pid"] for h in st["hosts"]} & set(old)
    for h in st["hosts"]:
        assert h["segments"] == [] and h["connections"] == [] and h["clients"] == []
        assert h["pool_used"] == 0 and h["adapters"][0]["lut_used"] == 0
    assert st["links"][0]["up"] is True and st["links"][0]["downs"] == 0
    with sisci.open("lender", rd.cluster) as a, sisci.open("borrower", rd.cluster) as b:
        seg = a.create_segment(64 << 10, 141)  # the crashed program's id is free
        seg.prepare().set_available()
        assert bytes(b.connect_segment(4, 141).map().view[:4]) == bytes(4)


# -- a link goes down ---------------------------------------------------------------------------


def test_link_down_during_mapped_access(module_cluster: GetCluster) -> None:
    """Link down: 0xFF reads, dropped writes, NOT_RETRIABLE; link up: data back, RETRIABLE."""
    rd = module_cluster("back-to-back")
    with sisci.open("lender", rd.cluster) as owner, sisci.open("borrower", rd.cluster) as sd:
        seg = owner.create_segment(64 << 10, 151)
        seg.prepare().set_available()
        local = seg.map()
        rs = sd.connect_segment(4, 151)
        mp = rs.map()
        mp.view[:8] = b"BEFORE!!"
        assert bytes(local.view[:8]) == b"BEFORE!!"
        seq = mp.create_sequence()
        assert seq.start() == SeqStatus.OK
        try:
            sd.link_set("lender:ntb0", False)
            ev = rs.wait_for_event(timeout=5)
            assert (ev.reason, ev.node_id) == ("not-operational", 4)
            assert bytes(mp.view[:8]) == b"\xff" * 8
            mp.view[:8] = b"DROPPED!"
            assert bytes(local.view[:8]) == b"BEFORE!!"
            assert seq.check() == SeqStatus.NOT_RETRIABLE
        finally:
            sd.link_set("lender:ntb0", True)
        ev = rs.wait_for_event(timeout=5)
        assert (ev.reason, ev.node_id) == ("operational", 4)
        assert bytes(mp.view[:8]) == b"BEFORE!!"
        assert seq.check() == SeqStatus.RETRIABLE
        assert seq.start() == SeqStatus.OK
        mp.view[:8] = b"AFTER!!!"
        assert bytes(local.view[:8]) == b"AFTER!!!"
        assert not rs.lost
