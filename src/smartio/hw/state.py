"""The fabric's hardware tables, resident in one shared-memory object per cluster.

DESIGN §2: "hardware tables live in the hardware objects (in shared memory, so that device
engines in other processes see them)". The layout is computed from the topology alone, so
every process that loads the same topology finds every table at the same offset. All
fields are little-endian u64 words, read and written through one ``memoryview.cast('Q')``.

Layout (in u64 words):

* header: magic, layout size, **generation** (bumped by every table change, so caches —
  the translation IOTLBs and CPU-mapping watchers — know when to revalidate), counters;
* mapper slots: (pid, acked generation) of each process holding CPU mappings, so that a
  link change can wait until every mapping in every process has followed it;
* link states: one word per topology link (1 = up);
* per NTB adapter: the address LUT (valid, peer adapter, target address) and the
  requester-ID LUT (valid | rid);
* per host IOMMU: enable word, device table (valid | domain | rid), domain roots, a
  page-table pool (4 KiB table pages, bump allocated with a free list) and a fault ring.

Writers take an ``fcntl`` lock on the object; readers never lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass

from smartio.hw.memory import MemoryObject
from smartio.hw.topology.schema import TopologySpec
from smartio.hw.units import align_up

MAGIC = 0x31424146_4F494D53  # "SMIOFAB1"
VALID = 1 << 63

# Header word indices.
H_MAGIC, H_SIZE, H_GEN, H_NLINKS, H_NADAPTERS, H_NHOSTS = range(6)
MAPPER_SLOTS = 64
MAPPER_BASE = 64  # words; two per slot: pid, acked generation

IOMMU_DEVICES = 256
IOMMU_DOMAINS = 64
IOMMU_POOL_PAGES = 4096  # 16 MiB of 4 KiB table pages per host (sparse)
IOMMU_FAULTS = 64  # fault ring entries, 4 words each: rid | write<<16, addr, kind, seq
PT_WORDS = 512
MC_GROUPS = 16  # multicast groups in the cluster fabric (PCIe multicast, paper §6.5)
MC_MEMBERS = 32
MC_FLAG = 1 << 62  # an address-LUT entry that targets a multicast group
MC_GROUP_WORDS = 1 + 2 * MC_MEMBERS


@dataclass(frozen=True)
class AdapterLayout:
    index: int
    id: str
    lut: int  # word offset of the address LUT (3 words per entry)
    lut_entries: int
    rid: int  # word offset of the requester-ID LUT (1 word per entry)
    rid_entries: int


@dataclass(frozen=True)
class IommuLayout:
    host: str
    ctrl: int  # words: enabled, pool_next, pool_free_head, fault_count
    devices: int  # IOMMU_DEVICES words: VALID | domain << 16 | rid
    domains: int  # IOMMU_DOMAINS words: root table page index (0 = unused)
    faults: int  # IOMMU_FAULTS * 4 words
    pool: int  # word offset of page 0 of the pool (page-aligned)


class FabricState:
    """The mapped table object of one cluster; the single source of truth for the tables."""

    def __init__(self, cluster: str, topo: TopologySpec, *, create: bool) -> None:
        words = MAPPER_BASE + 2 * MAPPER_SLOTS
        self.links = words
        words += len(topo.links)
        self.link_downs = words  # times each link went down (for SISCI sequence checks)
        words += len(topo.links)
        # Multicast groups: per group a header word (VALID when allocated), then
        # MC_MEMBERS x (VALID | adapter index, address in that adapter's host).
        self.multicast = words
        words += MC_GROUPS * MC_GROUP_WORDS
        self.adapters: dict[str, AdapterLayout] = {}
        for i, a in enumerate(topo.adapters):
            lut = words
            words += 3 * a.lut_entries
            rid = words
            words += a.rid_entries
            self.adapters[a.id] = AdapterLayout(i, a.id, lut, a.lut_entries, rid, a.rid_entries)
        self.iommus: dict[str, IommuLayout] = {}
        for h in topo.hosts:
            ctrl = words
            devices = ctrl + 8
            domains = devices + IOMMU_DEVICES
            faults = domains + IOMMU_DOMAINS
            pool = align_up(faults + 4 * IOMMU_FAULTS, PT_WORDS)
            words = pool + PT_WORDS * IOMMU_POOL_PAGES
            self.iommus[h.name] = IommuLayout(h.name, ctrl, devices, domains, faults, pool)
        self.size = words * 8
        self.obj = MemoryObject(cluster, "fabric", self.size, create=create)
        self.q = self.obj.view.cast("Q")
        if create:
            self.q[H_MAGIC] = MAGIC
            self.q[H_SIZE] = self.size
            self.q[H_NLINKS] = len(topo.links)
            self.q[H_NADAPTERS] = len(self.adapters)
            self.q[H_NHOSTS] = len(self.iommus)
            for i in range(len(topo.links)):
                self.q[self.links + i] = 1
            for h in topo.hosts:
                lay = self.iommus[h.name]
                self.q[lay.ctrl] = 1 if h.iommu else 0
                self.q[lay.ctrl + 1] = 1  # pool page 0 is never handed out (0 = none)
        elif self.q[H_MAGIC] != MAGIC or self.q[H_SIZE] != self.size:
            self.close()
            from smartio.errors import IllegalParameter

            raise IllegalParameter(f"fabric tables of cluster {cluster!r} do not match this "
                                   "topology; was the cluster started with another one?")

    @property
    def generation(self) -> int:
        return self.q[H_GEN]

    def bump(self) -> int:
        """Advance the generation after a table change (caller holds the lock)."""
        self.q[H_GEN] += 1
        return self.q[H_GEN]

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Serialize table writers across processes."""
        fcntl.flock(self.obj.fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self.obj.fd, fcntl.LOCK_UN)

    # -- mapper slots: processes holding CPU mappings -----------------------------------

    def mapper_register(self) -> int:
        pid = os.getpid()
        with self.locked():
            for s in range(MAPPER_SLOTS):
                w = MAPPER_BASE + 2 * s
                # Never share a slot with another mapper of this same process (a second
                # Fabric handle): its release would stop link_set waiting for ours.
                if self.q[w] == 0 or not pid_alive(self.q[w]):
                    self.q[w] = pid
                    self.q[w + 1] = self.q[H_GEN]
                    return s
        from smartio.errors import MaxEntries

        raise MaxEntries(f"more than {MAPPER_SLOTS} processes hold mappings of this cluster")

    def mapper_ack(self, slot: int, gen: int) -> None:
        self.q[MAPPER_BASE + 2 * slot + 1] = gen

    def mapper_release(self, slot: int) -> None:
        self.q[MAPPER_BASE + 2 * slot] = 0

    def mappers_behind(self, gen: int) -> list[int]:
        """Pids of live mapper processes that have not yet followed generation ``gen``."""
        out = []
        for s in range(MAPPER_SLOTS):
            w = MAPPER_BASE + 2 * s
            pid = self.q[w]
            if pid and self.q[w + 1] < gen:
                if pid_alive(pid):
                    out.append(pid)
                else:
                    self.q[w] = 0
        return out

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.q.release()
        self.obj.close()


def pid_alive(pid: int) -> bool:
    """True when ``pid`` runs (a zombie that exited but was not reaped counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


__all__ = [
    "MC_FLAG",
    "MC_GROUPS",
    "MC_GROUP_WORDS",
    "MC_MEMBERS",
    "VALID",
    "AdapterLayout",
    "FabricState",
    "IommuLayout",
    "pid_alive",
]
