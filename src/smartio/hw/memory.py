"""Shared-memory objects: host RAM, device BARs and fabric tables that every process of a
cluster on this machine can map (DESIGN §3.4).

Each object is a file under ``/dev/shm`` named ``smartio.<cluster>.<what>`` (cluster names
have no dots, so one cluster's prefix never matches another's); files are sparse, so a
2 GiB host costs only the pages that are touched. ``cleanup_cluster`` removes
every object of a cluster (used by teardown and by the next start after a crash).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
from pathlib import Path

from smartio.errors import IllegalParameter

SHM_DIR = Path(os.environ.get("SMARTIO_SHM_DIR", "/dev/shm"))
_CLUSTER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")
ONES_SIZE = 16 << 20  # the all-0xFF object mapped over dead paths, in chunks of this size


def check_cluster_name(name: str) -> str:
    if not _CLUSTER_RE.match(name):
        raise IllegalParameter(f"bad cluster name {name!r}; expected letters, digits, '-', '_'")
    return name


def object_name(cluster: str, what: str) -> str:
    """The file name of a cluster's memory object (``'/'`` becomes ``'+'``)."""
    return f"smartio.{cluster}.{what.replace('/', '+')}"


def object_path(cluster: str, what: str) -> Path:
    return SHM_DIR / object_name(cluster, what)


class MemoryObject:
    """A named shared-memory file: RAM of a host, a BAR of a function, or a table block.

    ``fd`` stays open for mmap; ``view`` is a writable memoryview of the whole object
    (mapped lazily), used by device models and tests to read backing memory directly.
    """

    def __init__(self, cluster: str, what: str, size: int, *, create: bool,
                 fill: int | None = None) -> None:
        self.cluster = cluster
        self.what = what
        self.path = object_path(cluster, what)
        self.size = size
        if create and fill is not None and not self.path.exists():
            self._create_filled(fill)
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        self.fd = os.open(self.path, flags, 0o600)
        st = os.fstat(self.fd)
        if create and st.st_size != size:
            os.ftruncate(self.fd, size)
        elif not create and st.st_size < size:
            os.close(self.fd)
            raise IllegalParameter(f"memory object {self.path} is {st.st_size} bytes; "
                                   f"expected at least {size}")
        self._mm: mmap.mmap | None = None
        self._view: memoryview | None = None
        self.interrupt = False  # an interrupt controller's message window (see translate)

    def _create_filled(self, fill: int) -> None:
        """Create the object already filled, then rename it into place, so that another
        process never sees it half-filled."""
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            chunk = bytes([fill]) * (1 << 20)
            for off in range(0, self.size, len(chunk)):
                os.pwrite(fd, chunk[: min(len(chunk), self.size - off)], off)
        finally:
            os.close(fd)
        os.rename(tmp, self.path)

    @property
    def mm(self) -> mmap.mmap:
        if self._mm is None:
            self._mm = mmap.mmap(self.fd, self.size)
        return self._mm

    @property
    def view(self) -> memoryview:
        """A writable memoryview of the whole object (one per object, made once)."""
        v = self._view
        if v is None:
            v = self._view = memoryview(self.mm)
        return v

    def close(self) -> None:
        if self._view is not None:
            with contextlib.suppress(BufferError):
                self._view.release()
            self._view = None
        if self._mm is not None:
            with contextlib.suppress(BufferError):
                self._mm.close()
            self._mm = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __repr__(self) -> str:
        return f"MemoryObject({self.path.name}, {self.size})"


def list_cluster_objects(cluster: str | None = None) -> list[Path]:
    """Memory objects of one cluster (or of every cluster) present in /dev/shm."""
    prefix = "smartio." if cluster is None else f"smartio.{cluster}."
    if not SHM_DIR.is_dir():
        return []
    return sorted(p for p in SHM_DIR.iterdir() if p.name.startswith(prefix))


def cleanup_cluster(cluster: str) -> list[Path]:
    """Remove every memory object of ``cluster``; returns what was removed."""
    removed = []
    for p in list_cluster_objects(cluster):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
            removed.append(p)
    return removed


__all__ = [
    "ONES_SIZE",
    "SHM_DIR",
    "MemoryObject",
    "check_cluster_name",
    "cleanup_cluster",
    "list_cluster_objects",
    "object_name",
    "object_path",
]
