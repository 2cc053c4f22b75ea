"""Link rates and TLP overheads: formulas 1-5 of docs/timing.md (pcie-timing.md §5).

A link of generation G and W lanes carries ``GT/s(G) x W x enc(G) / 8`` bytes per ns in
each direction (8b/10b for Gen1/2, 128b/130b for Gen3-5, 242b/256b for Gen6). Ack and
UpdateFC DLLPs and SKIP ordered sets take their share (the spec's recommended update
rates, indexed by generation, width and MPS), leaving the rate usable by TLPs. Each TLP
then carries 8 B of framing plus its header: a 64-bit memory write or read request costs
24 B, a completion with data 20 B. Requests are split at MPS (writes) or MRRS (reads) and
never cross a 4 KiB boundary.

Rates are in GB/s, 10**9 bytes per second, the paper's unit; numerically that is bytes
per nanosecond, the unit the rest of the model computes in.
"""

from __future__ import annotations

from dataclasses import dataclass

from smartio.errors import IllegalParameter
from smartio.hw.timing.constants import Params
from smartio.hw.units import is_power_of_two

#: Transfer rate per lane, GT/s, by generation.
GT_PER_S: dict[int, float] = {1: 2.5, 2: 5.0, 3: 8.0, 4: 16.0, 5: 32.0, 6: 64.0}
WIDTHS = (1, 2, 4, 8, 16, 32)
PAYLOAD_SIZES = (128, 256, 512, 1024, 2048, 4096)
BOUNDARY = 4096  # PCIe: a request must not cross a 4 KiB address boundary

# Ack latency limits and UpdateFC guidelines in bytes between DLLPs, PCIe Base Spec 5.0
# Tables 3-7..3-9 and 2-46..2-48 (as tabulated by pcie-bench/pcie-model). Rows are widths
# x1..x32, columns MPS 128..4096. Gen3 and later share one table.
_UPDATE_GEN1 = (
    (237, 416, 559, 1071, 2095, 4143),
    (128, 217, 289, 545, 1057, 2081),
    (73, 118, 154, 282, 538, 1050),
    (67, 107, 86, 150, 278, 534),
    (48, 72, 86, 150, 278, 534),
    (33, 45, 52, 84, 148, 276),
)
_UPDATE_GEN2 = (
    (288, 467, 610, 1122, 2146, 4194),
    (179, 268, 340, 596, 1108, 2132),
    (124, 169, 205, 333, 589, 1101),
    (118, 158, 137, 201, 329, 585),
    (99, 123, 137, 201, 329, 585),
    (84, 96, 103, 135, 199, 237),
)
_UPDATE_GEN3 = (
    (333, 512, 655, 1167, 2191, 4239),
    (224, 313, 385, 641, 1153, 2177),
    (169, 214, 250, 378, 634, 1146),
    (163, 203, 182, 246, 374, 630),
    (144, 168, 182, 246, 374, 630),
    (129, 141, 148, 180, 244, 372),
)


def encoding(gen: int) -> float:
    """Line-code efficiency: 8b/10b, 128b/130b or 242b/256b (Gen6 FLIT, an approximation)."""
    _check_gen(gen)
    if gen <= 2:
        return 8 / 10
    if gen <= 5:
        return 128 / 130
    return 242 / 256


def raw_gb_s(gen: int, width: int) -> float:
    """Raw bandwidth per direction after line coding (formula 1), GB/s."""
    _check_width(width)
    return GT_PER_S[gen] * width * encoding(gen) / 8


def update_interval_b(gen: int, width: int, mps: int) -> int:
    """Bytes between Ack (and between UpdateFC) DLLPs the spec recommends."""
    _check_gen(gen)
    _check_width(width)
    _check_payload(mps, "MPS")
    table = _UPDATE_GEN1 if gen == 1 else _UPDATE_GEN2 if gen == 2 else _UPDATE_GEN3
    return table[WIDTHS.index(width)][PAYLOAD_SIZES.index(mps)]


def usable_gb_s(gen: int, width: int, mps: int, p: Params | None = None) -> float:
    """Bandwidth left for TLPs after Ack, UpdateFC and SKIP overhead (formula 2), GB/s."""
    p = p or Params()
    interval = update_interval_b(gen, width, mps)
    dllp = p["tlp.update_dllp_b"]
    overhead = 2 * dllp / interval + p["link.skip_b"] / p["link.skip_interval_b"]
    return raw_gb_s(gen, width) * (1 - overhead)


def mwr_overhead_b(p: Params) -> float:
    """Wire bytes a memory write TLP adds to its payload (64-bit address)."""
    return p["tlp.dllp_b"] + p["tlp.hdr_b"] + p["tlp.mem_addr64_b"]


def mrd_b(p: Params) -> float:
    """Wire bytes of a memory read request (64-bit address, no payload)."""
    return p["tlp.dllp_b"] + p["tlp.hdr_b"] + p["tlp.mem_addr64_b"]


def cpld_overhead_b(p: Params) -> float:
    """Wire bytes a completion with data adds to its payload."""
    return p["tlp.dllp_b"] + p["tlp.hdr_b"] + p["tlp.cpl_b"]


def tlp_count(addr: int, size: int, max_bytes: int) -> int:
    """TLPs needed to move ``size`` bytes from ``addr`` with at most ``max_bytes`` each.

    Requesters split on naturally aligned ``max_bytes`` boundaries (so an unaligned start
    costs one more TLP) and, since ``max_bytes`` is a power of two no larger than 4 KiB,
    never across a 4 KiB boundary.
    """
    if size <= 0:
        return 0
    _check_payload(max_bytes, "TLP size", low=4)
    return (addr + size - 1) // max_bytes - addr // max_bytes + 1


@dataclass(frozen=True, slots=True)
class LinkRates:
    """What one link carries per direction, GB/s."""

    gen: int
    width: int
    mps: int
    raw_gb_s: float  # after line coding (formula 1)
    usable_gb_s: float  # left for TLPs after DLLPs and SKIPs (formula 2)
    write_gb_s: float  # payload plateau of MPS-sized memory writes (formula 4)
    read_gb_s: float  # payload plateau of MPS-sized completions (formula 5)

    @property
    def encoding(self) -> str:
        """The line code's name."""
        return "8b/10b" if self.gen <= 2 else "128b/130b" if self.gen <= 5 else "242b/256b"


def link_rates(gen: int, width: int, mps: int = 256, p: Params | None = None) -> LinkRates:
    """Raw, usable, write-plateau and read-plateau rates of a link.

    Raises:
        IllegalParameter: an unknown generation, width or MPS.
    """
    p = p or Params()
    usable = usable_gb_s(gen, width, mps, p)
    write = usable * mps / (mps + mwr_overhead_b(p))
    read = usable * mps / (mps + cpld_overhead_b(p))
    return LinkRates(gen, width, mps, raw_gb_s(gen, width), usable, write, read)


def _check_gen(gen: int) -> None:
    if gen not in GT_PER_S:
        raise IllegalParameter(f"PCIe generation {gen} unknown; expected 1-6")


def _check_width(width: int) -> None:
    if width not in WIDTHS:
        raise IllegalParameter(f"link width x{width} unknown; expected one of "
                               f"{', '.join(f'x{w}' for w in WIDTHS)}")


def _check_payload(n: int, what: str, low: int = 128) -> None:
    if not (is_power_of_two(n) and low <= n <= BOUNDARY):
        raise IllegalParameter(f"{what} {n} is not a power of two in {low}..{BOUNDARY}")


__all__ = [
    "BOUNDARY",
    "GT_PER_S",
    "PAYLOAD_SIZES",
    "WIDTHS",
    "LinkRates",
    "cpld_overhead_b",
    "encoding",
    "link_rates",
    "mrd_b",
    "mwr_overhead_b",
    "raw_gb_s",
    "tlp_count",
    "update_interval_b",
    "usable_gb_s",
]
