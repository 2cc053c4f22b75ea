"""The per-host device tree (paper §4.1): every function a program on this host can drive.

``DeviceTree(host)`` attaches to the host daemon (for DMA memory, IOMMU mappings and
interrupt slots) and to the fabric (for config space and mappings). ``functions()`` lists
the host's functions the way ``lspci`` does; ``open(bdf or name)`` returns a device
implementing :class:`~smartio.lending.device.PciDevice`. Borrowed functions will appear
here as shadow devices implementing the same interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from smartio.cluster.client import DaemonClient
from smartio.errors import NotFound
from smartio.hw.fabric import Fabric
from smartio.hw.ids import BDF
from smartio.lending.device import BarRegion, LocalDevice

if TYPE_CHECKING:
    from smartio.lending.shadow import ShadowDevice


@dataclass(frozen=True)
class FunctionInfo:
    bdf: str
    name: str
    kind: str  # endpoint | ntb
    model: str
    vendor_id: int
    device_id: int
    class_code: int
    bars: tuple[BarRegion, ...]
    capabilities: tuple[tuple[int, int], ...]
    local: bool = True


class DeviceTree:
    """The device tree of one host, for one program."""

    def __init__(self, host: str | None = None, cluster: str | None = None,
                 name: str = "") -> None:
        self.client = DaemonClient(host, cluster, name or "device-tree")
        self.host = self.client.host
        self.cluster = self.client.cluster
        self.fabric = Fabric.attach(self.client.topology, self.cluster)
        self.devices: list[LocalDevice] = []

    def functions(self) -> list[FunctionInfo]:
        out = []
        for fn in sorted(self.fabric.maps[self.host].functions.values(), key=lambda f: f.bdf):
            cfg = self.fabric.config(fn.name)
            out.append(FunctionInfo(
                str(fn.bdf), fn.name, fn.kind, fn.model, cfg.read(0, 2), cfg.read(2, 2),
                cfg.read(8, 4) >> 8,
                tuple(BarRegion(b.index, b.base, b.size, b.is64, b.prefetchable)
                      for b in fn.bars), tuple(cfg.capabilities())))
        return out

    def open(self, ref: str) -> LocalDevice:
        """Open a function by BDF (``02:00.0``) or name (``nvme0``)."""
        hmap = self.fabric.maps[self.host]
        fn = hmap.functions.get(ref)
        if fn is None:
            try:
                fn = hmap.by_bdf(BDF.parse(ref))
            except Exception:
                fn = None
        if fn is None or fn.kind != "endpoint":
            names = ", ".join(f"{f.bdf} {f.name}" for f in hmap.functions.values()
                              if f.kind == "endpoint")
            raise NotFound(f"host {self.host} has no device {ref!r}; devices: {names or 'none'}")
        dev = LocalDevice(self, fn)
        self.devices.append(dev)
        return dev

    def borrow(self, lender: str, device: str) -> ShadowDevice:
        """Borrow ``device`` of host ``lender``: a shadow device drivers use as if local."""
        from smartio.cluster import messages as m
        from smartio.lending.shadow import ShadowDevice

        info = self.client.call(m.Borrow(client=self.client.id, lender=lender, device=device))
        fn = self.fabric.maps[lender].functions[device]
        dev = ShadowDevice(self, fn, lender, info)
        self.devices.append(dev)
        return dev

    def close(self) -> None:
        for d in self.devices:
            d.close()
        self.devices.clear()
        self.fabric.close()
        self.client.close()

    def __enter__(self) -> DeviceTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["DeviceTree", "FunctionInfo"]
