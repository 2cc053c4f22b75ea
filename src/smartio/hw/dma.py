"""An NTB adapter's DMA engine: copies between addresses as a PCIe requester (paper §3.3).

The engine is a requester of its own (the adapter's function): its reads and writes are
translated like any device DMA — through the host IOMMU when it is on, the address decode,
the NTB LUT and the peer's IOMMU — and copy real bytes between the backing memories. A
read that fails (unmapped, link down, IOMMU fault) completes the transfer with an error and
0xFF data, as a DMA engine reports a completion error; a failed write is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from smartio.hw.ids import Requester
from smartio.hw.translate import TranslationPort

CHUNK = 16 << 20  # bytes moved per step, so a huge transfer never holds one translation long


@dataclass(frozen=True)
class DmaResult:
    bytes: int
    ok: bool
    status: str  # "ok" or the first failing piece's status


class DmaEngine:
    """The DMA engine of one adapter (or any function) in one process."""

    def __init__(self, port: TranslationPort) -> None:
        self.port = port

    @property
    def requester(self) -> Requester:
        return self.port.requester

    def copy(self, src: int, dst: int, size: int) -> DmaResult:
        """Copy ``size`` bytes from ``src`` to ``dst`` (both in the engine's host domain)."""
        port = self.port
        status = "ok"
        done = 0
        while done < size:
            n = min(CHUNK, size - done)
            rd = port.translate(src + done, n, False)
            wr = port.translate(dst + done, n, True)
            ri = wi = 0
            roff = woff = 0
            pos = 0
            while pos < n:
                r, w = rd[ri], wr[wi]
                step = min(r.length - roff, w.length - woff)
                if r.obj is None and status == "ok":
                    status = r.status
                if w.obj is None and status == "ok":
                    status = w.status
                if w.obj is not None:
                    dview = w.obj.view[w.offset + woff: w.offset + woff + step]
                    if r.obj is not None:
                        dview[:] = r.obj.view[r.offset + roff: r.offset + roff + step]
                    else:
                        dview[:] = b"\xff" * step
                pos += step
                roff += step
                woff += step
                if roff == r.length:
                    ri, roff = ri + 1, 0
                if woff == w.length:
                    wi, woff = wi + 1, 0
            done += n
        return DmaResult(done, status == "ok", status)


__all__ = ["DmaEngine", "DmaResult"]
