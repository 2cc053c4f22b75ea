"""Fixtures shared by the whole suite.

``run_dir`` points SMARTIO_RUN_DIR at a private temporary directory for the test session,
so tests never touch a user's clusters. ``make_cluster`` starts real clusters (one daemon
process per host) on unique names and always stops them; after teardown no daemon, run
directory or shared-memory object of the cluster may remain.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from smartio.cluster.launcher import cluster_down, cluster_up
from smartio.cluster.rundir import RunDir, pid_alive
from smartio.hw.memory import list_cluster_objects

MakeCluster = Callable[..., RunDir]


@pytest.fixture(scope="session", autouse=True)
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("smartio-run")
    old = os.environ.get("SMARTIO_RUN_DIR")
    os.environ["SMARTIO_RUN_DIR"] = str(path)
    os.environ.pop("SMARTIO_CLUSTER", None)
    os.environ.pop("SMARTIO_HOST", None)
    yield path
    if old is None:
        os.environ.pop("SMARTIO_RUN_DIR", None)
    else:
        os.environ["SMARTIO_RUN_DIR"] = old


def _stop(rundir: RunDir) -> None:
    pids = []
    if rundir.exists():
        pids = [p for h in rundir.topology().hosts if (p := rundir.pid(h.name))]
    if rundir.path.exists() or list_cluster_objects(rundir.cluster):
        cluster_down(rundir.cluster)
    assert not any(pid_alive(p) for p in pids), "a daemon survived cluster down"
    assert not rundir.path.exists(), "cluster down left the run directory"
    assert list_cluster_objects(rundir.cluster) == [], "cluster down left shared memory"


@pytest.fixture
def make_cluster() -> Iterator[MakeCluster]:
    """Start clusters: ``make_cluster("back-to-back")`` -> RunDir; stopped at teardown."""
    started: list[RunDir] = []

    def make(topology: str = "back-to-back", name: str | None = None) -> RunDir:
        rd = cluster_up(topology, name or f"c-{uuid4().hex[:8]}")
        started.append(rd)
        return rd

    yield make
    for rd in started:
        _stop(rd)


@pytest.fixture(scope="module")
def module_cluster() -> Iterator[Callable[[str], RunDir]]:
    """Like make_cluster, shared by a module (cluster start-up costs ~1 s)."""
    started: dict[str, RunDir] = {}

    def get(topology: str = "back-to-back") -> RunDir:
        if topology not in started:
            started[topology] = cluster_up(topology, f"m-{uuid4().hex[:8]}")
        return started[topology]

    yield get
    for rd in started.values():
        _stop(rd)
