"""The analytic timing model of a transfer over a route (formulas 4-9 of docs/timing.md).

A **read** is non-posted. The requester splits it into requests of at most its MRRS, holds
at most its tag count of them outstanding, and each takes the round trip of the path::

    RTT(s) = ser(MRd) + Σ hop + completer + Σ hop + ser(s + completions) + 2 Σ cable

so the read rate is the smallest of what each link carries (completion overheads at MPS)
and Little's law, ``tags x request / RTT``. A root complex in the middle of the path with
its IOMMU on (peer-to-peer forced through the root, §7.3.1) translates each request and
re-issues it as 64 B requests from its own, limited, pool: a second segment with its own
Little's-law limit, ``tags_rc x 64 / (RTT_rc + t_xlate)`` (formula 6).

A **write** is posted: it costs the one-way latency of the path plus the payload at the
rate of the slowest link (write TLP overheads at MPS), bounded by posted-data credits per
link (formula 8). Path length only delays writes; it throttles reads.

A transfer of S bytes takes ``first + stream x (S - first) / S``, where ``first`` is the
latency of the first request (a read's round trip or a write's one-way time) and
``stream`` the time the limiting resource needs for all S bytes (formula 9).

Cut-through switches pay serialization once, at the slowest link. Times are ns; rates are
GB/s (10**9 B/s), numerically bytes per ns.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from smartio.errors import IllegalParameter
from smartio.hw.route import Route
from smartio.hw.timing.command import CommandTiming, command_latency
from smartio.hw.timing.constants import REQUESTERS, Params
from smartio.hw.timing.contention import LinkDir, max_min_share
from smartio.hw.timing.link import (
    LinkRates,
    cpld_overhead_b,
    link_rates,
    mrd_b,
    mwr_overhead_b,
    tlp_count,
)
from smartio.hw.timing.path import ENDPOINT, NTB, ROOT, Element, FabricView, ResolvedPath
from smartio.hw.topology.schema import TopologySpec


@dataclass(frozen=True, slots=True)
class Transfer:
    """The modeled timing of one transfer of ``nbytes`` over a route."""

    op: str  # read | write | load | store | msi
    nbytes: int
    latency_ns: float  # issue of the first request until the last byte is in place
    throughput_gb_s: float  # nbytes / latency_ns, GB/s
    rate_gb_s: float  # steady-state rate once requests are pipelined, GB/s
    first_ns: float  # the first request alone: a read's round trip, a write's one-way time
    first_bytes: int  # bytes the first request carries
    limit: str  # what sets rate_gb_s
    requests: int  # TLPs the requester issues
    #: wire bytes the transfer puts on each link direction (for :meth:`concurrent`)
    usage: Mapping[LinkDir, float] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Flow:
    """One of several transfers running at once (for :meth:`TimingModel.concurrent`)."""

    route: Route
    nbytes: int
    read: bool
    requester: str | None = None


class TimingModel:
    """Modeled latency and throughput of fabric operations on one topology.

    Args:
        topo: the topology (link generations and widths, cable lengths, chips, IOMMUs).
        params: a :class:`Params` or a mapping of constant overrides.
        mps: Maximum Payload Size, bytes (default ``pcie.mps`` of the table).
    """

    def __init__(self, topo: TopologySpec, params: Params | Mapping[str, float] | None = None,
                 *, mps: int | None = None) -> None:
        self.params = params if isinstance(params, Params) else Params(params)
        self.mps = int(mps if mps is not None else self.params["pcie.mps"])
        self.view = FabricView(topo, self.params, self.mps)

    # -- public operations --------------------------------------------------------------

    def link(self, gen: int, width: int, mps: int | None = None) -> LinkRates:
        """Raw, usable, write and read rates of a link."""
        return link_rates(gen, width, mps or self.mps, self.params)

    def resolve(self, route: Route) -> ResolvedPath:
        """The route's elements and links."""
        return self.view.resolve(route)

    def dma(self, route: Route, nbytes: int, read: bool, *, addr: int = 0,
            requester: str | None = None, numa_remote: bool = False) -> Transfer:
        """A device DMA read (completer -> requester) or write of ``nbytes``.

        Args:
            route: requester (the device) first, completer (memory or a BAR) last.
            addr: start address, for MPS/MRRS alignment and 4 KiB boundary splits.
            requester: requester profile (``gpu``, ``nvme``, ...); by default the
                device model's.
            numa_remote: the buffer is on the root complex's other socket.
        """
        path = self.resolve(route)
        if path.requester.kind == ROOT:
            raise IllegalParameter(f"route {route} starts at a root complex; use cpu_load or "
                                   "cpu_store for CPU accesses")
        _check_size(nbytes)
        if read:
            tags, mrrs = self.params.requester(requester or self._profile(path.requester))
            return self._read(path, nbytes, addr, tags, mrrs, numa_remote)
        return self._write(path, nbytes, addr, self.mps, "write")

    def cpu_load(self, route: Route, nbytes: int, *, addr: int = 0) -> Transfer:
        """CPU loads from a mapping (uncached: one load of ``cpu.load_b`` at a time)."""
        path = self._cpu_path(route)
        _check_size(nbytes)
        return self._read(path, nbytes, addr, 1, int(self.params["cpu.load_b"]), False)

    def cpu_store(self, route: Route, nbytes: int, *, addr: int = 0) -> Transfer:
        """CPU stores to a mapping (posted, write-combined into ``cpu.store_b`` TLPs)."""
        path = self._cpu_path(route)
        _check_size(nbytes)
        return self._write(path, nbytes, addr, int(self.params["cpu.store_b"]), "store")

    def msi(self, route: Route) -> Transfer:
        """An MSI/MSI-X: a 4 B posted write from the device to its host's root complex."""
        path = self.resolve(route)
        if path.completer.kind != ROOT:
            raise IllegalParameter(f"an MSI ends at a root complex, not {path.completer.name}")
        return self._write(path, 4, 0, self.mps, "msi")

    def command_latency(self, *, data: Route, cq: Route, nbytes: int, read: bool = True,
                        media: str = "optane", sq: Route | None = None,
                        doorbell: Route | None = None, sqe_store: Route | None = None,
                        msi: Route | None = None,
                        requester: str | None = None) -> CommandTiming:
        """Latency of one NVMe command at queue depth one, piece by piece.

        See :func:`smartio.hw.timing.command.command_latency` for the arguments.
        """
        return command_latency(self, data=data, cq=cq, nbytes=nbytes, read=read, media=media,
                               sq=sq, doorbell=doorbell, sqe_store=sqe_store, msi=msi,
                               requester=requester)

    def hop_ns(self, el: Element) -> float:
        """Latency of crossing ``el`` in the middle of a path, one direction, untranslated."""
        return self._hop_ns(el, request=False)

    def read_rtt(self, route: Route, size: int = 64) -> float:
        """Round trip of one read request of ``size`` bytes (formula 7)."""
        return sum(self.read_phases(route, size))

    def read_phases(self, route: Route, size: int = 64) -> tuple[float, float, float]:
        """A read request's round trip in three parts, ns.

        Returns:
            (issue until the request reaches the completer, time inside the completer,
            completion's way back). The first part includes the CPU's issue cost for CPU
            loads; a caller can start the second part later when the data is not there
            yet (an SQE still on its way, :mod:`.command`).
        """
        path = self.resolve(route)
        out, inside, back = self._rtt_parts(path, 0, size, False, False)
        return out + self._issue(path, read=True), inside, back

    def concurrent(self, flows: Sequence[Flow]) -> list[Transfer]:
        """Transfers running at once, sharing link directions max-min fairly.

        Each flow runs at most at its own (uncontended) rate; a link direction's usable
        rate is shared so that no flow could get more without taking from a slower one.
        """
        solo = [self.dma(f.route, f.nbytes, f.read, requester=f.requester) for f in flows]
        shares = max_min_share(solo, self._capacities(flows))
        out = []
        for t, (r, why) in zip(solo, shares, strict=True):
            if r >= t.rate_gb_s * (1 - 1e-9):
                out.append(t)
                continue
            latency = t.first_ns + (t.nbytes - t.first_bytes) / r
            out.append(Transfer(t.op, t.nbytes, latency, t.nbytes / latency, r, t.first_ns,
                                t.first_bytes, why, t.requests, t.usage))
        return out

    # -- reads ------------------------------------------------------------------------

    def _read(self, path: ResolvedPath, nbytes: int, addr: int, tags: int, mrrs: int,
              numa: bool) -> Transfer:
        p = self.params
        cpu = path.requester.kind == ROOT
        issue = self._issue(path, read=True)
        segments = self._segments(path, mrrs, tags)
        first = min(nbytes, mrrs - addr % mrrs)
        first_ns = issue + self._rtt(path, 0, first, numa, False)
        limits: list[tuple[float, str]] = []
        usage: dict[LinkDir, float] = {}
        for k, (lo, size, n_tags, who) in enumerate(segments):
            hi = segments[k + 1][0] if k + 1 < len(segments) else len(path.links)
            n_req = tlp_count(addr, nbytes, size)
            n_cpl = tlp_count(addr, nbytes, min(self.mps, size))
            rtt = issue + self._rtt(path, lo, size, numa, k > 0)
            limits.append((n_req * rtt / n_tags,
                           f"{n_tags} outstanding {size} B reads of {who}, RTT {rtt:.0f} ns"))
            down = nbytes + n_cpl * cpld_overhead_b(p)
            up = n_req * mrd_b(p)
            for i in range(lo, hi):
                a, b, lk = path.elements[i].name, path.elements[i + 1].name, path.links[i]
                usage[(lk.name, b, a)] = usage.get((lk.name, b, a), 0.0) + down
                usage[(lk.name, a, b)] = usage.get((lk.name, a, b), 0.0) + up
                limits.append((max(down, up) / lk.rates.usable_gb_s, f"link {lk.name}"))
        stream, limit = max(limits, key=lambda x: x[0])  # first of ties: nearest
        latency = first_ns + stream * (nbytes - first) / nbytes
        return Transfer("load" if cpu else "read", nbytes, latency, nbytes / latency,
                        nbytes / stream, first_ns, first, limit, tlp_count(addr, nbytes, mrrs),
                        usage)

    def _segments(self, path: ResolvedPath, mrrs: int,
                  tags: int) -> list[tuple[int, int, int, str]]:
        """(first element, request size, tags, requester) of each tag domain of a read."""
        out = [(0, mrrs, tags, path.requester.name)]
        size = mrrs
        split = int(self.params["iommu.split_b"])
        for i, el in enumerate(path.elements[1:-1], 1):
            if el.kind == ROOT and el.iommu:
                size = min(size, split)
                out.append((i, size, int(self.params["rc.p2p_read_tags"]),
                            f"root complex {el.name} (IOMMU splits reads)"))
        return out

    def _rtt(self, path: ResolvedPath, lo: int, size: int, numa: bool,
             translate: bool) -> float:
        """Round trip of one ``size``-byte read request issued at element ``lo``."""
        return sum(self._rtt_parts(path, lo, size, numa, translate))

    def _rtt_parts(self, path: ResolvedPath, lo: int, size: int, numa: bool,
                   translate: bool) -> tuple[float, float, float]:
        """(request out, inside the completer, completion back) of one read request."""
        p = self.params
        els, links = path.elements, path.links[lo:]
        cable = sum(lk.length_m for lk in links) * p["cable.ns_per_m"]
        raw = min(lk.rates.raw_gb_s for lk in links)
        out = (sum(self._hop_ns(e, request=True) for e in els[lo + 1:-1]) + cable
               + mrd_b(p) / raw + (p["iommu.iotlb_miss_ns"] if translate else 0.0))
        back = (sum(self._hop_ns(e, request=False) for e in els[lo + 1:-1]) + cable
                + (size + math.ceil(size / self.mps) * cpld_overhead_b(p)) / raw)
        return out, self._completer_ns(path, size, True, numa), back

    # -- writes -----------------------------------------------------------------------

    def _write(self, path: ResolvedPath, nbytes: int, addr: int, tlp_max: int,
               op: str) -> Transfer:
        p = self.params
        first = min(nbytes, tlp_max - addr % tlp_max)
        first_ns = self._one_way(path, first)
        n_tlp = tlp_count(addr, nbytes, tlp_max)
        wire = nbytes + n_tlp * mwr_overhead_b(p)
        limits: list[tuple[float, str]] = []
        usage: dict[LinkDir, float] = {}
        credit_b = p["fc.posted_data_credits"] * 16
        for i, lk in enumerate(path.links):
            a, rx = path.elements[i], path.elements[i + 1]
            usage[(lk.name, a.name, rx.name)] = wire
            limits.append((wire / lk.rates.usable_gb_s, f"link {lk.name}"))
            rtt_fc = 2 * (self._hop_ns(rx, request=True) if rx is not path.completer
                          else self._completer_ns(path, tlp_max, False, False))
            limits.append((wire * rtt_fc / credit_b, f"posted credits into {rx.name}"))
        for el in path.elements[1:-1]:
            if el.kind == ROOT and el.iommu:
                pages = max(1.0, nbytes / p["iommu.page_b"])
                limits.append((pages * p["iommu.iotlb_miss_ns"], f"IOMMU of {el.name}"))
        stream, limit = max(limits, key=lambda x: x[0])  # first of ties: nearest
        latency = first_ns + stream * (nbytes - first) / nbytes
        return Transfer(op, nbytes, latency, nbytes / latency, nbytes / stream, first_ns, first,
                        limit, n_tlp, usage)

    def _one_way(self, path: ResolvedPath, size: int) -> float:
        """Issue of a posted write of ``size`` bytes until it takes effect at the completer."""
        p = self.params
        hops = sum(self._hop_ns(e, request=True, nbytes=size) for e in path.elements[1:-1])
        cable = sum(lk.length_m for lk in path.links) * p["cable.ns_per_m"]
        raw = min(lk.rates.raw_gb_s for lk in path.links)
        wire = size + mwr_overhead_b(p)
        return (self._issue(path, read=False) + hops + cable + wire / raw
                + self._completer_ns(path, size, False, False))

    # -- elements ---------------------------------------------------------------------

    def _hop_ns(self, el: Element, *, request: bool, nbytes: int | None = None) -> float:
        """Latency of crossing an element in the middle of a path, in one direction.

        A root complex in the middle forwards peer-to-peer; with its IOMMU on, a request
        is also translated: a full IOTLB miss per read request (formula 6), one miss per
        page for posted writes (``nbytes`` given).
        """
        p = self.params
        if el.kind == ROOT:
            t = p["rc.p2p_forward_ns"]
            if request and el.iommu:
                miss = p["iommu.iotlb_miss_ns"]
                t += miss if nbytes is None else miss * min(1.0, nbytes / p["iommu.page_b"])
            return t
        return p.chip_hop_ns(el.chip)

    def _completer_ns(self, path: ResolvedPath, size: int, read: bool, numa: bool) -> float:
        """Time inside the completer: memory behind a root complex, or a device."""
        p = self.params
        el = path.completer
        if el.kind == ROOT:
            t = p["rc.mem_read_ns"] if read else p["rc.mem_write_ns"]
            if numa:
                t += p["rc.numa_remote_ns"]
            if el.iommu:  # entered from a device or an NTB; one IOTLB miss per page
                t += p["iommu.iotlb_miss_ns"] * min(1.0, size / p["iommu.page_b"])
            return t
        if not read:
            return p["completer.write_ns"]
        if el.kind == ENDPOINT and el.model == "gpu":
            return p["completer.gpu_mem_ns"]
        if el.kind in (ENDPOINT, NTB):
            return p["completer.reg_ns"]
        raise IllegalParameter(f"{el.name} ({el.kind}) cannot complete a transaction")

    def _issue(self, path: ResolvedPath, read: bool) -> float:
        if path.requester.kind != ROOT:
            return 0.0
        return self.params["cpu.load_ns"] if read else self.params["cpu.store_ns"]

    def _profile(self, el: Element) -> str:
        if el.kind == NTB:
            return "ntb"
        return el.model if el.model in REQUESTERS else "generic"

    def _cpu_path(self, route: Route) -> ResolvedPath:
        path = self.resolve(route)
        if path.requester.kind != ROOT:
            raise IllegalParameter(f"a CPU access starts at a root complex, not "
                                   f"{path.requester.name}")
        return path

    def _capacities(self, flows: Sequence[Flow]) -> dict[str, float]:
        caps: dict[str, float] = {}
        for f in flows:
            for lk in self.resolve(f.route).links:
                caps[lk.name] = lk.rates.usable_gb_s
        return caps


def _check_size(nbytes: int) -> None:
    if nbytes <= 0:
        raise IllegalParameter(f"transfer size must be positive, got {nbytes}")


__all__ = ["Flow", "LinkDir", "TimingModel", "Transfer"]
