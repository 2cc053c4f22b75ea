"""Plain and data interrupts (SCICreate[Data]Interrupt, SCIConnect…, SCITrigger…, SCIWaitFor…).

A local interrupt has a number on its host; a program on any host connects to it by
(node id, number) and triggers it, optionally with a payload (data interrupts, up to
``MAX_PAYLOAD`` bytes). Delivery runs the owner's callback or wakes ``wait``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from smartio.cluster import messages as m
from smartio.errors import IllegalOperation, IllegalParameter
from smartio.sisci.events import EventSink

if TYPE_CHECKING:
    from smartio.sisci.descriptor import Descriptor

MAX_PAYLOAD = 1 << 20


class LocalInterrupt:
    """An interrupt this program receives."""

    def __init__(self, sd: Descriptor, intno: int, data: bool,
                 callback: Callable[[bytes], object] | None) -> None:
        self.sd = sd
        self.intno = intno
        self.data = data
        self.events: EventSink[bytes] = EventSink(callback)
        self.removed = False

    def wait(self, timeout: float | None = None) -> bytes:
        """Wait for the next trigger; returns its payload (empty for plain interrupts)."""
        return self.events.wait(timeout, f"interrupt {self.intno}")

    def remove(self) -> None:
        if self.removed:
            raise IllegalOperation(f"interrupt {self.intno} was already removed")
        self.sd.client.call(m.RemoveInterrupt(client=self.sd.client.id, intno=self.intno))
        self.removed = True
        self.events.close()
        self.sd._forget(self)

    def __enter__(self) -> LocalInterrupt:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.removed:
            self.remove()


class RemoteInterrupt:
    """A connection to an interrupt of some host, to trigger it."""

    def __init__(self, sd: Descriptor, conn: int, node_id: int, intno: int, data: bool) -> None:
        self.sd = sd
        self.conn = conn
        self.node_id = node_id
        self.intno = intno
        self.data = data
        self.connected = True

    def trigger(self, payload: bytes = b"") -> None:
        """Raise the interrupt (with ``payload`` for a data interrupt)."""
        if not self.connected:
            raise IllegalOperation(f"interrupt {self.intno} is disconnected")
        if len(payload) > MAX_PAYLOAD:
            raise IllegalParameter(f"data interrupt payload of {len(payload)} bytes; at most "
                                   f"{MAX_PAYLOAD}")
        self.sd.client.call(m.TriggerInterrupt(client=self.sd.client.id, conn=self.conn,
                                               payload=bytes(payload)))

    def disconnect(self) -> None:
        if not self.connected:
            raise IllegalOperation(f"interrupt {self.intno} is already disconnected")
        self.sd.client.call(m.DisconnectInterrupt(client=self.sd.client.id, conn=self.conn))
        self.connected = False
        self.sd._forget(self)

    def __enter__(self) -> RemoteInterrupt:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.connected:
            self.disconnect()


__all__ = ["MAX_PAYLOAD", "LocalInterrupt", "RemoteInterrupt"]
