"""NTB adapters: the address look-up table and the requester-ID look-up table (paper §3.3, §8.6).

An adapter's BAR2 is its window into other hosts. The window is divided into equal
*slices*, one per address-LUT entry; an entry maps its slice onto an address in a peer
host's domain, reached through the peer's adapter. As in PLX silicon the translated base
replaces the upper address bits, so it must be aligned to the slice size. Reads need their
completions routed back, so every requester that sends traffic out through an adapter must
hold an entry in that adapter's requester-ID LUT (two reserved per CPU, §8.6). Operation
names follow ``include/linux/ntb.h``: ``peer_mw_set_trans`` programs an outbound LUT entry.
"""

from __future__ import annotations

from dataclasses import dataclass

from smartio.errors import IllegalParameter, MaxEntries, OutOfRange
from smartio.hw.state import MC_FLAG, MC_GROUPS, VALID, AdapterLayout, FabricState
from smartio.hw.topology.schema import AdapterSpec


@dataclass(frozen=True)
class LutEntry:
    index: int
    peer: str  # adapter id "host:adapter" whose host domain the address lives in
    addr: int
    group: int = -1  # a multicast group instead of a peer (peer is then "")


class NtbAdapter:
    """One NTB adapter's tables, backed by the cluster's shared fabric state."""

    def __init__(self, state: FabricState, spec: AdapterSpec, layout: AdapterLayout,
                 window_base: int, adapter_ids: list[str], link_indices: list[int]) -> None:
        self.state = state
        self.spec = spec
        self.layout = layout
        self.id = spec.id
        self.host = spec.host
        self.window_base = window_base
        self.window_size = spec.window
        self.slice_size = spec.window // spec.lut_entries
        self._ids = adapter_ids
        self.link_indices = link_indices  # topology links plugged into this adapter's ports

    # -- address LUT (outbound memory windows) ------------------------------------------

    def peer_mw_set_trans(self, index: int, peer: str, addr: int) -> None:
        """Map slice ``index`` of this adapter's window onto ``addr`` in ``peer``'s host."""
        self._check_index(index)
        if peer not in self._ids:
            raise IllegalParameter(f"{self.id}: no adapter {peer!r} to map through")
        if peer == self.id:
            raise IllegalParameter(f"{self.id}: an adapter cannot map onto itself")
        if addr % self.slice_size or addr < 0:
            raise IllegalParameter(
                f"{self.id}: LUT target {addr:#x} not aligned to the slice size "
                f"{self.slice_size:#x}")
        q, w = self.state.q, self.layout.lut + 3 * index
        with self.state.locked():
            q[w + 1] = addr
            q[w] = VALID | self._ids.index(peer)
            self.state.bump()

    def peer_mw_set_multicast(self, index: int, group: int) -> None:
        """Point slice ``index`` at multicast group ``group``: posted writes to it are
        replicated by the fabric to every member of the group (PCIe multicast, §6.5)."""
        self._check_index(index)
        if not 0 <= group < MC_GROUPS:
            raise OutOfRange(f"{self.id}: multicast group {group} out of range 0..{MC_GROUPS - 1}")
        with self.state.locked():
            self.state.q[self.layout.lut + 3 * index + 1] = 0
            self.state.q[self.layout.lut + 3 * index] = VALID | MC_FLAG | group
            self.state.bump()

    def peer_mw_clear_trans(self, index: int) -> None:
        self._check_index(index)
        with self.state.locked():
            self.state.q[self.layout.lut + 3 * index] = 0
            self.state.bump()

    def peer_mw_get_trans(self, index: int) -> LutEntry | None:
        self._check_index(index)
        w = self.state.q[self.layout.lut + 3 * index]
        if not w & VALID:
            return None
        if w & MC_FLAG:
            return LutEntry(index, "", 0, w & 0xFFFF)
        return LutEntry(index, self._ids[w & 0xFFFF], self.state.q[self.layout.lut + 3 * index + 1])

    def lut_entries(self) -> list[LutEntry]:
        out = []
        for i in range(self.layout.lut_entries):
            e = self.peer_mw_get_trans(i)
            if e is not None:
                out.append(e)
        return out

    def lut_find_free(self, count: int = 1) -> int:
        """First index of ``count`` consecutive free LUT entries; MaxEntries when none."""
        q, base = self.state.q, self.layout.lut
        run = 0
        for i in range(self.layout.lut_entries):
            run = 0 if q[base + 3 * i] & VALID else run + 1
            if run == count:
                return i - count + 1
        raise MaxEntries(f"{self.id}: address LUT full ({self.layout.lut_entries} entries, "
                         f"{count} consecutive needed)")

    def slice_addr(self, index: int) -> int:
        """Local physical address of slice ``index`` of the window."""
        return self.window_base + index * self.slice_size

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self.layout.lut_entries:
            raise OutOfRange(f"{self.id}: address LUT index {index} out of range "
                             f"0..{self.layout.lut_entries - 1}")

    # -- requester-ID LUT ----------------------------------------------------------------

    def rid_add(self, rid: int) -> int:
        """Allow requester ``rid`` through this adapter; returns its entry index."""
        q, base = self.state.q, self.layout.rid
        with self.state.locked():
            free = -1
            for i in range(self.layout.rid_entries):
                w = q[base + i]
                if w & VALID and w & 0xFFFF == rid:
                    return i
                if not w & VALID and free < 0:
                    free = i
            if free < 0:
                raise MaxEntries(f"{self.id}: requester-ID LUT full "
                                 f"({self.layout.rid_entries} entries)")
            q[base + free] = VALID | rid
            self.state.bump()
            return free

    def rid_remove(self, rid: int) -> None:
        q, base = self.state.q, self.layout.rid
        with self.state.locked():
            for i in range(self.layout.rid_entries):
                if q[base + i] == VALID | rid:
                    q[base + i] = 0
                    self.state.bump()
                    return
        raise IllegalParameter(f"{self.id}: requester {rid:#06x} is not in the requester-ID LUT")

    def rid_has(self, rid: int) -> bool:
        q, base = self.state.q, self.layout.rid
        target = VALID | rid
        return any(q[base + i] == target for i in range(self.layout.rid_entries))

    def rid_entries(self) -> list[int]:
        q, base = self.state.q, self.layout.rid
        return [q[base + i] & 0xFFFF for i in range(self.layout.rid_entries)
                if q[base + i] & VALID]

    # -- link ----------------------------------------------------------------------------

    def link_is_up(self) -> bool:
        """True when every cable on this adapter's ports is up (ntb_link_is_up)."""
        return all(self.state.q[self.state.links + i] for i in self.link_indices)

    def __repr__(self) -> str:
        return f"NtbAdapter({self.id}, window={self.window_base:#x}+{self.window_size:#x})"


__all__ = ["LutEntry", "NtbAdapter"]
