"""Asynchronous Event Requests (NVMe 1.4 §5.2, nvme-reference §1.3, §1.7).

An AER command is held — no completion — until an event occurs; at most AERL + 1 may be
outstanding, one more completes at once with AER Limit Exceeded (1/05h). When an event
of a type is reported, that type is masked until the host reads the associated log page
(Get Log Page with RAE = 0), as QEMU's ``aer_mask`` does. A controller reset drops held
requests and queued events without completing them.
"""

from __future__ import annotations

import logging
from collections import deque
from enum import IntEnum

from smartio.hw.devices.nvme.queues import Command

log = logging.getLogger(__name__)

AERL = 3  # Identify Controller byte 259, 0's based: four outstanding requests
MAX_QUEUED = 16


class EventType(IntEnum):
    ERROR = 0
    SMART = 1
    NOTICE = 2


class ErrorInfo(IntEnum):
    INVALID_DOORBELL_REGISTER = 0x00
    INVALID_DOORBELL_VALUE = 0x01


LOG_FOR_TYPE = {EventType.ERROR: 0x01, EventType.SMART: 0x02, EventType.NOTICE: 0x04}


class AsyncEvents:
    """Held AER commands, queued events and the per-type mask."""

    def __init__(self) -> None:
        self.waiting: deque[Command] = deque()
        self.queued: deque[tuple[int, int, int]] = deque()
        self.masked: set[int] = set()

    def request(self, cmd: Command) -> bool:
        """Hold an AER; False when AERL + 1 are already outstanding."""
        if len(self.waiting) > AERL:
            return False
        self.waiting.append(cmd)
        return True

    def post(self, etype: EventType, info: int) -> None:
        """Queue an event for the next free AER."""
        if len(self.queued) < MAX_QUEUED:
            self.queued.append((int(etype), info, LOG_FOR_TYPE[etype]))
        log.debug("nvme_aer_event: type=%d info=%#x", etype, info)

    def log_read(self, lid: int) -> None:
        """The host read log ``lid`` with RAE = 0: the page covers the queued events of
        its type, which are dropped, and the type is unmasked (QEMU ``nvme_clear_events``).
        """
        for etype, log_id in LOG_FOR_TYPE.items():
            if log_id == lid:
                self.masked.discard(int(etype))
                self.queued = deque(e for e in self.queued if e[0] != etype)

    def due(self) -> list[tuple[Command, int]]:
        """Pair held AERs with unmasked events: (command, CQE DW0) to complete now."""
        out: list[tuple[Command, int]] = []
        while self.waiting and self.queued:
            for i, (etype, info, lid) in enumerate(self.queued):
                if etype not in self.masked:
                    del self.queued[i]
                    self.masked.add(etype)
                    out.append((self.waiting.popleft(), etype | info << 8 | lid << 16))
                    break
            else:
                break
        return out

    def clear(self) -> None:
        self.waiting.clear()
        self.queued.clear()
        self.masked.clear()


__all__ = ["AERL", "AsyncEvents", "ErrorInfo", "EventType"]
