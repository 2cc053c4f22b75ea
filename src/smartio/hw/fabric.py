"""The fabric of one cluster: topology, enumerated address maps, tables, memory, links.

A :class:`Fabric` is what every process of a cluster opens to reach the emulated silicon.
``Fabric.create`` makes the cluster's shared-memory objects (host RAM, device BARs, the
table object) after removing a crashed run's leftovers; ``Fabric.attach`` opens them from
another process; ``destroy`` removes them all. Tables are shared, so an NTB LUT entry
programmed in one process is seen by translations in every other process.
"""

from __future__ import annotations

import contextlib
import logging
import time
from types import TracebackType

from smartio.errors import Busy, NotFound
from smartio.hw.enumeration import MSI_SIZE, Function, HostMap, enumerate_all
from smartio.hw.ids import BDF, Requester
from smartio.hw.iommu import Iommu
from smartio.hw.memory import (
    MemoryObject,
    check_cluster_name,
    cleanup_cluster,
    list_cluster_objects,
    object_path,
)
from smartio.hw.multicast import MulticastTable
from smartio.hw.ntb import NtbAdapter
from smartio.hw.pci.config import CONFIG_SIZE, ConfigSpace
from smartio.hw.pci.layout import function_layout
from smartio.hw.route import NtFabric, Route, link_pairs, tree_route, with_links
from smartio.hw.state import FabricState
from smartio.hw.topology.schema import TopologySpec
from smartio.hw.translate import TranslationPort

log = logging.getLogger(__name__)

#: Requester-ID LUT entries the NTB driver reserves per CPU (paper §8.6).
CPU_RID_ENTRIES = 2


class Fabric:
    """Open handle on a cluster's emulated hardware."""

    def __init__(self, topo: TopologySpec, cluster: str, *, create: bool) -> None:
        self.topo = topo
        self.cluster = check_cluster_name(cluster)
        self.maps: dict[str, HostMap] = enumerate_all(topo)
        self.nt = NtFabric(topo)
        self._objs: dict[str, MemoryObject] = {}
        self._closed = False
        self._link_by_pair = link_pairs(topo)
        if create:
            self._create_objects()
        self.state = FabricState(cluster, topo, create=create)
        ids = [a.id for a in topo.adapters]
        self.adapters: dict[str, NtbAdapter] = {}
        for a in topo.adapters:
            fn = self.maps[a.host].functions[a.id]
            links = [i for i, lk in enumerate(topo.links) if a.id in (lk.a.element, lk.b.element)]
            self.adapters[a.id] = NtbAdapter(self.state, a, self.state.adapters[a.id],
                                             fn.bar(2).base, ids, links)
        self.iommus = {h.name: Iommu(self.state, self.state.iommus[h.name]) for h in topo.hosts}
        self.multicast = MulticastTable(self.state, ids)
        self._ports: dict[Requester, TranslationPort] = {}
        self._configs: dict[str, ConfigSpace] = {}
        self._route_cache: dict[tuple[tuple[str, ...], tuple[str, ...], bool], Route] = {}

    # -- life cycle ------------------------------------------------------------------------

    @classmethod
    def create(cls, topo: TopologySpec, cluster: str = "default") -> Fabric:
        """Create a cluster's memory objects, removing a crashed run's leftovers first."""
        check_cluster_name(cluster)
        if object_path(cluster, "fabric").exists():
            live: list[int] = []
            # Unreadable or mismatched tables are leftovers too; only a live mapper is Busy
            # (raised outside the suppress, which would otherwise swallow it).
            with contextlib.suppress(Exception):
                old = FabricState(cluster, topo, create=False)
                try:
                    live = old.mappers_behind(1 << 62)
                finally:
                    old.close()
            if live:
                raise Busy(f"cluster {cluster!r} is in use by processes {live}; stop it "
                           "first or pick another cluster name")
            removed = cleanup_cluster(cluster)
            log.warning("fabric_cleanup: removed %d leftover objects of cluster %r",
                        len(removed), cluster)
        return cls(topo, cluster, create=True)

    @classmethod
    def attach(cls, topo: TopologySpec, cluster: str = "default") -> Fabric:
        """Open an existing cluster's objects from another process."""
        if not object_path(cluster, "fabric").exists():
            raise NotFound(f"cluster {cluster!r} has no fabric on this machine; create it "
                           "first (smartio cluster up, or Fabric.create)")
        return cls(topo, cluster, create=False)

    def _create_objects(self) -> None:
        for h in self.topo.hosts:
            self._objs[f"{h.name}:ram"] = MemoryObject(self.cluster, f"{h.name}.ram", h.ram,
                                                       create=True)
            self._objs[f"{h.name}:msi"] = MemoryObject(self.cluster, f"{h.name}.msi",
                                                       MSI_SIZE, create=True)
            self._objs[f"{h.name}:msi"].interrupt = True
        for hmap in self.maps.values():
            for fn in hmap.functions.values():
                cfg = MemoryObject(self.cluster, f"{fn.host}.{fn.name}.config", CONFIG_SIZE,
                                   create=True)
                self._objs[f"{fn.name}:config"] = cfg
                cfg.view[:CONFIG_SIZE] = function_layout(self.topo, fn)[0]
                for b in fn.bars:
                    if fn.kind == "ntb" and b.index == 2:
                        continue  # the NTB window has no memory of its own
                    key = f"{fn.name}:bar{b.index}"
                    self._objs[key] = MemoryObject(self.cluster, f"{fn.host}.{fn.name}.bar"
                                                   f"{b.index}", b.size, create=True)

    def close(self) -> None:
        """Close this process's handles (the cluster's objects stay)."""
        if self._closed:
            return
        self._closed = True
        from smartio.hw.mapping import mappers_for

        mgr = mappers_for(self, create=False)
        if mgr is not None:
            mgr.close()
        self._ports.clear()
        for cs in self._configs.values():
            cs.view.release()
        self._configs.clear()
        for obj in self._objs.values():
            obj.close()
        self._objs.clear()
        self.state.close()

    def destroy(self) -> None:
        """Close and remove every memory object of the cluster."""
        self.close()
        cleanup_cluster(self.cluster)

    def __enter__(self) -> Fabric:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def objects(self) -> list[str]:
        return [p.name for p in list_cluster_objects(self.cluster)]

    # -- memory ----------------------------------------------------------------------------

    def ram(self, host: str) -> MemoryObject:
        key = f"{host}:ram"
        obj = self._objs.get(key)
        if obj is None:
            obj = MemoryObject(self.cluster, f"{host}.ram", self.topo.host(host).ram,
                               create=False)
            self._objs[key] = obj
        return obj

    def msi(self, host: str) -> MemoryObject:
        """The message window of a host's interrupt controller (MSI/MSI-X targets)."""
        key = f"{host}:msi"
        obj = self._objs.get(key)
        if obj is None:
            obj = MemoryObject(self.cluster, f"{host}.msi", MSI_SIZE, create=False)
            obj.interrupt = True
            self._objs[key] = obj
        return obj

    def config(self, function: str) -> ConfigSpace:
        """The configuration space of a function (shared; writes apply the hardware masks)."""
        cs = self._configs.get(function)
        if cs is None:
            fn = self._function(function)
            key = f"{function}:config"
            obj = self._objs.get(key)
            if obj is None:
                obj = MemoryObject(self.cluster, f"{fn.host}.{function}.config", CONFIG_SIZE,
                                   create=False)
                self._objs[key] = obj
            _, masks, _ = function_layout(self.topo, fn)
            cs = ConfigSpace(obj.view, masks)
            self._configs[function] = cs
        return cs

    def _function(self, name: str) -> Function:
        for hmap in self.maps.values():
            fn = hmap.functions.get(name)
            if fn is not None:
                return fn
        raise NotFound(f"no function {name!r} in topology {self.topo.name!r}")

    def bar(self, function: str, index: int) -> MemoryObject:
        key = f"{function}:bar{index}"
        obj = self._objs.get(key)
        if obj is None:
            for hmap in self.maps.values():
                fn = hmap.functions.get(function)
                if fn is not None:
                    obj = MemoryObject(self.cluster, f"{fn.host}.{function}.bar{index}",
                                       fn.bar(index).size, create=False)
                    break
            else:
                raise NotFound(f"no function {function!r} in topology {self.topo.name!r}")
            self._objs[key] = obj
        return obj

    # -- routing and translation ----------------------------------------------------------

    def host_route(self, src: tuple[str, ...], dst: tuple[str, ...], via_root: bool) -> Route:
        key = (src, dst, via_root)
        r = self._route_cache.get(key)
        if r is None:
            r = with_links(tree_route(src, dst, via_root), self._link_by_pair)
            self._route_cache[key] = r
        return r

    def links_up(self, links: tuple[int, ...]) -> bool:
        q, base = self.state.q, self.state.links
        return all(q[base + i] for i in links)

    def port(self, requester: Requester) -> TranslationPort:
        """The cached translation port of a requester (one per requester per process)."""
        p = self._ports.get(requester)
        if p is None:
            if requester.host not in self.maps:
                raise NotFound(f"no host {requester.host!r} in topology {self.topo.name!r}")
            p = TranslationPort(self, requester)
            self._ports[requester] = p
        return p

    def cpu(self, host: str, socket: int = 0) -> TranslationPort:
        return self.port(Requester.cpu_of(host, socket))

    def function(self, name: str) -> Requester:
        """The requester of a function by name (an endpoint or ``host:adapter``)."""
        for hmap in self.maps.values():
            fn = hmap.functions.get(name)
            if fn is not None:
                return Requester(fn.host, fn.bdf)
        raise NotFound(f"no function {name!r} in topology {self.topo.name!r}")

    def reserve_cpu_requesters(self, adapter: str) -> None:
        """Reserve the requester-ID entries of every CPU of the adapter's host (two per CPU,
        §8.6), as the NTB driver does when it loads."""
        ntb = self.adapters[adapter]
        sockets = self.topo.host(ntb.host).cpus
        for s in range(sockets):
            ntb.rid_add(BDF(0, 0, s).rid)
            ntb.rid_add(BDF(0, 0, s + 4).rid)  # the second entry: the CPU's alias tag

    # -- links -----------------------------------------------------------------------------

    def link_index(self, name: str) -> list[int]:
        """Links named by ``HOST:ADAPTER`` (all its cables), a port ``X/N``, or ``A<->B``."""
        out = []
        for i, lk in enumerate(self.topo.links):
            if name in (lk.name, str(lk.a), str(lk.b), lk.a.element, lk.b.element):
                out.append(i)
        if not out:
            raise NotFound(f"no link matches {name!r}; links: "
                           + ", ".join(lk.name for lk in self.topo.links))
        return out

    def link_is_up(self, index: int) -> bool:
        return bool(self.state.q[self.state.links + index])

    def link_down_count(self, index: int) -> int:
        """How many times link ``index`` has gone down since the cluster was created."""
        return self.state.q[self.state.link_downs + index]

    def link_set(self, name: str, up: bool, *, timeout: float = 5.0) -> list[int]:
        """Bring links up or down; waits until every process's CPU mappings follow.

        Returns the pids that did not follow within ``timeout`` (normally empty).
        """
        with self.state.locked():
            for i in self.link_index(name):
                q = self.state.q
                if q[self.state.links + i] and not up:
                    q[self.state.link_downs + i] += 1
                q[self.state.links + i] = int(up)
            gen = self.state.bump()
        log.info("link_%s: %s (generation %d)", "up" if up else "down", name, gen)
        deadline = time.monotonic() + timeout
        while True:
            behind = self.state.mappers_behind(gen)
            if not behind or time.monotonic() > deadline:
                if behind:
                    log.warning("err_link_sync: processes %s did not follow generation %d",
                                behind, gen)
                return behind
            time.sleep(0.0005)


__all__ = ["CPU_RID_ENTRIES", "Fabric"]
