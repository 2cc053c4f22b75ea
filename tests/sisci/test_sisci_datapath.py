"""The data path has no SmartIO software in it: daemon counters prove it (DESIGN §2)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from smartio import sisci
from smartio.cluster.launcher import cluster_status
from smartio.cluster.rundir import RunDir


def _requests(cluster: str) -> dict[str, int]:
    return {h["host"]: h["requests"] for h in cluster_status(cluster)["hosts"]}


def test_mapped_accesses_send_no_control_messages(
        module_cluster: Callable[[str], RunDir]) -> None:
    """Ten thousand loads and stores through a remote map leave both daemons' request
    counters untouched; only set-up and tear-down talk to the daemons."""
    cluster = module_cluster("back-to-back").cluster
    with sisci.open("lender", cluster, "owner") as owner, \
            sisci.open("borrower", cluster, "user") as user:
        seg = owner.create_segment(1 << 20, 0xDA7A)
        seg.prepare(0)
        seg.set_available(0)
        rs = user.connect_segment(owner.local_node_id(0), 0xDA7A, 0)
        remote = rs.map()
        local = seg.map()
        before = _requests(cluster)
        q = remote.view.cast("Q")
        for i in range(10_000):
            q[i % 1024] = i
            assert q[i % 1024] == i
        pattern = np.arange(1 << 20, dtype=np.uint64).astype(np.uint8)
        remote.array[:] = pattern
        after = _requests(cluster)
        # The status calls themselves are the only requests in between.
        assert {h: after[h] - before[h] for h in after} == {"lender": 1, "borrower": 1}
        assert np.array_equal(local.array, pattern)
        q.release()
        remote.unmap()
        local.unmap()
