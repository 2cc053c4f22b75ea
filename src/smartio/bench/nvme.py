"""``smartio nvme bench``: 4 KiB random reads through the userspace driver, and a peer.

Our path: the driver in this process, a queue pair in host RAM, the NVMe model in its
device engine (another process), data DMAed through the fabric. QD1 reports the latency
distribution, QD32 the IOPS. With ``--peer nbdkit`` the same workload runs with fio's
``nbd`` engine against nbdkit serving a namespace of the same size over a UNIX socket
(Debian packages ``nbdkit`` and ``fio``, installed with apt-get when missing), and the
two are printed side by side.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from smartio.bench.pingpong import stats
from smartio.drivers.nvme import Controller, Namespace, QueuePair
from smartio.errors import SmartIOError
from smartio.lending import DeviceTree

BLOCK = 4096


def run_ours(host: str, device: str, cluster: str | None, seconds: float = 2.0,
             qd: int = 32) -> dict[str, Any]:
    rng = random.Random(7)
    with DeviceTree(host, cluster, "nvme-bench") as tree:
        ctrl = Controller(tree.open(device), io_queues=2)
        try:
            ns = Namespace(ctrl, 1)
            per = BLOCK // ns.lba_size
            nblocks = ns.blocks // per
            with QueuePair(ctrl, 64) as qp:
                buf = ctrl.device.dma_alloc(BLOCK * qd)
                # QD1: latency of each read.
                lat: list[int] = []
                clock = time.perf_counter_ns
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    lba = rng.randrange(nblocks) * per
                    t0 = clock()
                    qp.wait(ns.submit_read(qp, buf, lba, per))
                    lat.append(clock() - t0)
                qd1 = stats(lat[len(lat) // 20:])
                # QD32: keep qd reads in flight.
                slot_of: dict[int, int] = {}
                for s in range(qd):
                    cid = ns.submit_read(qp, buf, rng.randrange(nblocks) * per, per, s * BLOCK)
                    slot_of[cid] = s
                done = 0
                start = time.perf_counter()
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    batch = qp.take_completions()
                    # Take every finished slot first: a CID is reused as soon as it is free.
                    slots = []
                    for c in batch:
                        if not c.ok:
                            raise SmartIOError(f"read failed: {c}")
                        slots.append(slot_of.pop(c.cid))
                    done += len(slots)
                    for s in slots:
                        ncid = ns.submit_read(qp, buf, rng.randrange(nblocks) * per, per,
                                              s * BLOCK)
                        slot_of[ncid] = s
                elapsed = time.perf_counter() - start
                while qp.outstanding:
                    qp.poll()
                qp.take_completions()
                buf.free()
            return {"qd1": qd1, "qd32_iops": done / elapsed, "namespace_bytes": ns.size}
        finally:
            ctrl.close(shutdown=False)


def ensure_packages(*names: str) -> None:
    """Install Debian packages that are missing (the peer benchmark needs nbdkit and fio)."""
    missing = [n for n in names if shutil.which(n) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SmartIOError(f"{', '.join(missing)} missing; install them with apt-get "
                           f"(need root): apt-get install {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env)


def run_nbdkit(size: int, seconds: float = 2.0) -> dict[str, Any]:
    """fio's nbd engine against nbdkit's memory plugin over a UNIX socket."""
    ensure_packages("nbdkit", "fio")
    with tempfile.TemporaryDirectory() as d:
        sock = Path(d) / "nbd.sock"
        srv = subprocess.Popen(["nbdkit", "--foreground", "--unix", str(sock), "--exit-with-parent",
                                "memory", f"size={size}"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 10
            while not sock.exists():
                if time.monotonic() > deadline or srv.poll() is not None:
                    raise SmartIOError("nbdkit did not start: "
                                       + (srv.stderr.read().decode() if srv.stderr else ""))
                time.sleep(0.05)
            out: dict[str, Any] = {}
            for qd in (1, 32):
                res = subprocess.run(
                    ["fio", "--name=peer", "--ioengine=nbd", f"--uri=nbd+unix:///?socket={sock}",
                     "--rw=randread", f"--bs={BLOCK}", f"--iodepth={qd}", "--time_based",
                     f"--runtime={seconds}", "--ramp_time=0.5", "--norandommap",
                     "--output-format=json", "--percentile_list=50:99"],
                    capture_output=True, text=True, check=True)
                # fio's nbd engine prints a line of its own before the JSON document.
                job = json.loads(res.stdout[res.stdout.index("{"):])["jobs"][0]["read"]
                pct = job["clat_ns"]["percentile"]
                out[f"qd{qd}"] = {"iops": job["iops"], "median_us": pct["50.000000"] / 1000,
                                  "p99_us": pct["99.000000"] / 1000}
            return out
        finally:
            srv.terminate()
            srv.wait(5)


__all__ = ["ensure_packages", "run_nbdkit", "run_ours"]
