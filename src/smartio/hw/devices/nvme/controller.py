"""The NVMe controller model: parameters, registers, the state machine and the poll loop.

:class:`NvmeController` implements :class:`~smartio.hw.devices.base.DeviceModel` for the
topology endpoint model ``"nvme"``. Its BAR0 is plain shared memory, so every
:meth:`~NvmeController.poll` (NVMeVirt's dispatcher design, nvme-reference §1.2):

1. compares the register page with its shadow (one ``memcmp``) and, if the host wrote
   anything, applies the writes in the fixed order AQA, ASQ, ACQ, CC, INTMS, INTMC, then
   undoes writes to read-only and reserved registers (``nvme_ub_mmiowr_*`` events);
2. compares the doorbell page with its shadow and records new tails and heads;
3. moves completions whose media hold expired to their CQ;
4. runs one round-robin arbitration round (:class:`~.engine.QueueEngine`);
5. posts waiting CQEs while their CQ has room and sends one MSI-X message per vector.

Idle, a poll is two ``memcmp`` and a few attribute tests; it allocates nothing.

CC.EN 0→1 validates like QEMU's ``nvme_start_ctrl`` and sets CSTS.RDY, or CSTS.CFS when
a check fails; CC.EN 1→0 frees every queue; CC.SHN flushes the backing store and reports
CSTS.SHST = complete (:mod:`.state` has the transitions). INTMS/INTMC keep the mask
(MSI-X ignores it, NVMe 1.4 §3.1.3); as writes are not trapped, a write equal to the
current mask is invisible, which is harmless for INTMS and a known gap for INTMC.
The Controller Memory Buffer is not modelled (CMBLOC = CMBSZ = 0): the ``"nvme"``
endpoint has a single 16 KiB BAR with no room for one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from smartio.errors import IllegalParameter
from smartio.hw.devices.base import DeviceContext
from smartio.hw.devices.nvme.admin import ADMIN_COMMANDS
from smartio.hw.devices.nvme.commands import capability_bits
from smartio.hw.devices.nvme.config import NvmeConfig
from smartio.hw.devices.nvme.engine import QueueEngine
from smartio.hw.devices.nvme.features import defaults
from smartio.hw.devices.nvme.identify import identify_controller
from smartio.hw.devices.nvme.logpages import SmartCounters, effects_page
from smartio.hw.devices.nvme.namespace import Backing, Namespace
from smartio.hw.devices.nvme.nvm import IO_COMMANDS
from smartio.hw.devices.nvme.queues import CompletionQueue, SubmissionQueue
from smartio.hw.devices.nvme.regs import (
    BAR0_SIZE,
    CC_CSS_NVM,
    FIELDS,
    MPSMAX,
    MPSMIN,
    REGS,
    SHST_COMPLETE,
    SHST_NORMAL,
    WRITE_ORDER,
    Access,
    Doorbells,
    RegisterFile,
    cap_value,
    msix_reset,
)
from smartio.hw.devices.nvme.state import State, StateMachine

log = logging.getLogger(__name__)

_EN, _SHN, _MPS = FIELDS["cc.en"], FIELDS["cc.shn"], FIELDS["cc.mps"]
_CSS, _AMS = FIELDS["cc.css"], FIELDS["cc.ams"]
_ASQS, _ACQS = FIELDS["aqa.asqs"], FIELDS["aqa.acqs"]
_RO_REGS = tuple(r.name for r in REGS if r.access is Access.RO)
_READY, _SHUTDOWN, _FAILED = State.READY, State.SHUTDOWN, State.FAILED


class NvmeController(QueueEngine):
    """An NVMe 1.4 controller with NVM namespaces, driven by :meth:`poll`.

    Args:
        ctx: BAR0 (at least 16 KiB), DMA, interrupts and the clock.
        params: the endpoint's parameters (``ENDPOINTS["nvme"]``).
        data_dir: where ``backing="file"`` keeps ``<name>-ns<N>.img``.

    Raises:
        IllegalParameter: bad parameters, BAR0 too small, or a backing that cannot be used.
    """

    def __init__(self, ctx: DeviceContext, params: Mapping[str, object],
                 data_dir: Path | None = None) -> None:
        self.ctx = ctx
        self.cfg = cfg = NvmeConfig.from_params(params, ctx.name)
        bar = ctx.bar(0)
        if len(bar) < BAR0_SIZE:
            raise IllegalParameter(f"{ctx.name}: BAR0 is {len(bar)} bytes, needs {BAR0_SIZE}")
        if cfg.cmb:
            log.warning("nvme_cmb_unsupported: %s cmb=%d ignored, CMBSZ = 0", ctx.name, cfg.cmb)
        self.bar = bar
        self.msix_vectors = cfg.msix_vectors
        self.regs = RegisterFile(bar, cap_value(cfg.mqes))
        self.doorbells = Doorbells(bar)
        self.fsm = StateMachine(ctx.name)
        self._backing = Backing(cfg, ctx.name, data_dir)
        self.namespaces: dict[int, Namespace] = self._backing.namespaces
        self.identify_controller_data = identify_controller(
            cfg, capability_bits(ADMIN_COMMANDS, "oacs_bit"),
            capability_bits(IO_COMMANDS, "oncs_bit"))
        self.effects_page: bytes = effects_page({op: s.effects for op, s in ADMIN_COMMANDS.items()},
                                         {op: s.effects for op, s in IO_COMMANDS.items()})
        self.mdts_bytes = (4096 << cfg.mdts) if cfg.mdts else 0  # units of CAP.MPSMIN pages
        self.smart: SmartCounters = SmartCounters()
        self.page_size = 4096
        self.features: dict[int, int] = defaults(cfg)
        self.iv_config: dict[int, int] = {}
        self.intm = 0  # the INTMS/INTMC mask
        self._closed = False
        self._init_queues()
        self.reset()

    @property
    def state(self) -> State:
        return self.fsm.state

    # -- DeviceModel -------------------------------------------------------------------

    def poll(self) -> bool:
        """Apply register and doorbell writes, run commands, post completions."""
        if self._closed:
            return False
        did = False
        regs, db = self.regs, self.doorbells
        if regs.shadow != regs.live:  # one memcmp each (bytearray on the left)
            self._on_registers()
            did = True
        if db.shadow != db.live:
            self._on_doorbells()
            did = True
        state = self.fsm.state
        if state is _READY or state is _SHUTDOWN:
            heap = self._heap
            if heap and heap[0][0] <= self.ctx.now_ns():
                self._release_due()
                did = True
            if self._sq_work and state is _READY:
                did = self._arbitrate() or did
            if self._backlog and self.fsm.state is not _FAILED:
                did = self._post_backlog() or did
            if self._irq:
                for vector in sorted(self._irq):
                    self.ctx.interrupt(vector)
                self._irq.clear()
        return did

    def busy(self) -> bool:
        """Completions are held for their media time (the engine must not sleep past it)."""
        return bool(self._heap)

    def reset(self) -> None:
        """Function-level reset: power-on registers, no queues, MSI-X entries masked.

        Namespace contents survive (a reset does not scrub the media).
        """
        self._reset_controller_state()
        self.regs.reset()
        self.doorbells.reset()
        msix_reset(self.bar, self.msix_vectors)
        self.page_size = 4096
        self.fsm.force_disabled("function reset")

    def close(self) -> None:
        """Flush and release the backing store and the BAR views (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._drop_queues()
        self._backing.close()
        self.regs.release()
        self.doorbells.release()

    # -- registers -----------------------------------------------------------------------

    def _on_registers(self) -> None:
        regs = self.regs
        for name in WRITE_ORDER:
            value = regs.written(name)
            if value is None:
                continue
            if name == "cc":
                self._on_write_cc(value)
            elif name == "intms":  # write 1 to set
                self._set_intm(self.intm | value)
            elif name == "intmc":  # write 1 to clear
                self._set_intm(self.intm & ~value)
            else:
                regs.accept(name, value)
                log.debug("nvme_mmio_write: %s %s = %#x", self.ctx.name, name, value)
        for name in _RO_REGS:
            value = regs.written(name)
            if value is not None:
                log.warning("nvme_ub_mmiowr_ro: %s %s = %#x ignored", self.ctx.name, name, value)
                regs.restore(name)
        for off in regs.stray_writes():
            log.warning("nvme_ub_mmiowr_reserved: %s offset %#x ignored", self.ctx.name, off)

    def _set_intm(self, mask: int) -> None:
        self.intm = mask & 0xFFFF_FFFF
        self.regs.store("intms", self.intm)
        self.regs.store("intmc", self.intm)

    def _on_write_cc(self, new: int) -> None:
        old = self.regs["cc"]
        self.regs.accept("cc", new)
        log.debug("nvme_mmio_write: %s cc = %#x (was %#x)", self.ctx.name, new, old)
        shn_new, shn_old = _SHN.get(new), _SHN.get(old)
        if shn_new and not shn_old:
            self._shutdown(shn_new)
        elif not shn_new and shn_old:
            self.regs.set("csts.shst", SHST_NORMAL)
        if _EN.get(new) and not _EN.get(old):
            self._enable(new)
        elif not _EN.get(new) and _EN.get(old):
            self._controller_reset()

    def _enable(self, cc: int) -> None:
        """CC.EN 0 -> 1: validate (QEMU ``nvme_start_ctrl``), create the admin queues."""
        regs = self.regs
        mps, aqa, asq, acq = _MPS.get(cc), regs["aqa"], regs["asq"], regs["acq"]
        page = 1 << (12 + mps)
        why = None
        if self.sqs[0] is not None or self.cqs[0] is not None:
            why = "admin queues already exist"
        elif _CSS.get(cc) != CC_CSS_NVM:
            why = f"cc.css={_CSS.get(cc)} not in CAP.CSS"
        elif not MPSMIN <= mps <= MPSMAX:
            why = f"cc.mps={mps} outside {MPSMIN}..{MPSMAX}"
        elif _AMS.get(cc) != 0:
            why = f"cc.ams={_AMS.get(cc)} not supported (round robin only)"
        elif asq & (page - 1) or acq & (page - 1):
            why = f"asq={asq:#x}/acq={acq:#x} not aligned to {page}"
        elif _ASQS.get(aqa) == 0 or _ACQS.get(aqa) == 0:
            why = f"aqa={aqa:#x}: zero admin queue size"
        if why is not None:
            log.warning("nvme_err_startfail: %s %s", self.ctx.name, why)
            regs.set("csts.cfs", 1)
            self.fsm.move(State.FAILED, why)
            return
        self.page_size = page
        cq = CompletionQueue(0, acq, _ACQS.get(aqa) + 1, True, 0)
        self.add_cq(cq)
        self.add_sq(SubmissionQueue(0, asq, _ASQS.get(aqa) + 1, cq))
        regs.store("csts", 0)
        regs.set("csts.rdy", 1)
        self.fsm.move(State.READY, "cc.en 0->1")

    def _controller_reset(self) -> None:
        """CC.EN 1 -> 0: free every queue, drop AERs; CSTS, INTMS/INTMC and CC to 0."""
        self._reset_controller_state()
        self.doorbells.reset()
        for name in ("csts", "intms", "intmc", "cc"):
            self.regs.store(name, 0)
        self.fsm.move(State.DISABLED, "cc.en 1->0")

    def _reset_controller_state(self) -> None:
        self._drop_queues()
        self.features = defaults(self.cfg)
        self.iv_config.clear()
        self.intm = 0

    def _shutdown(self, shn: int) -> None:
        """CC.SHN set: flush the backing store, then CSTS.SHST = complete."""
        kind = "normal" if shn == 1 else "abrupt"
        for ns in self.namespaces.values():
            ns.flush()
        self.regs.set("csts.shst", SHST_COMPLETE)
        log.info("nvme_shutdown: %s %s shutdown complete", self.ctx.name, kind)
        if self.fsm.state is State.READY:
            self.fsm.move(State.SHUTDOWN, f"cc.shn {kind}")


__all__ = ["NvmeController"]
