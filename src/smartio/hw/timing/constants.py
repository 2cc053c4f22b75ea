"""The one table of timing constants, each with its unit and where the number comes from.

Every figure the timing model uses that is not a formula lives here: PCIe protocol sizes
(spec), per-chip hop latencies (paper §7.1.5), root-complex, memory and IOMMU costs
(pcie-bench measurements, paper §7.3.1), requester profiles (outstanding reads and read
request size per device model) and NVMe media profiles. ``docs/timing.md`` prints the same
table; a test keeps the two in step. Names are dotted, ``<group>.<item>[.<field>]``.

A constant's ``kind`` says how much to trust it:

* ``spec``: a PCIe specification value;
* ``paper``: a figure the SmartIO paper (Markussen et al., ACM TOCS 2021) reports;
* ``measured``: a published measurement (pcie-bench, AnandTech, vendor data);
* ``derived``: computed from measured figures as the note says;
* ``fitted``: chosen so that a modeled figure meets a paper figure (the note names it);
  a test against that figure checks the fit, not a prediction;
* ``assumed``: no public figure was found; the value is a stated guess.

The PCIe specification's per-width Ack/FC-update tables are in :mod:`.link` (they are
indexed tables, not scalars); they are spec data with the same source as ``tlp.*``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from smartio.errors import IllegalParameter

PCIE_SPEC = "PCIe Base Spec 5.0 (§2.2 TLP headers, §4.2 encodings); pcie-bench/pcie-model pcie.py"
PAPER = "SmartIO paper (TOCS 2021)"
PCIE_BENCH = "pcie-bench/data, NFP6000 Gen3 x8 on Xeon E5 (Neugebauer et al., SIGCOMM'18)"


@dataclass(frozen=True, slots=True)
class Constant:
    """One entry of the table: a value, its unit, and where it comes from."""

    name: str
    value: float
    unit: str
    kind: str  # spec | paper | measured | derived | fitted | assumed
    source: str
    note: str = ""


#: The kinds of source a constant may have (see the module docstring).
KINDS = frozenset({"spec", "paper", "measured", "derived", "fitted", "assumed"})

TABLE: tuple[Constant, ...] = (
    # -- PCIe protocol (spec) ------------------------------------------------------------
    Constant("pcie.mps", 256, "B", "paper", f"{PAPER} fn. 10",
             "Maximum Payload Size set system-wide; 'most commonly 128, 256 or 512'"),
    Constant("tlp.dllp_b", 8, "B", "spec", PCIE_SPEC,
             "per-TLP framing: sequence number, LCRC, STP/END (Gen3 STP token + LCRC = 8 B)"),
    Constant("tlp.hdr_b", 4, "B", "spec", PCIE_SPEC, "generic TLP header DW0"),
    Constant("tlp.mem_addr64_b", 12, "B", "spec", PCIE_SPEC,
             "MWr/MRd header beyond DW0 with 64-bit addressing (8 B with 32-bit)"),
    Constant("tlp.cpl_b", 8, "B", "spec", PCIE_SPEC, "CplD header beyond DW0"),
    Constant("tlp.update_dllp_b", 8, "B", "spec", PCIE_SPEC, "Ack or UpdateFC DLLP on the wire"),
    Constant("link.skip_b", 4, "B", "spec", PCIE_SPEC,
             "SKIP ordered set (Gen1 value, reused for all generations as pcie-model does)"),
    Constant("link.skip_interval_b", 1538, "B", "spec", PCIE_SPEC, "bytes between SKIP sets"),
    Constant("fc.posted_data_credits", 1024, "credits", "measured",
             "cocotbext-pcie switch port advertisement (PD; 1 credit = 16 B)",
             "bounds posted-write rate per link at PD*16 B / credit round trip (formula 8)"),
    Constant("cable.ns_per_m", 5.0, "ns/m", "assumed", "signal velocity ~0.67c in copper/fibre",
             "propagation per metre of external cable (topology length_m)"),
    # -- switch chips: latency added per crossing (cut-through) ---------------------------
    Constant("chip.PEX8733.hop_ns", 132, "ns", "paper", f"{PAPER} §7.1.5 [13]",
             "worst case; PXH830/PXH832 NTB adapters, HIB68/MXH832/MXH833 cards"),
    Constant("chip.PEX8796.hop_ns", 150, "ns", "paper", f"{PAPER} §7.1.5 [14]; Broadcom brief",
             "worst case x16->x16; expansion chassis switch"),
    Constant("chip.PM8536.hop_ns", 170, "ns", "paper", f"{PAPER} §7.1.5 (lab measurement)",
             "average; Microsemi Switchtec PFX inside the MXS824 cluster switch"),
    # -- root complex, memory, CPU ---------------------------------------------------------
    Constant("rc.mem_read_ns", 530, "ns", "derived", PCIE_BENCH,
             "root port in -> DRAM -> completion out; 64 B RTT 546-560 ns less serialization"),
    Constant("rc.mem_write_ns", 210, "ns", "derived", PCIE_BENCH,
             "posted write until visible: LAT_DMA_WRRD 773 ns - LAT_DMA_RD 546 ns, "
             "less serialization"),
    Constant("rc.numa_remote_ns", 100, "ns", "measured", PCIE_BENCH,
             "buffer on the remote socket: 64 B RTT 653 vs 546 ns"),
    Constant("rc.p2p_forward_ns", 200, "ns", "assumed", "no public figure",
             "peer-to-peer forwarding root port -> root port, each direction (~1.5 switch hops)"),
    Constant("rc.p2p_read_tags", 48, "requests", "fitted", f"{PAPER} §7.3.1",
             "non-posted requests the Xeon root complex keeps open when it forwards (split) reads; "
             "fitted to the 1.5 GB/s IOMMU read plateau"),
    Constant("cpu.load_ns", 700, "ns", "derived",
             "hackingnasdaq.blogspot.com/2014/05/pcie-latency.html (i7-4771 Gen3)",
             "core -> root port -> core part of an uncached load; 850 ns ping less "
             "completer.reg_ns (split assumed)"),
    Constant("cpu.store_ns", 350, "ns", "assumed", "half of cpu.load_ns",
             "core -> root port for a posted (write-combined) store"),
    Constant("cpu.load_b", 8, "B", "assumed", "x86 uncached MOV",
             "uncached loads are serialized: one outstanding load of this size"),
    Constant("cpu.store_b", 64, "B", "assumed", "x86 write-combining buffer",
             "a write-combined store leaves as one TLP per 64 B line"),
    # -- IOMMU -----------------------------------------------------------------------------
    Constant("iommu.iotlb_miss_ns", 220, "ns", "measured", f"{PCIE_BENCH} (*-iommu-nosp)",
             "median read RTT 600 -> 813-826 ns once the window exceeds the IOTLB"),
    Constant("iommu.page_b", 4096, "B", "measured", f"{PCIE_BENCH} (*-iommu-nosp)",
             "IOTLB reach per entry with superpages off; one miss per page streamed"),
    Constant("iommu.split_b", 64, "B", "paper", f"{PAPER} §7.3.1 (PCIe tracer)",
             "reads forwarded through the IOMMU leave as 64 B requests (256 B -> 4 x 64 B)"),
    # -- completers other than host memory -----------------------------------------------------
    Constant("completer.reg_ns", 150, "ns", "assumed", "split of the 850 ns CPU ping (cpu.load_ns)",
             "device register/BAR read: completion latency inside the endpoint"),
    Constant("completer.gpu_mem_ns", 500, "ns", "assumed", "no public figure",
             "GPU BAR (device memory) read completion latency"),
    Constant("completer.write_ns", 50, "ns", "assumed", "no public figure",
             "posted write into device memory or a register until it takes effect"),
    # -- requester profiles (device DMA engines) -------------------------------------------
    Constant("requester.gpu.tags", 56, "requests", "fitted", f"{PAPER} §7.3.1",
             "outstanding reads of the GPU copy engine; fitted to 10.2 GB/s bare-metal reads"),
    Constant("requester.gpu.mrrs", 256, "B", "paper", f"{PAPER} §7.3.1 (PCIe tracer)",
             "'the GPU requests 256 bytes per request'"),
    Constant("requester.nvme.tags", 32, "requests", "spec", "PCIe 5-bit tag field",
             "no extended tags assumed"),
    Constant("requester.nvme.mrrs", 512, "B", "assumed", "Linux default MRRS", ""),
    Constant("requester.nic.tags", 64, "requests", "measured",
             "Intel UG 683527 (64 tags); AMD PG195 (2-64 read IDs)", ""),
    Constant("requester.nic.mrrs", 512, "B", "assumed", "Linux default MRRS", ""),
    Constant("requester.ntb.tags", 32, "requests", "spec", "PCIe 5-bit tag field",
             "NTB adapter DMA engine"),
    Constant("requester.ntb.mrrs", 512, "B", "assumed", "Linux default MRRS", ""),
    Constant("requester.generic.tags", 32, "requests", "spec", "PCIe 5-bit tag field", ""),
    Constant("requester.generic.mrrs", 512, "B", "assumed", "Linux default MRRS", ""),
    # -- NVMe media profiles: time inside the drive, between SQE fetch and data transfer -------
    Constant("media.ram.read_ns", 1500, "ns", "assumed", f"{PAPER} §7.1.1 (PMC-Sierra RAM disk)",
             "controller firmware only; no published figure"),
    Constant("media.ram.write_ns", 1500, "ns", "assumed", f"{PAPER} §7.1.1", "as reads"),
    Constant("media.optane.read_ns", 6100, "ns", "derived", "AnandTech 11209 (P4800X QD1 4 KiB)",
             "8.9 us mean end to end less the modeled PCIe path of a local command with MSI "
             "(2.84 us); host software is left inside this figure"),
    Constant("media.optane.write_ns", 6100, "ns", "derived", "Intel P4800X spec (<10 us r/w)",
             "3D XPoint is near-symmetric; taken equal to reads"),
    Constant("media.nand.read_ns", 85000, "ns", "measured", "Lenovo P4500 product guide (spec)",
             "random 4 KiB read; P3700 measured 77.9 us QD1 (AnandTech 11209)"),
    Constant("media.nand.write_ns", 20000, "ns", "measured", "Lenovo P4500 product guide (spec)",
             "random 4 KiB write (into the drive's write cache)"),
)

#: The table by name.
CONSTANTS: Mapping[str, Constant] = MappingProxyType({c.name: c for c in TABLE})

#: Requester profiles and media profiles defined by the table.
REQUESTERS: tuple[str, ...] = tuple(sorted({c.name.split(".")[1] for c in TABLE
                                            if c.name.startswith("requester.")}))
MEDIA: tuple[str, ...] = tuple(sorted({c.name.split(".")[1] for c in TABLE
                                       if c.name.startswith("media.")}))


class Params:
    """The table's values, with optional overrides (for what-if studies and tests).

    ``Params({"chip.PM8536.hop_ns": 200})`` changes one figure; unknown names raise.
    """

    __slots__ = ("_v",)

    def __init__(self, overrides: Mapping[str, float] | None = None) -> None:
        v = {c.name: float(c.value) for c in TABLE}
        for name, value in (overrides or {}).items():
            if name not in v:
                raise IllegalParameter(f"no timing constant named {name!r}; see "
                                       "smartio.hw.timing.constants.TABLE")
            v[name] = float(value)
        self._v = v

    def __getitem__(self, name: str) -> float:
        try:
            return self._v[name]
        except KeyError:
            raise IllegalParameter(f"no timing constant named {name!r}") from None

    def get(self, name: str, default: float) -> float:
        return self._v.get(name, default)

    def chip_hop_ns(self, chip: str) -> float:
        """Latency a chip adds per crossing."""
        return self[f"chip.{chip}.hop_ns"]

    def requester(self, profile: str) -> tuple[int, int]:
        """(outstanding read requests, read request size) of a requester profile."""
        if profile not in REQUESTERS:
            raise IllegalParameter(f"no requester profile {profile!r}; profiles: "
                                   f"{', '.join(REQUESTERS)}")
        return int(self[f"requester.{profile}.tags"]), int(self[f"requester.{profile}.mrrs"])

    def media(self, profile: str) -> tuple[float, float]:
        """(read, write) latency of an NVMe media profile."""
        if profile not in MEDIA:
            raise IllegalParameter(f"no media profile {profile!r}; profiles: {', '.join(MEDIA)}")
        return self[f"media.{profile}.read_ns"], self[f"media.{profile}.write_ns"]


__all__ = ["CONSTANTS", "KINDS", "MEDIA", "REQUESTERS", "TABLE", "Constant", "Params"]
