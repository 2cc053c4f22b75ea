"""``smartio bench segment`` and ``smartio bench dma``: the SISCI API on a running cluster.

Both start a private cluster (back-to-back preset), measure, and stop it.

* segment: an 8-byte ping-pong between two *programs* (processes, each attached to its
  host through the SISCI API). Local: both run on the lender and map the segment locally.
  Remote: the ponger stays on the lender, the pinger runs on the borrower and maps the
  segment through its NTB window. Reported: median and p99 of each, and the ratio.
* dma: a DMA queue on the borrower moves data between its local segment and a remote
  segment on the lender, for sizes 4 KiB … 64 MiB, both directions; reported: median
  throughput per size.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import time
from typing import Any

from smartio import sisci
from smartio.bench.pingpong import ping, pong, stats
from smartio.cluster.launcher import cluster_down, cluster_up

SEGMENT_ID = 0x5E6
LENDER, BORROWER = "lender", "borrower"


def _ponger(cluster: str, host: str, rounds: int, ready: Any, go: Any) -> None:
    with sisci.open(host, cluster, "bench-ponger") as sd:
        seg = sd.create_segment(4096, SEGMENT_ID)
        seg.prepare(0)
        seg.set_available(0)
        q = seg.map().view.cast("Q")
        ready.set()
        go.wait()
        pong(q, rounds)
        q.release()


def _pinger(cluster: str, host: str, node_id: int, rounds: int, out: Any) -> None:
    with sisci.open(host, cluster, "bench-pinger") as sd:
        rs = sd.connect_segment(node_id, SEGMENT_ID, 0, timeout=10)
        mp_ = rs.map()
        q = mp_.view.cast("Q")
        samples = ping(q, rounds)
        q.release()
        out.send(samples[rounds // 10:])


def pingpong(cluster: str, owner: str, host: str, node_id: int, rounds: int) -> list[int]:
    """Round trips (ns) between a program on ``host`` and one on ``owner``, through a
    segment of ``owner`` (node id ``node_id``) that the pinger maps."""
    ctx = mp.get_context("spawn")
    ready, go = ctx.Event(), ctx.Event()
    rx, tx = ctx.Pipe(duplex=False)
    ponger = ctx.Process(target=_ponger, args=(cluster, owner, rounds, ready, go))
    ponger.start()
    pinger = None
    try:
        if not ready.wait(30):
            raise RuntimeError("ping-pong partner did not start")
        pinger = ctx.Process(target=_pinger, args=(cluster, host, node_id, rounds, tx))
        pinger.start()
        go.set()
        if not rx.poll(120):
            raise RuntimeError("ping-pong did not finish")
        samples: list[int] = rx.recv()
        return samples
    finally:
        for p in (pinger, ponger):
            if p is not None:
                p.join(10)
                if p.is_alive():
                    p.kill()
                    p.join()


def bench_segment(rounds: int = 20000, reps: int = 2) -> dict[str, Any]:
    cluster = f"bench-seg-{os.getpid()}"
    cluster_up("back-to-back", cluster)
    try:
        with sisci.open(LENDER, cluster, "bench") as sd:
            node = sd.local_node_id(0)
        local: list[int] = []
        remote: list[int] = []
        for _ in range(reps):
            local += pingpong(cluster, LENDER, LENDER, node, rounds)
            remote += pingpong(cluster, LENDER, BORROWER, node, rounds)
        ls, rs = stats(local), stats(remote)
        return {"preset": "back-to-back", "local": ls, "remote": rs,
                "remote_local_median_ratio": rs["median_us"] / ls["median_us"],
                "remote_local_p99_ratio": rs["p99_us"] / ls["p99_us"]}
    finally:
        cluster_down(cluster)


SIZES = [4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20]


def bench_dma(sizes: list[int] | None = None, min_bytes: int = 256 << 20,
              max_reps: int = 200) -> dict[str, Any]:
    sizes = sizes or SIZES
    top = max(sizes)
    cluster = f"bench-dma-{os.getpid()}"
    cluster_up("back-to-back", cluster)
    rows = []
    try:
        with sisci.open(LENDER, cluster, "bench-dma-owner") as owner, \
                sisci.open(BORROWER, cluster, "bench-dma") as sd:
            rseg = owner.create_segment(top, 0xD3A)
            rseg.prepare(0)
            rseg.set_available(0)
            lseg = sd.create_segment(top)
            lseg.prepare(0)
            remote = sd.connect_segment(owner.local_node_id(0), 0xD3A, 0)
            q = sd.create_dma_queue(0, 4)
            for read in (False, True):  # warm both directions' pages and translations
                q.start_transfer(lseg, 0, remote, 0, top, read=read)
                q.wait(60)
            for size in sizes:
                reps = max(3, min(max_reps, min_bytes // size))
                row: dict[str, Any] = {"size": size, "reps": reps}
                for label, read in (("write", False), ("read", True)):
                    rates = []
                    for _ in range(reps):
                        t0 = time.perf_counter()
                        q.start_transfer(lseg, 0, remote, 0, size, read=read)
                        done = q.wait(60)
                        dt = time.perf_counter() - t0
                        if not all(c.ok for c in done):
                            raise RuntimeError(f"DMA failed: {done}")
                        rates.append(size / dt / 1e9)
                    row[f"{label}_gbps"] = statistics.median(rates)
                rows.append(row)
        return {"preset": "back-to-back", "direction": "borrower DMA engine <-> lender segment",
                "rows": rows}
    finally:
        cluster_down(cluster)


__all__ = ["bench_dma", "bench_segment", "pingpong", "stats"]
