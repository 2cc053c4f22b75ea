"""Event delivery for SISCI objects: a callback, or a queue to wait on.

SISCI offers both styles for segment events, interrupts and DMA completions: a callback
(``SCI_FLAG_USE_CALLBACK``) or a blocking wait with a timeout (``SCIWaitFor…``). Each object
owns an :class:`EventSink`; the descriptor routes the daemon's events to the right sink.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import Generic, TypeVar

from smartio.errors import Cancelled, Timeout

T = TypeVar("T")


class EventSink(Generic[T]):
    """Delivers events to a callback if one is set, otherwise queues them for ``wait``."""

    def __init__(self, callback: Callable[[T], object] | None = None) -> None:
        self.callback = callback
        self._q: queue.Queue[T | None] = queue.Queue()
        self.closed = False

    def put(self, event: T) -> None:
        if self.callback is not None:
            self.callback(event)
        else:
            self._q.put(event)

    def wait(self, timeout: float | None, what: str) -> T:
        """The next event; Timeout after ``timeout`` s, Cancelled if the object goes away."""
        try:
            ev = self._q.get(timeout=timeout)
        except queue.Empty:
            raise Timeout(f"no {what} within {timeout:g} s") from None
        if ev is None:
            raise Cancelled(f"waiting for {what}: the object was removed")
        return ev

    def pending(self) -> int:
        return self._q.qsize()

    def close(self) -> None:
        self.closed = True
        self._q.put(None)


__all__ = ["EventSink"]
