"""Kernels for the GPU model: the view a kernel gets, launch handles, the named registry.

A kernel is a Python callable that the GPU engine runs as ``kernel(gpu, *args)``, where
``gpu`` is a :class:`KernelContext`: device memory, and loads and stores through the GPU's
own DMA engine to whatever the fabric maps for the GPU (host memory, or a peer's BAR such as
an NVMe doorbell, paper §6.4: "a CUDA kernel can directly access doorbell registers"). A
kernel that returns a generator is *long-running*: the engine advances it one step per
``poll()`` until it finishes, so a kernel can wait for an NVMe completion without stalling
the engine loop.

Named kernels let a host in another process launch work by writing a LAUNCH descriptor into
the GPU's command ring. Every process that runs a GPU engine must import the module that
calls :func:`register_kernel`. The kernel id is ``zlib.crc32`` of the UTF-8 name — stable
across processes and import orders, unlike a registration index or ``hash()``.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Generator
from contextlib import suppress
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from smartio.errors import IllegalParameter, NotFound
from smartio.hw.devices.base import DeviceContext

Kernel = Callable[..., Any]
_REGISTRY: dict[int, tuple[str, Kernel]] = {}


def kernel_id(name: str) -> int:
    """The id a LAUNCH descriptor uses for kernel ``name`` (CRC-32 of the UTF-8 name)."""
    return zlib.crc32(name.encode())


def register_kernel(name: str, fn: Kernel) -> int:
    """Make ``fn`` launchable by name; returns its kernel id.

    Registering the same function under the same name again is a no-op.

    Raises:
        IllegalParameter: the name is empty, its id is 0 (reserved), or the name or its
            id is already taken by another kernel.
    """
    if not name:
        raise IllegalParameter("a kernel needs a name")
    kid = kernel_id(name)
    if kid == 0:
        raise IllegalParameter(f"kernel name {name!r} hashes to the reserved id 0")
    have = _REGISTRY.get(kid)
    if have is not None:
        if have == (name, fn):
            return kid
        raise IllegalParameter(f"kernel id {kid:#010x} of {name!r} is taken by {have[0]!r}")
    _REGISTRY[kid] = (name, fn)
    return kid


def unregister_kernel(name: str) -> None:
    """Forget kernel ``name``.

    Raises:
        NotFound: no kernel of that name is registered.
    """
    kid = kernel_id(name)
    if kid not in _REGISTRY or _REGISTRY[kid][0] != name:
        raise NotFound(f"no kernel named {name!r}")
    del _REGISTRY[kid]


def lookup_kernel(kid: int) -> tuple[str, Kernel] | None:
    """The ``(name, fn)`` registered under id ``kid``, or None."""
    return _REGISTRY.get(kid)


class KernelContext:
    """What a running kernel sees of the GPU: device memory and its DMA engine.

    ``load``/``store`` are bus-master DMA by the GPU: they fail (None/False) when Bus
    Master Enable is clear, when the range reaches past the DMA mask (paper §4.3), or when
    the fabric does not resolve the address.
    """

    __slots__ = ("_ctx", "_limit", "mem")

    def __init__(self, ctx: DeviceContext, mem: memoryview, dma_bits: int) -> None:
        self._ctx = ctx
        self._limit = 1 << dma_bits
        self.mem = mem

    def dma_ok(self, addr: int, size: int) -> bool:
        """Whether the GPU may issue a DMA to ``[addr, addr + size)`` at all."""
        return 0 <= addr and addr + size <= self._limit and self._ctx.bus_master()

    def load(self, bus_addr: int, n: int) -> bytes | None:
        """Read ``n`` bytes at ``bus_addr``; None if the DMA failed."""
        if not self.dma_ok(bus_addr, n):
            return None
        return self._ctx.dma_read(bus_addr, n)

    def load_into(self, bus_addr: int, dest: memoryview) -> bool:
        """Read into ``dest`` (e.g. a slice of ``mem``); False if the DMA failed."""
        if not self.dma_ok(bus_addr, len(dest)):
            return False
        return self._ctx.dma_read_into(bus_addr, dest)

    def store(self, bus_addr: int, data: bytes | bytearray | memoryview) -> bool:
        """Write ``data`` at ``bus_addr`` (e.g. a peer's doorbell); False if it failed."""
        if not self.dma_ok(bus_addr, len(data)):
            return False
        return self._ctx.dma_write(bus_addr, data)

    def now_ns(self) -> int:
        return self._ctx.now_ns()


class LaunchState(Enum):
    QUEUED = "queued"
    RUNNING = "running"  # a long-running (generator) kernel between steps
    DONE = "done"
    FAILED = "failed"  # the kernel raised; ``error`` says what
    CANCELLED = "cancelled"  # dropped by a reset or close before it finished


@dataclass
class Launch:
    """One launch of a kernel; the handle :meth:`GpuModel.launch` returns."""

    kernel: Kernel
    args: tuple[Any, ...]
    name: str = ""
    kid: int = 0  # registered id, 0 for an anonymous in-process kernel
    state: LaunchState = LaunchState.QUEUED
    result: Any = None
    error: str | None = None
    gen: Generator[Any, Any, Any] | None = field(default=None, repr=False)

    @property
    def done(self) -> bool:
        return self.state in (LaunchState.DONE, LaunchState.FAILED, LaunchState.CANCELLED)

    def step(self, gpu: KernelContext) -> bool:
        """Start or advance the kernel; True once it has finished (or failed).

        A kernel's exception is the launch's failure, recorded here; it never escapes.
        """
        try:
            if self.gen is None:
                out = self.kernel(gpu, *self.args)
                if not isinstance(out, Generator):
                    self.result, self.state = out, LaunchState.DONE
                    return True
                self.gen, self.state = out, LaunchState.RUNNING
            next(self.gen)  # a long-running kernel's first step runs at launch
            return False
        except StopIteration as stop:
            self.result, self.state, self.gen = stop.value, LaunchState.DONE, None
            return True
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            self.state, self.gen = LaunchState.FAILED, None
            return True

    def cancel(self) -> None:
        if self.gen is not None:
            gen, self.gen = self.gen, None
            with suppress(Exception):  # a kernel's cleanup failing must not escape a reset
                gen.close()
        if not self.done:
            self.state = LaunchState.CANCELLED


__all__ = [
    "Kernel",
    "KernelContext",
    "Launch",
    "LaunchState",
    "kernel_id",
    "lookup_kernel",
    "register_kernel",
    "unregister_kernel",
]
