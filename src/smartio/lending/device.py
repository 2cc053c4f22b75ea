"""The device interface drivers program against — local functions and (later) shadow devices.

:class:`PciDevice` is the protocol: config-space accessors, BAR mappings, bus mastering,
the DMA API (buffers with device-side I/O addresses), peer-to-peer mapping of another
function's BAR, MSI-X vectors to wait on, and function-level reset. A driver holds a
``PciDevice`` and never learns whether the function is in its host or borrowed (paper §4,
DESIGN §4.3). :class:`LocalDevice` implements it for a function of the program's own host.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from smartio.cluster import messages as m
from smartio.errors import IllegalOperation, IllegalParameter, Timeout
from smartio.hw.enumeration import Function
from smartio.hw.mapping import CpuMapping, map_cpu
from smartio.hw.memory import object_path
from smartio.hw.pci.caps import (
    CAP_MSIX,
    CAP_PCIE,
    DEVCTL_INITIATE_FLR,
    MSIX_ENABLE,
    MSIX_FUNCTION_MASK,
)
from smartio.hw.pci.config import CMD_BUS_MASTER, CMD_MEMORY, ConfigSpace
from smartio.hw.units import PAGE_SIZE

if TYPE_CHECKING:
    from smartio.lending.tree import DeviceTree


@dataclass(frozen=True)
class BarRegion:
    index: int
    addr: int  # physical address in the program's host domain
    size: int
    is64: bool
    prefetchable: bool


class DmaBuffer:
    """Host memory a device can reach: ``view``/``array`` for the CPU, ``ioaddr`` for the
    device (the address to put in descriptors; contiguous)."""

    def __init__(self, device: LocalDevice, handle: int, phys: int, ioaddr: int,
                 size: int, owned: bool = True) -> None:
        self.device = device
        self.owned = owned  # False: another program's buffer, shared (dma_attach)
        self.handle = handle
        self.phys = phys
        self.ioaddr = ioaddr
        self.size = size
        self._mapping: CpuMapping = map_cpu(device.tree.fabric, device.tree.host, phys, size)
        self.view = self._mapping.view
        self.freed = False

    @property
    def array(self) -> np.ndarray:
        return np.frombuffer(self.view, dtype=np.uint8)

    def free(self) -> None:
        if self.freed:
            raise IllegalOperation("DMA buffer already freed")
        self._mapping.unmap()  # Busy while arrays/views of it are alive
        self.freed = True
        if self.owned:
            self.device.tree.client.call(m.DmaFree(client=self.device.tree.client.id,
                                                   buffer=self.handle))


class Vector:
    """One MSI-X vector: ``wait`` returns when the device signalled it."""

    def __init__(self, tree: DeviceTree, index: int, slot: int) -> None:
        self.index = index
        self.slot = slot
        self._counter = tree.fabric.msi(tree.host).view[8 * slot + 4: 8 * slot + 8].cast("I")
        self.seen = self._counter[0]

    def pending(self) -> int:
        return (self._counter[0] - self.seen) & 0xFFFFFFFF

    def wait(self, timeout: float | None = None) -> int:
        """Block until at least one interrupt arrived; returns how many (and consumes them)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        spins = 0
        while True:
            n = self.pending()
            if n:
                self.seen = (self.seen + n) & 0xFFFFFFFF
                return n
            if deadline is not None and time.monotonic() > deadline:
                raise Timeout(f"no interrupt on vector {self.index} within {timeout:g} s")
            spins += 1
            time.sleep(0 if spins < 1000 else 0.0002)


class PciDevice(Protocol):
    """What a driver uses (implemented by local functions and by shadow devices)."""

    name: str
    bdf: str

    def config_read(self, offset: int, size: int) -> int: ...
    def config_write(self, offset: int, size: int, value: int) -> None: ...
    def bars(self) -> list[BarRegion]: ...
    def map_bar(self, index: int) -> memoryview: ...
    def enable(self, *, memory: bool = True, bus_master: bool = True) -> None: ...
    def dma_alloc(self, size: int) -> DmaBuffer: ...
    def dma_attach(self, ioaddr: int) -> DmaBuffer: ...
    def exclusive(self) -> contextlib.AbstractContextManager[None]: ...
    def peer_map(self, other: PciDevice, bar: int) -> int: ...
    def msix_enable(self, count: int) -> list[Vector]: ...
    def msix_disable(self) -> None: ...
    def reset(self, timeout: float = 2.0) -> None: ...
    def close(self) -> None: ...


class LocalDevice:
    """A function of the program's own host."""

    def __init__(self, tree: DeviceTree, fn: Function) -> None:
        self.tree = tree
        self.function = fn
        self.name = fn.name
        self.bdf = str(fn.bdf)
        self.config: ConfigSpace = tree.fabric.config(fn.name)
        self._bar_maps: dict[int, CpuMapping] = {}
        self.buffers: list[DmaBuffer] = []
        self.vectors: list[Vector] = []
        self.closed = False
        self._lock = -1

    # -- config space ------------------------------------------------------------------

    def config_read(self, offset: int, size: int) -> int:
        return self.config.read(offset, size)

    def config_write(self, offset: int, size: int, value: int) -> None:
        self.config.write(offset, size, value)

    @property
    def vendor_id(self) -> int:
        return self.config_read(0, 2)

    @property
    def device_id(self) -> int:
        return self.config_read(2, 2)

    @property
    def class_code(self) -> int:
        return self.config_read(8, 4) >> 8

    def bars(self) -> list[BarRegion]:
        return [BarRegion(b.index, b.base, b.size, b.is64, b.prefetchable)
                for b in self.function.bars]

    def capabilities(self) -> list[tuple[int, int]]:
        return self.config.capabilities()

    # -- BARs, bus mastering -------------------------------------------------------------

    def map_bar(self, index: int) -> memoryview:
        """Map BAR ``index`` for the CPU (memory space must be enabled to decode it)."""
        mp = self._bar_maps.get(index)
        if mp is None:
            bar = next((b for b in self.bars() if b.index == index), None)
            if bar is None:
                raise IllegalParameter(f"{self.name} has no BAR{index}")
            mp = map_cpu(self.tree.fabric, self.tree.host, bar.addr, bar.size)
            self._bar_maps[index] = mp
        return mp.view

    def enable(self, *, memory: bool = True, bus_master: bool = True) -> None:
        cmd = self.config_read(4, 2)
        cmd = (cmd | CMD_MEMORY) if memory else (cmd & ~CMD_MEMORY)
        cmd = (cmd | CMD_BUS_MASTER) if bus_master else (cmd & ~CMD_BUS_MASTER)
        self.config_write(4, 2, cmd)

    # -- DMA API ---------------------------------------------------------------------------

    def dma_alloc(self, size: int) -> DmaBuffer:
        """Allocate ``size`` bytes of host RAM the device can DMA to (page granular)."""
        size = max(PAGE_SIZE, size)
        rep = self.tree.client.call(m.DmaAlloc(client=self.tree.client.id, device=self.name,
                                               size=size))
        buf = DmaBuffer(self, rep["buffer"], rep["phys"], rep["iova"], rep["size"])
        self.buffers.append(buf)
        return buf

    def dma_attach(self, ioaddr: int) -> DmaBuffer:
        """Map, for this program's CPU, the DMA buffer of this device that contains
        ``ioaddr`` — one another program of the host allocated (multi-process drivers)."""
        rep = self.tree.client.call(m.DmaAttach(client=self.tree.client.id, device=self.name,
                                                ioaddr=ioaddr))
        buf = DmaBuffer(self, rep["buffer"], rep["phys"], rep["iova"], rep["size"],
                        owned=False)
        self.buffers.append(buf)
        return buf

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the function's cross-process lock (e.g. around a shared admin queue)."""
        fd = self._lock_fd()
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _lock_fd(self) -> int:
        if self._lock < 0:
            path = object_path(self.tree.cluster, f"{self.function.host}.{self.name}.lock")
            self._lock = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        return self._lock

    def peer_map(self, other: PciDevice, bar: int) -> int:
        """The I/O address this device uses to reach ``other``'s BAR (peer-to-peer)."""
        region = next((b for b in other.bars() if b.index == bar), None)
        if region is None:
            raise IllegalParameter(f"{other.name} has no BAR{bar}")
        rep = self.tree.client.call(m.DmaMapPeer(client=self.tree.client.id, device=self.name,
                                                 addr=region.addr, size=region.size))
        return int(rep["ioaddr"])

    # -- interrupts --------------------------------------------------------------------------

    def msix_enable(self, count: int) -> list[Vector]:
        """Program ``count`` MSI-X vectors and enable MSI-X; returns vectors to wait on."""
        cap = self.config.find_capability(CAP_MSIX)
        if cap is None:
            raise IllegalOperation(f"{self.name} has no MSI-X capability")
        table_size = (self.config_read(cap + 2, 2) & 0x7FF) + 1
        if not 1 <= count <= table_size:
            raise IllegalParameter(f"{count} vectors; {self.name} has {table_size}")
        rep = self.tree.client.call(m.MsiAlloc(client=self.tree.client.id, device=self.name,
                                               count=count))
        table = self.config_read(cap + 4, 4)
        bar = self.map_bar(table & 7)
        base = table & ~7
        self.vectors = []
        for i, v in enumerate(rep["vectors"]):
            e = base + 16 * i
            bar[e: e + 16] = (v["addr"] & 0xFFFFFFFF).to_bytes(4, "little") + \
                (v["addr"] >> 32).to_bytes(4, "little") + int(v["data"]).to_bytes(4, "little") \
                + (0).to_bytes(4, "little")
            self.vectors.append(Vector(self.tree, i, v["slot"]))
        ctrl = self.config_read(cap + 2, 2)
        self.config_write(cap + 2, 2, (ctrl | MSIX_ENABLE) & ~MSIX_FUNCTION_MASK)
        return self.vectors

    def msix_disable(self) -> None:
        cap = self.config.find_capability(CAP_MSIX)
        if cap is None or not self.vectors:
            return
        self.config_write(cap + 2, 2, self.config_read(cap + 2, 2) & ~MSIX_ENABLE)
        self.tree.client.call(m.MsiFree(client=self.tree.client.id, device=self.name))
        self.vectors = []

    # -- reset and close ---------------------------------------------------------------------

    def reset(self, timeout: float = 2.0) -> None:
        """Function Level Reset: initiate it and wait until the function completed it."""
        cap = self.config.find_capability(CAP_PCIE)
        if cap is None:
            raise IllegalOperation(f"{self.name} has no PCI Express capability")
        self.config_write(cap + 8, 2, self.config_read(cap + 8, 2) | DEVCTL_INITIATE_FLR)
        deadline = time.monotonic() + timeout
        while self.config_read(cap + 8, 2) & DEVCTL_INITIATE_FLR:
            if time.monotonic() > deadline:
                raise Timeout(f"{self.name} did not complete its function level reset "
                              f"within {timeout:g} s (is its device engine running?)")
            time.sleep(0.001)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.msix_disable()
        for buf in self.buffers:
            if not buf.freed:
                buf.free()
        for mp in self._bar_maps.values():
            mp.unmap()
        self._bar_maps.clear()
        if self._lock >= 0:
            os.close(self._lock)
            self._lock = -1

    def __enter__(self) -> LocalDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LocalDevice({self.bdf} {self.name})"


__all__ = ["BarRegion", "DmaBuffer", "LocalDevice", "PciDevice", "Vector"]
