"""An NVMe controller model (NVMe 1.4, NVM command set) for the ``"nvme"`` endpoint.

:class:`NvmeController` is a :class:`~smartio.hw.devices.base.DeviceModel`: BAR0 holds
the registers (0x000), the doorbells (0x1000, DSTRD = 0) and the MSI-X table
(:data:`MSIX_TABLE_OFFSET`) and PBA (:data:`MSIX_PBA_OFFSET`), BIR 0, with
:func:`msix_vectors` entries — what the PCI config-space code advertises. The modules:

* :mod:`.controller` — registers, enable/reset/shutdown state machine, the poll loop;
* :mod:`.engine` — doorbells, arbitration, execution, completions and interrupts;
* :mod:`.admin`, :mod:`.nvm`, :mod:`.features` — the command dispatch tables;
* :mod:`.identify`, :mod:`.logpages` — data structures the host reads;
* :mod:`.namespace`, :mod:`.media` — backing stores and compute-then-hold latency;
* :mod:`.regs`, :mod:`.queues`, :mod:`.prp`, :mod:`.status`, :mod:`.state`,
  :mod:`.events`, :mod:`.config` — the spec's building blocks, declared once.
"""

from __future__ import annotations

from collections.abc import Mapping

from smartio.hw.devices.nvme.config import NvmeConfig
from smartio.hw.devices.nvme.controller import NvmeController
from smartio.hw.devices.nvme.queues import pack_sqe
from smartio.hw.devices.nvme.regs import (
    BAR0_SIZE,
    DOORBELL_BASE,
    FIELDS,
    MSIX_BIR,
    MSIX_PBA_OFFSET,
    MSIX_TABLE_OFFSET,
    REG,
)
from smartio.hw.devices.nvme.state import State
from smartio.hw.devices.nvme.status import DNR, Status


def msix_vectors(params: Mapping[str, object]) -> int:
    """MSI-X vectors of a controller with these parameters (``io_queues + 1``)."""
    return NvmeConfig.from_params(params).msix_vectors


__all__ = [
    "BAR0_SIZE", "DNR", "DOORBELL_BASE", "FIELDS", "MSIX_BIR", "MSIX_PBA_OFFSET",
    "MSIX_TABLE_OFFSET", "REG", "NvmeConfig", "NvmeController", "State", "Status",
    "msix_vectors", "pack_sqe",
]
