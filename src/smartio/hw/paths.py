"""Paths between hosts and functions, for ``smartio topology path`` and placement decisions.

A path between two hosts leaves through one of the source host's NTB adapters, crosses the
cluster-switch fabric and enters through one of the destination's adapters; among all
adapter pairs the one with the fewest hops wins (shortest path, paper §4.4). Between
functions the path starts at the function, turns at the lowest common switch when both are
in one host, and otherwise goes through the adapters like host paths do.
"""

from __future__ import annotations

from dataclasses import dataclass

from smartio.errors import NotFound
from smartio.hw.enumeration import HostMap
from smartio.hw.models import ADAPTERS, SWITCHES
from smartio.hw.route import NtFabric, Route, link_pairs, tree_route, with_links
from smartio.hw.topology.schema import TopologySpec


@dataclass(frozen=True)
class Hop:
    """One element on a path, with the chip that forwards the transaction."""

    name: str
    kind: str  # root | ntb | switch | endpoint
    chip: str


class PathFinder:
    """Shortest paths over an enumerated topology."""

    def __init__(self, topo: TopologySpec, maps: dict[str, HostMap],
                 nt: NtFabric | None = None) -> None:
        self.topo = topo
        self.maps = maps
        self.nt = nt or NtFabric(topo)
        self._pairs = link_pairs(topo)
        self._kinds: dict[str, Hop] = {}
        for h in topo.hosts:
            self._kinds[h.name] = Hop(h.name, "root", "root complex")
            for a in h.adapters:
                self._kinds[a.id] = Hop(a.id, "ntb", f"{ADAPTERS[a.model].chip} ({a.model})")
        for s in topo.switches:
            chip = SWITCHES[s.model].chip
            label = chip if chip == s.model else f"{chip} ({s.model})"
            self._kinds[s.name] = Hop(s.name, "switch", label)
        for e in topo.endpoints:
            self._kinds[e.name] = Hop(e.name, "endpoint", f"{e.model} device")

    def _locate(self, name: str) -> tuple[str, tuple[str, ...]]:
        """(host, chain to root) of a host, adapter or endpoint name."""
        if name in self.maps:
            return name, (name,)
        for hmap in self.maps.values():
            fn = hmap.functions.get(name)
            if fn is not None:
                return fn.host, fn.chain
        names = sorted(n for n, hop in self._kinds.items() if hop.kind != "switch")
        raise NotFound(f"no host or function named {name!r}; known: {', '.join(names[:20])}"
                       + (" ..." if len(names) > 20 else ""))

    def path(self, a: str, b: str, via_root: bool = False) -> Route:
        """The shortest route from ``a`` to ``b`` (hosts, adapters or endpoints)."""
        ha, ca = self._locate(a)
        hb, cb = self._locate(b)
        if ha == hb:
            return with_links(tree_route(ca, cb, via_root), self._pairs)
        best: Route | None = None
        for ea in self.topo.host(ha).adapters:
            for eb in self.topo.host(hb).adapters:
                nt = self.nt.route(ea.id, eb.id)
                if nt is None:
                    continue
                fa = self.maps[ha].functions[ea.id].chain
                fb = self.maps[hb].functions[eb.id].chain
                r = (with_links(tree_route(ca, fa, via_root), self._pairs) + nt
                     + with_links(tree_route(fb, cb, via_root), self._pairs))
                if best is None or len(r.hops) < len(best.hops):
                    best = r
        if best is None:
            raise NotFound(f"no path between {a!r} and {b!r}: their hosts share no NTB fabric")
        return best

    def hops(self, route: Route) -> list[Hop]:
        return [self._kinds[n] for n in route.hops]


__all__ = ["Hop", "PathFinder"]
