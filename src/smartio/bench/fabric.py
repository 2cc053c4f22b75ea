"""``smartio bench fabric``: translation cost and remote- vs local-mapped ping-pong.

What it measures, side by side in one run on this machine:

* uncached translation (the slow path walking LUTs, RID LUTs, link states and IOMMU page
  tables) and cached translation (the per-requester IOTLB) in look-ups per second;
* an 8-byte ping-pong between two processes over shared memory, once with both processes
  using *local* CPU mappings of the lender's RAM and once with one process reaching the
  same RAM through the borrower's NTB window (a *remote* mapping). Once set up, both are
  plain loads and stores, so the remote/local ratio shows that the emulated NTB adds no
  software to the data path (target ≤ 1.10).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import time
from typing import Any

from smartio.bench.pingpong import ping, pong, stats
from smartio.hw.fabric import Fabric
from smartio.hw.ids import Requester
from smartio.hw.mapping import map_cpu
from smartio.hw.topology import load_preset
from smartio.hw.translate import Translator
from smartio.hw.units import PAGE_SIZE

PRESET = "back-to-back"
LENDER, BORROWER = "lender", "borrower"
PING_PAGE = 0x10000  # lender RAM page the ping-pong runs on


def _setup(fab: Fabric) -> int:
    """Map slice 0 of the borrower's window onto lender RAM 0; returns the window base."""
    fab.reserve_cpu_requesters(f"{BORROWER}:ntb0")
    ntb = fab.adapters[f"{BORROWER}:ntb0"]
    ntb.peer_mw_set_trans(0, f"{LENDER}:ntb0", 0)
    # A DMA path for the device benchmark: lender nvme0 -> lender NTB -> borrower IOMMU.
    fab.reserve_cpu_requesters(f"{LENDER}:ntb0")
    lntb = fab.adapters[f"{LENDER}:ntb0"]
    lntb.rid_add(fab.function("nvme0").bdf.rid)
    lntb.peer_mw_set_trans(0, f"{BORROWER}:ntb0", 0)
    iommu = fab.iommus[BORROWER]
    dom = iommu.domain_alloc()
    iommu.attach(fab.function(f"{BORROWER}:ntb0").bdf.rid, dom)
    iommu.map(dom, 0, 0x100000, 4 << 20)
    return ntb.window_base


def bench_translation(fab: Fabric, window: int, seconds: float = 0.5) -> dict[str, float]:
    rng = random.Random(1)
    cpu = Requester.cpu_of(BORROWER)
    dev = fab.function("nvme0")
    lwin = fab.adapters[f"{LENDER}:ntb0"].window_base
    slow = Translator(fab)
    out: dict[str, float] = {}
    for label, req, base in (("cpu_remote", cpu, window), ("dma_iommu", dev, lwin)):
        addrs = [base + rng.randrange(0, 1024) * PAGE_SIZE for _ in range(4096)]
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for a in addrs[:512]:
                slow.resolve(req, a, False)
            n += 512
        out[f"uncached_{label}_per_s"] = n / (time.perf_counter() - t0)
        port = fab.port(req)
        for a in addrs:
            port.lookup(a)
        lookup = port.lookup
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for a in addrs:
                lookup(a)
            n += len(addrs)
        out[f"cached_{label}_per_s"] = n / (time.perf_counter() - t0)
    return out


def _ponger(cluster: str, host: str, addr: int, rounds: int, ready: Any) -> None:
    fab = Fabric.attach(load_preset(PRESET), cluster)
    try:
        m = map_cpu(fab, host, addr, PAGE_SIZE)
        q = m.view.cast("Q")
        ready.set()
        pong(q, rounds)
        q.release()
        m.unmap()
    finally:
        fab.close()


def pingpong(fab: Fabric, ping_host: str, ping_addr: int, rounds: int) -> list[int]:
    """Round trips (ns) between this process (pinger) and a child (ponger on the lender)."""
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    m = map_cpu(fab, ping_host, ping_addr, PAGE_SIZE)
    q = m.view.cast("Q")
    q[0] = 0
    q[8] = 0
    child = ctx.Process(target=_ponger, args=(fab.cluster, LENDER, PING_PAGE, rounds, ready))
    child.start()
    try:
        if not ready.wait(30):
            raise RuntimeError("ping-pong partner did not start")
        samples = ping(q, rounds)
        child.join(10)
    finally:
        if child.is_alive():
            child.kill()
            child.join()
        q.release()
        m.unmap()
    return samples[rounds // 10:]  # drop warm-up


def run(rounds: int = 20000, reps: int = 2, seconds: float = 0.5) -> dict[str, Any]:
    """Run the whole fabric benchmark; returns a JSON-able report."""
    cluster = f"bench-{os.getpid()}"
    fab = Fabric.create(load_preset(PRESET), cluster)
    try:
        window = _setup(fab)
        result: dict[str, Any] = {"preset": PRESET, "translation": bench_translation(
            fab, window, seconds)}
        local: list[int] = []
        remote: list[int] = []
        for _ in range(reps):  # interleave to share the machine's drift
            local += pingpong(fab, LENDER, PING_PAGE, rounds)
            remote += pingpong(fab, BORROWER, window + PING_PAGE, rounds)
        ls, rs = stats(local), stats(remote)
        result["pingpong"] = {
            "local": ls, "remote": rs,
            "remote_local_median_ratio": rs["median_us"] / ls["median_us"],
            "remote_local_p99_ratio": rs["p99_us"] / ls["p99_us"],
        }
        return result
    finally:
        fab.destroy()


__all__ = ["bench_translation", "pingpong", "run"]
