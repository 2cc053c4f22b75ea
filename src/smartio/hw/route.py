"""Paths through the fabric: hops inside one host's tree and across cluster switches.

Inside a host, address-based routing turns at the lowest common switch of requester and
completer (paper §3.2) unless the IOMMU forces the transaction up to the root complex
(§5.3). Between hosts, traffic leaves through an NTB adapter and crosses the
cluster-switch fabric, which is a tree, so the path between two adapters is unique.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import networkx as nx

from smartio.hw.topology.schema import TopologySpec


@dataclass(frozen=True, slots=True)
class Route:
    """The elements a transaction passes, requester first, completer last."""

    hops: tuple[str, ...]
    links: tuple[int, ...] = ()  # topology link indices crossed (cables)

    def __add__(self, other: Route) -> Route:
        hops = self.hops
        if hops and other.hops and hops[-1] == other.hops[0]:
            hops = hops[:-1]
        return Route(hops + other.hops, self.links + other.links)

    def __str__(self) -> str:
        return " -> ".join(self.hops)


def tree_route(src_chain: tuple[str, ...], dst_chain: tuple[str, ...],
               via_root: bool = False) -> Route:
    """Route from one element to another in the same host tree.

    Chains list an element and its ancestors up to the root complex. Without ``via_root``
    the route turns at the lowest common ancestor (peer-to-peer); with it, at the root.
    """
    if via_root:
        return Route(src_chain + tuple(reversed(dst_chain[:-1])))
    ancestors = {n: i for i, n in enumerate(dst_chain)}
    for i, n in enumerate(src_chain):
        if n in ancestors:
            return Route(src_chain[: i + 1] + tuple(reversed(dst_chain[: ancestors[n]])))
    return Route(src_chain + tuple(reversed(dst_chain[:-1])))


def link_pairs(topo: TopologySpec) -> dict[frozenset[str], int]:
    """Map each pair of elements joined by a cable to the cable's link index."""
    return {frozenset((lk.a.element, lk.b.element)): i for i, lk in enumerate(topo.links)}


def with_links(route: Route, pairs: dict[frozenset[str], int]) -> Route:
    """The route with the cables between consecutive hops filled in."""
    links = tuple(pairs[frozenset(p)] for p in itertools.pairwise(route.hops)
                  if frozenset(p) in pairs)
    return Route(route.hops, links)


class NtFabric:
    """The non-transparent part of the fabric: NTB adapter ports, cluster switches, cables."""

    def __init__(self, topo: TopologySpec) -> None:
        self.graph: nx.MultiGraph = nx.MultiGraph()
        cluster = {s.name for s in topo.switches if s.mode == "cluster"}
        adapters = {a.id for a in topo.adapters}
        for n in adapters | cluster:
            self.graph.add_node(n)
        for i, lk in enumerate(topo.links):
            if lk.a.element in adapters | cluster:
                self.graph.add_edge(lk.a.element, lk.b.element, key=i)
        self._cache: dict[tuple[str, str], Route | None] = {}

    def route(self, src: str, dst: str) -> Route | None:
        """The route between two adapters, or None if they are not connected at all."""
        key = (src, dst)
        if key not in self._cache:
            try:
                nodes = nx.shortest_path(self.graph, src, dst)
            except (nx.NetworkXNoPath, nx.NodeNotFound):
                self._cache[key] = None
            else:
                links = tuple(min(self.graph[u][v]) for u, v in itertools.pairwise(nodes))
                self._cache[key] = Route(tuple(nodes), links)
        return self._cache[key]


__all__ = ["NtFabric", "Route", "link_pairs", "tree_route", "with_links"]
