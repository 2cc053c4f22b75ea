"""DMA queues (SCICreateDMAQueue, SCIStartDmaTransfer[Vec], SCIWaitForDMAQueue).

Transfers between a local segment and a remote segment, in either direction, are executed
by the adapter's emulated DMA engine in the host daemon — the caller only submits
descriptors, as a program does through the SISCI driver — and complete with an event that
runs a callback or wakes ``wait``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from smartio.cluster import messages as m
from smartio.errors import IllegalOperation, Timeout

if TYPE_CHECKING:
    from smartio.sisci.descriptor import Descriptor
    from smartio.sisci.segment import LocalSegment, RemoteSegment


@dataclass(frozen=True)
class DmaCompletion:
    transfer: int
    ok: bool
    status: str
    bytes: int


class DmaQueue:
    """A DMA queue on one adapter."""

    def __init__(self, sd: Descriptor, qid: int, adapter: int, max_entries: int) -> None:
        self.sd = sd
        self.id = qid
        self.adapter = adapter
        self.max_entries = max_entries
        self._cond = threading.Condition()
        self._outstanding: dict[int, Callable[[DmaCompletion], object] | None] = {}
        self._done: list[DmaCompletion] = []
        self.removed = False

    def start_transfer(self, local: LocalSegment, local_offset: int, remote: RemoteSegment,
                       remote_offset: int, size: int, *, read: bool = False,
                       callback: Callable[[DmaCompletion], object] | None = None) -> int:
        """Copy ``size`` bytes local -> remote (or remote -> local with ``read``)."""
        return self.start_vec([(local, local_offset, remote, remote_offset, size)], read=read,
                              callback=callback)

    def start_vec(self, vecs: list[tuple[LocalSegment, int, RemoteSegment, int, int]], *,
                  read: bool = False,
                  callback: Callable[[DmaCompletion], object] | None = None) -> int:
        """Submit a vectored transfer; one completion for all of it."""
        if self.removed:
            raise IllegalOperation(f"DMA queue {self.id} was removed")
        body = [m.DmaVec(segment=ls.id, local_offset=lo, conn=rs.conn, remote_offset=ro,
                         size=n, read=read) for ls, lo, rs, ro, n in vecs]
        with self._cond:
            data = self.sd.client.call(m.StartDma(client=self.sd.client.id, queue=self.id,
                                                  vecs=body))
            tid = int(data["transfer"])
            self._outstanding[tid] = callback
        return tid

    def _complete(self, ev: m.DmaEvent) -> None:
        done = DmaCompletion(ev.transfer, ev.ok, ev.status, ev.bytes)
        with self._cond:
            cb = self._outstanding.pop(ev.transfer, None)
            self._done.append(done)
            self._cond.notify_all()
        if cb is not None:
            cb(done)

    @property
    def outstanding(self) -> int:
        with self._cond:
            return len(self._outstanding)

    def wait(self, timeout: float | None = None) -> list[DmaCompletion]:
        """Wait until every submitted transfer completed; returns their completions."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._outstanding:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise Timeout(f"DMA queue {self.id}: {len(self._outstanding)} transfer(s) "
                                  f"still running after {timeout:g} s")
                self._cond.wait(left)
            done, self._done = self._done, []
        return done

    def remove(self) -> None:
        if self.removed:
            raise IllegalOperation(f"DMA queue {self.id} was already removed")
        self.sd.client.call(m.RemoveDmaQueue(client=self.sd.client.id, queue=self.id))
        self.removed = True
        self.sd._forget(self)

    def __enter__(self) -> DmaQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.removed:
            self.remove()


__all__ = ["DmaCompletion", "DmaQueue"]
