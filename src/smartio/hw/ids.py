"""Small validated value types that cross layer boundaries.

Like cocotbext-pcie's ``PcieId``: frozen, validated on construction, printed in the
canonical form users know from ``lspci`` (``01:00.0``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from smartio.errors import IllegalParameter

_BDF_RE = re.compile(r"^(?:([0-9a-fA-F]{4}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$")


@dataclass(frozen=True, slots=True, order=True)
class BDF:
    """A PCI bus/device/function number in one host's domain (segment 0000)."""

    bus: int
    dev: int
    fn: int

    def __post_init__(self) -> None:
        if not 0 <= self.bus <= 255:
            raise IllegalParameter(f"BDF bus {self.bus} out of range; expected 0..255")
        if not 0 <= self.dev <= 31:
            raise IllegalParameter(f"BDF device {self.dev} out of range; expected 0..31")
        if not 0 <= self.fn <= 7:
            raise IllegalParameter(f"BDF function {self.fn} out of range; expected 0..7")

    @classmethod
    def parse(cls, text: str) -> BDF:
        """Parse ``bb:dd.f`` or ``0000:bb:dd.f``."""
        m = _BDF_RE.match(text.strip())
        if not m:
            raise IllegalParameter(f"not a BDF: {text!r}; expected bb:dd.f such as 01:00.0")
        return cls(int(m.group(2), 16), int(m.group(3), 16), int(m.group(4)))

    @classmethod
    def from_rid(cls, rid: int) -> BDF:
        return cls((rid >> 8) & 0xFF, (rid >> 3) & 0x1F, rid & 0x7)

    @property
    def rid(self) -> int:
        """The 16-bit requester ID."""
        return (self.bus << 8) | (self.dev << 3) | self.fn

    def __str__(self) -> str:
        return f"{self.bus:02x}:{self.dev:02x}.{self.fn}"


#: The requester ID of a host's CPUs (the root complex, 00:00.0 and up by socket).
CPU_BDF = BDF(0, 0, 0)


@dataclass(frozen=True, slots=True)
class Requester:
    """Who issues a memory transaction: a CPU of a host, or a PCIe function of it.

    ``host`` is the host in whose domain the address is interpreted; ``bdf`` the
    requester ID on that host's bus (``00:00.s`` for CPU socket *s*).
    """

    host: str
    bdf: BDF
    cpu: bool = False

    @classmethod
    def cpu_of(cls, host: str, socket: int = 0) -> Requester:
        return cls(host, BDF(0, 0, socket), cpu=True)

    @classmethod
    def function(cls, host: str, bdf: BDF | str) -> Requester:
        return cls(host, BDF.parse(bdf) if isinstance(bdf, str) else bdf, cpu=False)

    def __str__(self) -> str:
        return f"{self.host}:cpu{self.bdf.fn}" if self.cpu else f"{self.host}:{self.bdf}"


__all__ = ["BDF", "CPU_BDF", "Requester"]
