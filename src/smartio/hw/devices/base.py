"""The contract between a device model and the engine that runs it.

A model is plain, synchronous Python: the engine (a process per device, or a test) calls
``poll()`` in a loop; ``poll`` looks at the BAR registers and doorbells the host may have
written, does the work, and returns whether it did anything (so the engine knows when to
back off). Everything a model may touch goes through :class:`DeviceContext`:

* ``bar(i)`` — a writable memoryview of BAR *i* (shared memory the host's CPU maps);
* ``config`` — the function's configuration space (command register, MSI-X enable, …);
* ``dma_read`` / ``dma_write`` — bus-master DMA through the fabric translation: refused
  when Bus Master Enable is clear or the address is beyond the DMA mask, and failing like
  PCIe does when the path does not resolve (the caller reports a data-transfer error);
* ``interrupt(vector)`` — an MSI-X (or MSI) message, posted as a memory write to the
  programmed address through the fabric;
* ``now_ns()`` — the clock used for compute-then-hold latencies.

Hardware errors are data: a failed DMA returns False, never raises.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class DeviceContext(Protocol):
    """What the engine gives a model (required operations)."""

    name: str  # function name in the topology, e.g. "nvme0"

    def bar(self, index: int) -> memoryview: ...

    def dma_read(self, addr: int, size: int) -> bytes | None:
        """Read ``size`` bytes at bus address ``addr``; None if the DMA failed."""
        ...

    def dma_read_into(self, addr: int, dest: memoryview) -> bool:
        """Read into ``dest`` (e.g. a namespace's backing memory); False if it failed."""
        ...

    def dma_write(self, addr: int, data: bytes | bytearray | memoryview) -> bool:
        """Write at bus address ``addr``; False if any part of the DMA failed."""
        ...

    def interrupt(self, vector: int) -> None:
        """Signal MSI-X/MSI ``vector`` (ignored when interrupts are disabled or masked)."""
        ...

    def bus_master(self) -> bool:
        """Whether Bus Master Enable is set in the command register."""
        ...

    def now_ns(self) -> int: ...


class DeviceModel(Protocol):
    """What an engine needs of a model."""

    def poll(self) -> bool:
        """Process pending work; True when something was done."""
        ...

    def reset(self) -> None:
        """Function-level reset: back to the power-on state (registers, queues)."""
        ...

    def close(self) -> None:
        """Flush and release backing resources (files) before the engine exits."""
        ...

    # Optional: ``busy() -> bool`` — work is pending on a timer (e.g. completions held for
    # their media latency), so the engine keeps polling instead of sleeping.


__all__ = ["DeviceContext", "DeviceModel"]
