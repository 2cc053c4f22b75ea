"""The program-side client: goodbye on close, and a dead daemon reported as such."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest

from smartio import sisci
from smartio.cluster import messages as m
from smartio.cluster.launcher import cluster_status
from smartio.cluster.rundir import RunDir, pid_alive
from smartio.errors import NotRunning


def _clients(cluster: str, host: str) -> list[str]:
    st = cluster_status(cluster)
    return [c["name"] for h in st["hosts"] if h["host"] == host for c in h["clients"]]


def test_close_says_goodbye_and_frees_the_client(
        module_cluster: Callable[[str], RunDir]) -> None:
    """Closing a descriptor releases its client entry and segments at once, while the
    program keeps running."""
    cluster = module_cluster("back-to-back").cluster
    sd = sisci.open("lender", cluster, "goodbye-test")
    seg = sd.create_segment(4096)
    seg.prepare(0)
    assert "goodbye-test" in _clients(cluster, "lender")
    sd.client.call(m.Ping())  # the connection works before close
    sd.close()
    assert "goodbye-test" not in _clients(cluster, "lender")
    st = cluster_status(cluster)
    assert not [s for h in st["hosts"] for s in h["segments"] if s["owner"] == "goodbye-test"]


def test_call_to_a_dead_daemon_says_it_died(make_cluster: Callable[..., RunDir]) -> None:
    """A request to a host whose daemon was killed fails with NotRunning (not a timeout)."""
    rd = make_cluster("back-to-back")
    sd = sisci.open("borrower", rd.cluster, "orphan")
    pid = rd.pid("borrower")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    while pid_alive(pid):
        time.sleep(0.01)
    with pytest.raises(NotRunning, match="died"):
        sd.client.call(m.Ping(), timeout=30)
    sd.close()
