"""What a command handler returns, and the dispatch-table entry type (STYLE §8).

A handler is ``handler(ctrl, cmd) -> Outcome``. The tables in :mod:`.admin` and
:mod:`.nvm` map opcode → :class:`CommandSpec`; the controller dispatches through them
(an opcode missing from a table is Invalid Opcode), and the same tables feed Identify
OACS/ONCS and the Commands Supported and Effects log.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from smartio.hw.devices.nvme.prp import map_prp, read_host, write_host
from smartio.hw.devices.nvme.queues import Command
from smartio.hw.devices.nvme.status import Status, fail

if TYPE_CHECKING:
    from smartio.hw.devices.nvme.controller import NvmeController


class Outcome(NamedTuple):
    """A handler's result: status (DNR included), CQE DW0, and when it may be posted."""

    status: int = 0
    dw0: int = 0
    ready_ns: int = 0  # 0: post at once; else hold until ctx.now_ns() reaches it
    held: bool = False  # no completion now (Asynchronous Event Request)


OK = Outcome()
HELD = Outcome(held=True)

Handler = Callable[["NvmeController", Command], Outcome]


def refuse(status: Status) -> Outcome:
    """A refused command: the status with DNR where a retry cannot help."""
    return Outcome(fail(status))


@dataclass(frozen=True)
class CommandSpec:
    opcode: int
    name: str
    handler: Handler
    effects: int = 0  # Commands Supported and Effects bits (CSUPP is implied)
    oacs_bit: int | None = None  # Identify OACS bit this opcode sets (admin)
    oncs_bit: int | None = None  # Identify ONCS bit this opcode sets (NVM)


def table(*specs: CommandSpec) -> dict[int, CommandSpec]:
    return {s.opcode: s for s in specs}


def capability_bits(specs: dict[int, CommandSpec], which: str) -> int:
    """OACS (``which="oacs_bit"``) or ONCS (``"oncs_bit"``) from a dispatch table."""
    bits = 0
    for s in specs.values():
        bit = getattr(s, which)
        if bit is not None:
            bits |= 1 << bit
    return bits


def send(ctrl: NvmeController, cmd: Command, data: bytes, length: int | None = None) -> Outcome:
    """DMA ``data`` (or its first ``length`` bytes) to the command's PRPs."""
    n = len(data) if length is None else length
    segs = map_prp(ctrl.ctx, cmd.prp1, cmd.prp2, n, ctrl.page_size)
    if isinstance(segs, int):
        return Outcome(segs)
    if not write_host(ctrl.ctx, segs, memoryview(data)[:n]):
        return Outcome(Status.DATA_TRANSFER_ERROR.value)
    return OK


def receive(ctrl: NvmeController, cmd: Command, length: int) -> bytearray | int:
    """DMA ``length`` bytes from the command's PRPs; a failing status (int) otherwise."""
    segs = map_prp(ctrl.ctx, cmd.prp1, cmd.prp2, length, ctrl.page_size)
    if isinstance(segs, int):
        return segs
    buf = bytearray(length)
    if not read_host(ctrl.ctx, segs, memoryview(buf)):
        return Status.DATA_TRANSFER_ERROR.value
    return buf


__all__ = [
    "HELD", "OK", "CommandSpec", "Handler", "Outcome", "capability_bits", "receive", "refuse",
    "send", "table",
]
