"""Shadow devices: a borrowed function as a local handle (paper §4.1).

Borrowing asks this host's daemon, which asks the lender's daemon to prepare the DMA and
MSI windows on the lender's NTB and maps the function's BARs through this host's NTB. The
:class:`ShadowDevice` then implements the same :class:`~smartio.lending.device.PciDevice`
interface as a local function — config space (the real function's, shared), BARs (through
the NTB window), DMA buffers (in this host's RAM, at device-side addresses inside the DMA
window, computed here without asking the lender, §4.3), MSI-X vectors (aimed at the MSI
window, §4.2), FLR — so a driver runs on it unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from smartio.cluster import messages as m
from smartio.errors import IllegalOperation
from smartio.hw.enumeration import Function
from smartio.lending.device import BarRegion, LocalDevice, PciDevice

if TYPE_CHECKING:
    from smartio.lending.tree import DeviceTree


class ShadowDevice(LocalDevice):
    """A function of another host, borrowed by this program."""

    def __init__(self, tree: DeviceTree, fn: Function, lender: str, info: dict[str, Any]) -> None:
        super().__init__(tree, fn)
        self.lender = lender
        self.info = info
        self._bars = [BarRegion(b.index, int(info["bars"][str(b.index)][0]), b.size, b.is64,
                                b.prefetchable) for b in fn.bars]
        self.returned = False

    def bars(self) -> list[BarRegion]:
        """The BARs at their addresses in *this* host's domain (inside the NTB window)."""
        return list(self._bars)

    def peer_map(self, other: PciDevice, bar: int) -> int:
        raise IllegalOperation("peer-to-peer for borrowed functions is not implemented yet "
                               "(§4.4)")

    def close(self) -> None:
        if self.returned:
            return
        super().close()
        self.returned = True
        self.tree.client.call(m.Return(client=self.tree.client.id, lender=self.lender,
                                       device=self.name))

    def __repr__(self) -> str:
        return f"ShadowDevice({self.lender}:{self.bdf} {self.name})"


__all__ = ["ShadowDevice"]
