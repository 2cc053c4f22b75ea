"""smartio.drivers.nvme — a userspace NVMe driver (libnvm / pynvme style).

It talks only to :mod:`smartio.lending`: give it any device implementing ``PciDevice`` — a
local function or, later, a borrowed one — and it brings the controller up, creates queue
pairs, and does block I/O with PRP lists, polling completions.

    tree = DeviceTree("lender")
    ctrl = Controller(tree.open("nvme0"))
    ns = Namespace(ctrl, 1)
    with QueuePair(ctrl, 64) as qp:
        buf = ctrl.device.dma_alloc(4096)
        ns.write(qp, buf, lba=0, count=8)
"""

from smartio.drivers.nvme.controller import Controller, ControllerInfo, NamespaceInfo
from smartio.drivers.nvme.qpair import Namespace, QueuePair
from smartio.drivers.nvme.queues import Completion
from smartio.drivers.nvme.spec import NvmeError, NvmeTimeout, status_name

__all__ = ["Completion", "Controller", "ControllerInfo", "Namespace", "NamespaceInfo",
           "NvmeError", "NvmeTimeout", "QueuePair", "status_name"]
