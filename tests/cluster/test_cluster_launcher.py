"""The multi-process cluster runtime as users run it: ``cluster up|status|down``, ``node run``.

DESIGN §4.2 and §5: one daemon process per host under a run directory, shared memory under
/dev/shm, everything removed by ``down``; clusters with different names are independent;
commands against a cluster that is not running fail at once and say how to start it. The
CLI tests run ``python -m smartio`` as a subprocess; SMARTIO_RUN_DIR comes from the session
fixture through ``os.environ``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from smartio import sisci
from smartio.cluster import messages as m
from smartio.cluster.client import DaemonClient
from smartio.cluster.launcher import cluster_down, cluster_status, cluster_up
from smartio.cluster.rundir import RunDir, pid_alive
from smartio.errors import Busy, NotRunning
from smartio.hw.memory import list_cluster_objects

GetCluster = Callable[[str], RunDir]
MakeCluster = Callable[..., RunDir]


def smartio(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "smartio", *args], capture_output=True,
                          text=True, timeout=90, env={**os.environ, "COLUMNS": "200"})
    if check and proc.returncode != 0:
        raise AssertionError(f"smartio {' '.join(args)} failed ({proc.returncode}): "
                             f"{proc.stderr}")
    return proc


def host_entry(status: dict[str, Any], host: str) -> dict[str, Any]:
    return next(h for h in status["hosts"] if h["host"] == host)


def assert_gone(cluster: str, pids: list[int]) -> None:
    assert not any(pid_alive(p) for p in pids), "a daemon survived cluster down"
    assert not RunDir(cluster).path.exists(), "the run directory was left behind"
    assert list_cluster_objects(cluster) == [], "shared-memory objects were left behind"


@pytest.fixture
def cluster_name() -> Iterator[str]:
    """A fresh cluster name; whatever a test left running under it is stopped afterwards."""
    name = f"t-{uuid4().hex[:8]}"
    yield name
    rd = RunDir(name)
    if rd.path.exists() or list_cluster_objects(name):
        cluster_down(name)


# -- up / status / down -----------------------------------------------------------------------


def test_up_starts_every_host_and_status_lists_them(module_cluster: GetCluster) -> None:
    """`up` starts a daemon per host; status lists hosts with pids, adapters, node ids, links."""
    rd = module_cluster("back-to-back")
    st = cluster_status(rd.cluster)
    assert st["cluster"] == rd.cluster and st["topology"] == "back-to-back"
    assert st["run_dir"] == str(rd.path) and st["shm_objects"] > 0
    assert [h["host"] for h in st["hosts"]] == ["lender", "borrower"]
    for h in st["hosts"]:
        assert h["state"] == "running"
        assert h["pid"] == rd.pid(h["host"]) and pid_alive(h["pid"])
        assert rd.socket(h["host"]).exists()
        (ad,) = h["adapters"]
        assert ad["id"] == f"{h['host']}:ntb0" and ad["link_up"] is True
        assert 0 <= ad["lut_used"] < ad["lut_total"]
    assert host_entry(st, "lender")["pid"] != host_entry(st, "borrower")["pid"]
    assert [h["adapters"][0]["node_id"] for h in st["hosts"]] == [4, 8]
    (link,) = st["links"]
    assert link["up"] is True and link["gen"] == 3 and link["width"] == 16


def test_status_shows_segments_connections_clients_and_lut_usage(
        module_cluster: GetCluster) -> None:
    """Status shows a program's segment, its connection, the LUT entry its map uses, clients."""
    rd = module_cluster("back-to-back")
    before = host_entry(cluster_status(rd.cluster), "borrower")["adapters"][0]["lut_used"]
    with sisci.open("lender", rd.cluster, name="status-owner") as a, \
            sisci.open("borrower", rd.cluster, name="status-user") as b:
        seg = a.create_segment(64 << 10, 4711)
        seg.prepare().set_available()
        rs = b.connect_segment(a.local_node_id(), 4711)
        rs.map()
        st = cluster_status(rd.cluster)
        lender, borrower = host_entry(st, "lender"), host_entry(st, "borrower")
        (s,) = [s for s in lender["segments"] if s["id"] == 4711]
        assert s["size"] == 64 << 10 and s["owner"] == "status-owner"
        assert s["available"] == [0] and s["connections"] == 1
        (c,) = [c for c in borrower["connections"] if c["segment"] == 4711]
        assert c["host"] == "lender" and c["node_id"] == a.local_node_id()
        assert c["maps"] == 1 and c["lost"] is False
        assert borrower["adapters"][0]["lut_used"] == before + 1
        assert {"pid": os.getpid(), "name": "status-owner"}.items() <= next(
            cl for cl in lender["clients"] if cl["name"] == "status-owner").items()
        assert any(cl["name"] == "status-user" for cl in borrower["clients"])
    st = cluster_status(rd.cluster)
    assert not [s for s in host_entry(st, "lender")["segments"] if s["id"] == 4711]
    assert host_entry(st, "borrower")["adapters"][0]["lut_used"] == before


def test_down_stops_daemons_and_removes_run_dir_and_shm(make_cluster: MakeCluster) -> None:
    """`down` stops every daemon and removes the run directory and every shm object."""
    rd = make_cluster("back-to-back")
    pids = [p for h in ("lender", "borrower") if (p := rd.pid(h))]
    assert len(pids) == 2 and all(pid_alive(p) for p in pids)
    objects = [p.name for p in list_cluster_objects(rd.cluster)]
    assert objects
    removed = cluster_down(rd.cluster)
    assert sorted(removed) == sorted(objects)
    assert_gone(rd.cluster, pids)


def test_two_clusters_run_independently(make_cluster: MakeCluster) -> None:
    """Two clusters with different names share nothing: segments, links and `down`."""
    ra, rb = make_cluster("back-to-back"), make_cluster("back-to-back")
    assert ra.path != rb.path
    with sisci.open("lender", ra.cluster) as a, sisci.open("lender", rb.cluster) as b:
        sa, sb = a.create_segment(4096, 7), b.create_segment(4096, 7)  # same id: no clash
        ma, mb = sa.map(), sb.map()
        ma.view[:4] = b"AAAA"
        assert bytes(mb.view[:4]) == bytes(4)
        a.link_set("lender:ntb0", False)
        assert cluster_status(ra.cluster)["links"][0]["up"] is False
        assert cluster_status(rb.cluster)["links"][0]["up"] is True
        a.link_set("lender:ntb0", True)
    pids_a = [p for h in ("lender", "borrower") if (p := ra.pid(h))]
    cluster_down(ra.cluster)
    assert_gone(ra.cluster, pids_a)
    st = cluster_status(rb.cluster)
    assert [h["state"] for h in st["hosts"]] == ["running", "running"]
    with sisci.open("borrower", rb.cluster) as b:
        assert b.local_node_id() == 8


def test_up_twice_on_same_name_raises_busy(make_cluster: MakeCluster) -> None:
    """A second `up` of a running cluster raises Busy and leaves the first one running."""
    rd = make_cluster("back-to-back")
    pids = {h: rd.pid(h) for h in ("lender", "borrower")}
    with pytest.raises(Busy, match="already running") as ei:
        cluster_up("back-to-back", rd.cluster)
    assert f"smartio cluster down --cluster {rd.cluster}" in str(ei.value)
    st = cluster_status(rd.cluster)
    assert {h["host"]: h["pid"] for h in st["hosts"]} == pids
    assert all(h["state"] == "running" for h in st["hosts"])


@pytest.mark.parametrize("action", ["status", "down", "attach", "open"])
def test_commands_on_stopped_cluster_say_how_to_start_it(action: str) -> None:
    """status, down and attach on a cluster that is not running raise NotRunning with a hint."""
    name = f"absent-{uuid4().hex[:8]}"
    calls: dict[str, Callable[[], object]] = {
        "status": lambda: cluster_status(name),
        "down": lambda: cluster_down(name),
        "attach": lambda: DaemonClient("lender", name),
        "open": lambda: sisci.open("lender", name),
    }
    with pytest.raises(NotRunning, match=f"smartio cluster up --cluster {name}"):
        calls[action]()
    assert not RunDir(name).path.exists()


def test_unknown_host_error_names_the_hosts(module_cluster: GetCluster) -> None:
    """Attaching to a host the cluster lacks fails with NotRunning naming its hosts."""
    rd = module_cluster("back-to-back")
    with pytest.raises(NotRunning, match="'nope'") as ei:
        DaemonClient(host="nope", cluster=rd.cluster)
    assert "hosts: lender, borrower" in str(ei.value)


# -- the command line -------------------------------------------------------------------------


def test_cli_up_status_link_down(cluster_name: str) -> None:
    """`cluster up`, `status --json`, `link down/up` and `cluster down` work as processes."""
    out = smartio("cluster", "up", "--cluster", cluster_name, "--topology",
                  "back-to-back").stdout
    assert "lender" in out and "borrower" in out
    rd = RunDir(cluster_name)
    pids = [p for h in ("lender", "borrower") if (p := rd.pid(h))]
    assert len(pids) == 2 and all(pid_alive(p) for p in pids)

    st = json.loads(smartio("cluster", "status", "--cluster", cluster_name, "--json").stdout)
    assert st["cluster"] == cluster_name and st["topology"] == "back-to-back"
    assert [(h["host"], h["state"], h["pid"]) for h in st["hosts"]] == [
        ("lender", "running", pids[0]), ("borrower", "running", pids[1])]
    assert [h["adapters"][0]["node_id"] for h in st["hosts"]] == [4, 8]
    assert st["links"][0]["up"] is True and st["links"][0]["downs"] == 0

    text = smartio("cluster", "status", "--cluster", cluster_name).stdout
    assert "lender:ntb0" in text and "running" in text

    smartio("link", "down", "lender:ntb0", "--cluster", cluster_name)
    st = json.loads(smartio("cluster", "status", "--cluster", cluster_name, "--json").stdout)
    assert st["links"][0]["up"] is False and st["links"][0]["downs"] == 1
    assert all(h["adapters"][0]["link_up"] is False for h in st["hosts"])
    smartio("link", "up", "lender:ntb0", "--cluster", cluster_name)
    st = json.loads(smartio("cluster", "status", "--cluster", cluster_name, "--json").stdout)
    assert st["links"][0]["up"] is True and st["links"][0]["downs"] == 1

    assert "cluster down" in smartio("cluster", "down", "--cluster", cluster_name).stdout
    assert_gone(cluster_name, pids)
    proc = smartio("cluster", "status", "--cluster", cluster_name, check=False)
    assert proc.returncode == 2 and "smartio cluster up" in proc.stderr


def test_node_run_in_foreground_stops_on_sigterm(cluster_name: str, tmp_path: Path) -> None:
    """`node run` serves one host in the foreground; SIGTERM stops it and removes its files."""
    rd = RunDir(cluster_name)
    with open(tmp_path / "node.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "smartio", "node", "run", "--topology", "back-to-back",
             "--host", "lender", "--cluster", cluster_name],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while rd.pid("lender") != proc.pid:
            assert proc.poll() is None, (tmp_path / "node.log").read_text()
            assert time.monotonic() < deadline, "node run never wrote its pid file"
            time.sleep(0.05)
        client = DaemonClient("lender", cluster_name)
        try:
            assert client.call(m.Ping()) == {"host": "lender"}
        finally:
            client.close()
        st = cluster_status(cluster_name)
        assert host_entry(st, "lender")["state"] == "running"
        assert host_entry(st, "borrower")["state"] == "dead"  # only lender was started
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not rd.pid_file("lender").exists() and not rd.socket("lender").exists()
    assert "node_down: lender" in (tmp_path / "node.log").read_text()
    cluster_down(cluster_name)
    assert_gone(cluster_name, [proc.pid])
