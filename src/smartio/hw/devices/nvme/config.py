"""Parameters of the NVMe controller model, validated once.

The topology names an endpoint of model ``"nvme"`` (``smartio.hw.models.ENDPOINTS``);
its parameters arrive here as a dict and become a frozen :class:`NvmeConfig`. Limits come
from the BAR0 layout (nvme-reference §1.1): doorbells for ``io_queues + 1`` queue pairs
must fit between 0x1000 and the MSI-X table at 0x2000, and the table holds one 16-byte
entry per vector (``io_queues + 1`` vectors) below the PBA at 0x3000.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from smartio.errors import IllegalParameter
from smartio.hw.units import GiB, parse_size

#: Most I/O queue pairs: 256 MSI-X vectors (admin + I/O) fill 0x2000..0x3000.
MAX_IO_QUEUES = 255
#: Most namespaces the model serves (Identify CNS 02h lists up to 1024 NSIDs).
MAX_NAMESPACES = 1024
LBA_SIZES = (512, 4096)
MEDIA = ("ram", "optane", "nand")


@dataclass(frozen=True)
class NvmeConfig:
    """Validated parameters of one controller (see ``ENDPOINTS["nvme"]``)."""

    namespaces: int = 1
    capacity: int = 1 * GiB  # bytes per namespace
    io_queues: int = 31
    mqes: int = 1023  # 0's based (CAP.MQES)
    mdts: int = 5  # 2^mdts minimum pages per transfer; 0 = no limit
    lba_size: int = 512
    media: str = "ram"
    backing: str = "ram"  # "ram", "file" or a block-device (or image) path
    serial: str = ""
    model: str = "smartio NVMe"
    cmb: int = 0

    @property
    def msix_vectors(self) -> int:
        """MSI-X vectors: one for the admin CQ and one per I/O CQ."""
        return self.io_queues + 1

    @property
    def nlb(self) -> int:
        """Logical blocks per namespace (NSZE)."""
        return self.capacity // self.lba_size

    @classmethod
    def from_params(cls, params: Mapping[str, object], name: str = "nvme") -> NvmeConfig:
        """Validate topology parameters; unknown keys are ignored (the loader checks them).

        Raises:
            IllegalParameter: a value is out of range or of the wrong kind.
        """

        def integer(key: str, default: int, lo: int, hi: int) -> int:
            raw = params.get(key, default)
            try:
                value = parse_size(raw) if isinstance(raw, str) else int(raw)  # type: ignore[call-overload]
            except (TypeError, ValueError) as exc:
                raise IllegalParameter(f"{name}: {key}={raw!r} is not a number") from exc
            if not lo <= value <= hi:
                raise IllegalParameter(f"{name}: {key}={value} not in {lo}..{hi}")
            return value

        d = cls()
        lba_size = integer("lba_size", d.lba_size, 512, 4096)
        if lba_size not in LBA_SIZES:
            raise IllegalParameter(f"{name}: lba_size={lba_size}, expected 512 or 4096")
        capacity = integer("capacity", d.capacity, lba_size, 1 << 52)
        if capacity % lba_size:
            raise IllegalParameter(
                f"{name}: capacity={capacity} is not a multiple of lba_size={lba_size}")
        media = str(params.get("media", d.media))
        if media not in MEDIA:
            raise IllegalParameter(f"{name}: media={media!r}, expected one of {MEDIA}")
        backing = str(params.get("backing", d.backing))
        if not backing:
            raise IllegalParameter(f"{name}: empty backing")
        serial = str(params.get("serial", d.serial)) or f"SIO-{name}"[:20]
        model = str(params.get("model", d.model))
        for key, text, width in (("serial", serial, 20), ("model", model, 40)):
            if not text.isascii() or len(text) > width:
                raise IllegalParameter(f"{name}: {key}={text!r} must be ASCII, <= {width} chars")
        return cls(
            namespaces=integer("namespaces", d.namespaces, 1, MAX_NAMESPACES),
            capacity=capacity,
            io_queues=integer("io_queues", d.io_queues, 1, MAX_IO_QUEUES),
            mqes=integer("mqes", d.mqes, 1, 0xFFFF),
            mdts=integer("mdts", d.mdts, 0, 15),
            lba_size=lba_size,
            media=media,
            backing=backing,
            serial=serial,
            model=model,
            cmb=integer("cmb", d.cmb, 0, 1 << 40),
        )


__all__ = ["LBA_SIZES", "MAX_IO_QUEUES", "MAX_NAMESPACES", "MEDIA", "NvmeConfig"]
