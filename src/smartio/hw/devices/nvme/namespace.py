"""Namespaces and the storage behind them (NVMe 1.4 §6; nvme-reference §1.4).

``backing`` selects where the logical blocks live:

* ``"ram"`` — one anonymous ``mmap`` per namespace (pages are zero until written);
* ``"file"`` — ``<data_dir>/<function name>-ns<N>.img``, created sparse at the capacity;
  the data survives a restart of the controller, Flush does ``msync`` + ``fsync``;
* any other string — the path of a block device (or an existing image), shared by the
  namespaces back to back (namespace N starts at ``(N-1) * capacity``).

Deallocated blocks read as zeros (Identify Namespace DLFEAT = 001b), so Dataset
Management deallocate and Write Zeroes simply zero the range.
"""

from __future__ import annotations

import logging
import mmap
import os
from pathlib import Path

from smartio.errors import IllegalParameter
from smartio.hw.devices.nvme.config import NvmeConfig
from smartio.hw.devices.nvme.media import PROFILES, Timeline

log = logging.getLogger(__name__)

_ZEROS = bytes(256 * 1024)


class Namespace:
    """One active namespace: ``nsze`` blocks of ``lba_size`` bytes in ``view``."""

    def __init__(self, nsid: int, cfg: NvmeConfig, view: memoryview, store: Backing) -> None:
        self.nsid = nsid
        self.lba_size = cfg.lba_size
        self.lbads = cfg.lba_size.bit_length() - 1
        self.nsze = cfg.nlb
        self.view = view
        self.timeline = Timeline(PROFILES[cfg.media])
        self._store = store
        # RAM namespaces are sparse like a RAM disk's fresh pages: a read of a 4 KiB page
        # never written is served from zeros without touching (faulting in) the mapping.
        self.written: bytearray | None = (
            bytearray((len(view) + 4095) >> 12) if store.kind == "ram" else None)

    def mark_written(self, start: int, end: int) -> None:
        """Record that bytes ``[start, end)`` of the namespace hold written data."""
        w = self.written
        if w is not None:
            for page in range(start >> 12, ((end - 1) >> 12) + 1):
                w[page] = 1

    def untouched(self, start: int, end: int) -> bool:
        """True when no byte of ``[start, end)`` was ever written (reads are zeros)."""
        w = self.written
        if w is None:
            return False
        first, last = start >> 12, (end - 1) >> 12
        return not w[first] and (first == last or not any(w[first + 1: last + 1]))

    def in_range(self, slba: int, nlb: int) -> bool:
        """Whether blocks ``slba .. slba+nlb-1`` exist (Python ints: no 64-bit wrap)."""
        return slba + nlb <= self.nsze

    def blocks(self, slba: int, nlb: int) -> memoryview:
        """The bytes of a block range (caller checked :meth:`in_range`)."""
        return self.view[slba << self.lbads: (slba + nlb) << self.lbads]

    def zero(self, slba: int, nlb: int) -> None:
        """Deallocate / write zeroes: the range reads back as zeros."""
        pos = slba << self.lbads
        end = (slba + nlb) << self.lbads
        while pos < end:
            n = min(len(_ZEROS), end - pos)
            self.view[pos: pos + n] = _ZEROS[:n]
            pos += n

    def flush(self) -> None:
        """Make written data durable (no-op for RAM)."""
        self._store.flush()


class Backing:
    """The mmaps and file descriptors under a controller's namespaces."""

    def __init__(self, cfg: NvmeConfig, name: str, data_dir: Path | None) -> None:
        self.kind = cfg.backing
        self._maps: list[mmap.mmap] = []
        self._fds: list[int] = []
        self._views: list[memoryview] = []
        self.namespaces: dict[int, Namespace] = {}
        cap = cfg.capacity
        ns_views: list[memoryview] = []
        try:
            if self.kind == "ram":
                for _ in range(cfg.namespaces):
                    ns_views.append(self._add_map(mmap.mmap(-1, cap)))
            elif self.kind == "file":
                if data_dir is None:
                    raise IllegalParameter(f"{name}: backing='file' needs a data directory")
                data_dir.mkdir(parents=True, exist_ok=True)
                for n in range(1, cfg.namespaces + 1):
                    path = data_dir / f"{name}-ns{n}.img"
                    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
                    self._fds.append(fd)
                    if os.fstat(fd).st_size < cap:
                        os.ftruncate(fd, cap)  # sparse: no blocks allocated
                    ns_views.append(self._add_map(mmap.mmap(fd, cap)))
            else:
                fd = self._open_device(Path(self.kind), name, cap * cfg.namespaces)
                whole = self._add_map(mmap.mmap(fd, cap * cfg.namespaces))
                for n in range(cfg.namespaces):
                    ns_views.append(whole[n * cap: (n + 1) * cap])
                    self._views.append(ns_views[-1])
        except OSError as exc:
            self.close()
            raise IllegalParameter(f"{name}: backing {self.kind!r}: {exc}") from exc
        except IllegalParameter:
            self.close()
            raise
        for n, view in enumerate(ns_views, start=1):
            self.namespaces[n] = Namespace(n, cfg, view, self)
        log.info("nvme_backing: %s %d namespace(s) of %d bytes on %s", name, cfg.namespaces,
                 cap, self.kind)

    def _add_map(self, mm: mmap.mmap) -> memoryview:
        self._maps.append(mm)
        self._views.append(memoryview(mm))
        return self._views[-1]

    def _open_device(self, path: Path, name: str, need: int) -> int:
        fd = os.open(path, os.O_RDWR)
        self._fds.append(fd)
        size = os.lseek(fd, 0, os.SEEK_END)
        if size < need:
            raise IllegalParameter(f"{name}: {path} holds {size} bytes, namespaces need {need}")
        return fd

    def flush(self) -> None:
        """msync every file mapping and fsync its descriptor."""
        if self.kind == "ram":
            return
        for mm in self._maps:
            mm.flush()
        for fd in self._fds:
            os.fsync(fd)

    def close(self) -> None:
        """Flush, then release views, mappings and descriptors (idempotent)."""
        try:
            self.flush()
        except (OSError, ValueError) as exc:
            log.warning("nvme_err_flush: %s", exc)
        for v in reversed(self._views):
            try:
                v.release()
            except BufferError:
                log.warning("nvme_err_close_busy: a namespace view is still in use")
        self._views.clear()
        for mm in self._maps:
            try:
                mm.close()
            except BufferError:
                log.warning("nvme_err_close_busy: a namespace mapping is still exported")
        self._maps.clear()
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()


__all__ = ["Backing", "Namespace"]
