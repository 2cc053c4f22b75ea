"""Daemon handlers for Device Lending (paper §4): borrower and lender sides.

Borrower side (``on_borrow``): the program's host asks the lender's daemon to prepare the
windows through which the function reaches the borrower — a **DMA window** on the lender's
NTB onto the borrower's segment pool (whose pages the borrower's IOMMU, when on, maps
1:1 for traffic entering through its NTB) and an **MSI window** onto the borrower's
interrupt controller (§4.2, §4.3) — and then maps the function's BARs through its own NTB
for the CPU. Lender side (``on_peer_borrow``): programs those LUT entries and admits the
function's requester ID through the lender's adapter. Everything is set up at borrow
time, so the data path (BAR accesses, DMA, MSI) involves no software (§4.3).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from smartio.cluster import messages as m
from smartio.errors import IllegalOperation, NoSuchNodeId, NotFound
from smartio.hw.enumeration import MSI_BASE, MSI_SIZE
from smartio.hw.units import MiB, align_down

if TYPE_CHECKING:
    from smartio.cluster.daemon import ClientInfo, PeerLink
    from smartio.hw.fabric import Fabric
    from smartio.node.driver import LutRange, NodeDriver

log = logging.getLogger(__name__)

DMA_WINDOW = 256 * MiB  # default DMA window (the paper's tests use 1 GiB; LUTs are scarce)


@dataclass
class Lent:
    """Lender side: the windows made for one borrower of one function."""

    borrower: str
    device: str
    rid: int
    luts: list[LutRange] = field(default_factory=list)


@dataclass
class Borrowed:
    """Borrower side: a function a program of this host borrowed."""

    client: str
    lender: str
    device: str
    bar_luts: dict[int, LutRange] = field(default_factory=dict)
    dma_window: int = 0  # device-side address of our pool's first byte
    dma_base: int = 0  # our pool address the DMA window starts at
    dma_size: int = 0
    msi_window: int = 0  # device-side address of our interrupt controller's window


class LendingHandlers:
    """Mixin of the daemon: borrowing and lending functions."""

    if TYPE_CHECKING:
        host: str
        fabric: Fabric
        driver: NodeDriver
        clients: dict[str, ClientInfo]

        def peer(self, host: str) -> PeerLink: ...

    def __init__(self) -> None:
        self.lent: dict[tuple[str, str], Lent] = {}
        self.borrowed: dict[tuple[str, str, str], Borrowed] = {}

    def _adapter_towards(self, lender: str) -> tuple[int, str]:
        """(our adapter number, the lender's adapter id) on the shortest reachable path."""
        best: tuple[int, str, int] | None = None
        for no, ntb in enumerate(self.driver.adapters):
            for a in self.fabric.topo.host(lender).adapters:
                route = self.fabric.nt.route(ntb.id, a.id)
                if route is not None and (best is None or len(route.hops) < best[2]):
                    best = (no, a.id, len(route.hops))
        if best is None:
            raise NoSuchNodeId(f"host {lender} is not reachable from {self.host}")
        return best[0], best[1]

    async def on_borrow(self, msg: m.Borrow) -> dict[str, Any]:
        key = (msg.client, msg.lender, msg.device)
        if key in self.borrowed:
            raise IllegalOperation(f"{msg.device} of {msg.lender} is already borrowed by "
                                   "this program")
        if msg.lender == self.host:
            raise IllegalOperation(f"{msg.device} is local to {self.host}: open it directly")
        fn = self.fabric.maps[msg.lender].functions.get(msg.device) \
            if msg.lender in self.fabric.maps else None
        if fn is None or fn.kind != "endpoint":
            raise NotFound(f"host {msg.lender} has no device {msg.device!r}")
        no, lender_adapter = self._adapter_towards(msg.lender)
        ours = self.driver.adapters[no]
        dma_size = min(DMA_WINDOW, self.driver.pool.size)
        rep = await self.peer(msg.lender).call(m.PeerBorrow(
            host=self.host, adapter=ours.id, device=msg.device, dma_base=self.driver.pool.base,
            dma_size=dma_size))
        b = Borrowed(msg.client, msg.lender, msg.device)
        try:
            for bar in fn.bars:  # the CPU reaches the BARs through our NTB
                b.bar_luts[bar.index] = self.driver.lut_map(no, lender_adapter, bar.base,
                                                            bar.size)
        except BaseException:
            for rng in b.bar_luts.values():
                self.driver.lut_unmap(rng)
            await self.peer(msg.lender).call(m.PeerReturn(host=self.host, device=msg.device))
            raise
        b.dma_window, b.dma_base, b.dma_size = rep["dma_window"], self.driver.pool.base, dma_size
        b.msi_window = rep["msi_window"]
        self.borrowed[key] = b
        return {"bars": {str(i): [r.addr, r.size] for i, r in b.bar_luts.items()},
                "dma_window": rep["dma_window"], "dma_base": self.driver.pool.base,
                "dma_size": dma_size, "msi_window": rep["msi_window"],
                "bdf": str(fn.bdf), "host": msg.lender}

    def borrowed_device(self, client: str, device: str) -> Borrowed | None:
        """What ``client`` borrowed under the function name ``device`` (names are unique)."""
        return next((b for (c, _, d), b in self.borrowed.items()
                     if c == client and d == device), None)

    async def on_return(self, msg: m.Return) -> dict[str, Any]:
        b = self.borrowed.pop((msg.client, msg.lender, msg.device), None)
        if b is None:
            raise NotFound(f"{msg.device} of {msg.lender} is not borrowed by this program")
        await self._return(b)
        return {}

    async def _return(self, b: Borrowed) -> None:
        for rng in b.bar_luts.values():
            self.driver.lut_unmap(rng)
        try:
            await self.peer(b.lender).call(m.PeerReturn(host=self.host, device=b.device))
        except Exception as e:  # the lender may be gone; our side is clean anyway
            log.warning("err_return: %s %s: %s", b.lender, b.device, e)

    async def release_borrows(self, client: str) -> None:
        for key in [k for k in self.borrowed if k[0] == client]:
            await self._return(self.borrowed.pop(key))

    # -- lender side -------------------------------------------------------------------------

    async def on_peer_borrow(self, msg: m.PeerBorrow) -> dict[str, Any]:
        fn = self.fabric.maps[self.host].functions.get(msg.device)
        if fn is None or fn.kind != "endpoint":
            raise NotFound(f"host {self.host} has no device {msg.device!r}")
        key = (msg.host, msg.device)
        if key in self.lent:
            raise IllegalOperation(f"{msg.device} is already lent to {msg.host}")
        no = next((i for i, a in enumerate(self.driver.adapters)
                   if self.fabric.nt.route(a.id, msg.adapter) is not None), None)
        if no is None:
            raise NoSuchNodeId(f"{msg.adapter} is not reachable from {self.host}")
        ntb = self.driver.adapters[no]
        lent = Lent(msg.host, msg.device, fn.bdf.rid)
        try:
            ntb.rid_add(fn.bdf.rid)  # the function's requests may now cross this NTB
            dma = self.driver.lut_map(no, msg.adapter, msg.dma_base, msg.dma_size)
            lent.luts.append(dma)
            msi_base = align_down(MSI_BASE, ntb.slice_size)
            msi = self.driver.lut_map(no, msg.adapter, msi_base, MSI_BASE + MSI_SIZE - msi_base)
            lent.luts.append(msi)
        except BaseException:
            self._unlend(lent, no)
            raise
        self.lent[key] = lent
        log.info("lend: %s to %s (DMA window %#x, MSI window %#x)", msg.device, msg.host,
                 dma.addr, msi.addr)
        return {"dma_window": dma.addr, "msi_window": msi.addr + (MSI_BASE - msi_base)}

    def forget_borrower(self, host: str) -> None:
        """A borrower's daemon died: take back everything lent to it."""
        for key in [k for k in self.lent if k[0] == host]:
            lent = self.lent.pop(key)
            no = next((i for i, a in enumerate(self.driver.adapters)
                       if any(r.adapter == a.id for r in lent.luts)), 0)
            self._unlend(lent, no)
            log.warning("lend_reclaimed: %s from dead borrower %s", lent.device, host)

    async def on_peer_return(self, msg: m.PeerReturn) -> dict[str, Any]:
        lent = self.lent.pop((msg.host, msg.device), None)
        if lent is not None:
            no = next(i for i, a in enumerate(self.driver.adapters)
                      if any(r.adapter == a.id for r in lent.luts)) if lent.luts else 0
            self._unlend(lent, no)
        return {}

    def _unlend(self, lent: Lent, no: int) -> None:
        for rng in lent.luts:
            self.driver.lut_unmap(rng)
        ntb = self.driver.adapters[no]
        if ntb.rid_has(lent.rid):
            ntb.rid_remove(lent.rid)


__all__ = ["Borrowed", "LendingHandlers", "Lent"]
