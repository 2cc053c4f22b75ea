"""Modeled latency of one NVMe command, piece by piece (paper §7.1.1, §7.4.1).

At queue depth one a command's completion latency is a chain of fabric operations: the
driver writes the 64 B SQE into the SQ and rings the doorbell (posted stores, fire and
forget: PCIe ordering keeps the controller's fetch behind the SQE where their paths meet,
fn. 12), the controller fetches the SQE over the path to wherever the SQ lives (the read
is served once both the request and the SQE have arrived), the media does its work, the
data moves (a DMA write into the buffer for a read command, a DMA read of it for a write
command), the 16 B CQE is written to the CQ, and optionally an MSI is sent. Where the SQ
is placed changes only the fetch, which is why moving it next to the controller shortens
every command (Fig. 34).

Each piece is a :class:`~smartio.hw.route.Route` the caller resolved (the device engines
know their paths); ``None`` means the piece does not cross PCIe (an SQ in the controller's
CMB, a device-rung doorbell, a polled CQ without MSI).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from smartio.hw.route import Route

if TYPE_CHECKING:
    from smartio.hw.timing.model import TimingModel

SQE_BYTES = 64  # NVMe 1.4 §4.2
CQE_BYTES = 16  # NVMe 1.4 §4.6
DOORBELL_BYTES = 4


@dataclass(frozen=True, slots=True)
class CommandTiming:
    """The pieces of one command's modeled latency, ns."""

    submit_ns: float  # the doorbell store reaches the controller
    sqe_fetch_ns: float  # from there until the controller has the 64 B SQE
    media_ns: float  # inside the drive (media profile)
    data_ns: float  # the data transfer
    cqe_ns: float  # the 16 B completion write lands in the CQ
    msi_ns: float  # the interrupt write (0 when the driver polls)

    @property
    def total_ns(self) -> float:
        return (self.submit_ns + self.sqe_fetch_ns + self.media_ns + self.data_ns + self.cqe_ns
                + self.msi_ns)


def command_latency(model: TimingModel, *, data: Route, cq: Route, nbytes: int,
                    read: bool = True, media: str = "optane", sq: Route | None = None,
                    doorbell: Route | None = None, sqe_store: Route | None = None,
                    msi: Route | None = None, requester: str | None = None) -> CommandTiming:
    """Modeled latency of one I/O command at queue depth one.

    Args:
        model: the timing model of the topology.
        data: controller -> data buffer (host RAM or a device BAR).
        cq: controller -> CQ memory.
        nbytes: data bytes the command moves.
        read: an NVMe Read (data written by the controller) or a Write (data read by it).
        media: media profile (``ram``, ``optane``, ``nand``).
        sq: controller -> SQ memory; None when the SQ is in the controller's CMB.
        doorbell: CPU host -> controller, for the doorbell store; None if not modeled.
        sqe_store: CPU host -> SQ memory, for the SQE store; None when the SQ is in the
            CPU's own RAM (a cached store, off the PCIe path).
        msi: controller -> host to interrupt; None when the driver polls.
        requester: requester profile of the controller (default ``nvme``).
    """
    submit = 0.0
    if doorbell is not None:
        submit = model.cpu_store(doorbell, DOORBELL_BYTES).latency_ns
    sqe_in_place = 0.0
    if sqe_store is not None:
        sqe_in_place = model.cpu_store(sqe_store, SQE_BYTES).latency_ns
    fetch = 0.0
    if sq is not None:
        out, inside, back = model.read_phases(sq, SQE_BYTES)
        fetch = max(submit + out, sqe_in_place) + inside + back - submit
    media_read, media_write = model.params.media(media)
    moved = model.dma(data, nbytes, read=not read, requester=requester).latency_ns
    cqe = model.dma(cq, CQE_BYTES, read=False, requester=requester).latency_ns
    irq = model.msi(msi).latency_ns if msi is not None else 0.0
    return CommandTiming(submit, fetch, media_read if read else media_write, moved, cqe, irq)


__all__ = ["CQE_BYTES", "SQE_BYTES", "CommandTiming", "command_latency"]
