"""The PCIe timing model: what a transfer would cost on the paper's hardware (DESIGN §3.6).

The emulated fabric moves real bytes at the speed of this machine's memory; this package
says how long the same operation takes on real PCIe: link rates per generation and width
with their encodings, TLP and DLLP overheads, MPS/MRRS and 4 KiB splitting, posted writes
against non-posted reads limited by outstanding tags and the path's round trip, per-chip
hop latencies (paper §7.1.5), root-complex, memory and IOMMU costs including the request
splitting of §7.3.1, and NVMe media profiles. The formulas and the calibration against the
paper and pcie-bench are in docs/timing.md; every constant is in :mod:`.constants`.

    model = TimingModel(topology)
    t = model.dma(route, 4 << 20, read=True)       # Transfer: latency_ns, throughput_gb_s
    c = model.command_latency(sq=..., data=..., cq=..., nbytes=4096)

Rates are GB/s (10**9 B/s, the paper's unit); times are ns.
"""

from __future__ import annotations

from smartio.hw.timing.command import CommandTiming
from smartio.hw.timing.constants import CONSTANTS, MEDIA, REQUESTERS, TABLE, Constant, Params
from smartio.hw.timing.link import LinkRates, link_rates, tlp_count
from smartio.hw.timing.model import Flow, TimingModel, Transfer
from smartio.hw.timing.path import Element, LinkInfo, ResolvedPath

__all__ = [
    "CONSTANTS",
    "MEDIA",
    "REQUESTERS",
    "TABLE",
    "CommandTiming",
    "Constant",
    "Element",
    "Flow",
    "LinkInfo",
    "LinkRates",
    "Params",
    "ResolvedPath",
    "TimingModel",
    "Transfer",
    "link_rates",
    "tlp_count",
]
