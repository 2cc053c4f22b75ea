"""Get / Set Features (NVMe 1.4 §5.21, nvme-reference §1.3), table-driven.

:data:`FEATURES` declares each supported Feature Identifier once: its default, the CDW11
bits Set Features keeps, and an optional validity check. Number of Queues (07h) and
Interrupt Vector Configuration (09h) need controller state and have small hooks. An
unknown FID is Invalid Field; SV = 1 is Feature Identifier Not Saveable (ONCS bit 4 is
clear, nothing is saveable); Get SEL = 011b reports "changeable".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from smartio.hw.devices.nvme.commands import OK, Outcome, refuse
from smartio.hw.devices.nvme.config import NvmeConfig
from smartio.hw.devices.nvme.queues import Command
from smartio.hw.devices.nvme.status import Status

if TYPE_CHECKING:
    from smartio.hw.devices.nvme.controller import NvmeController

log = logging.getLogger(__name__)

FID_ARBITRATION = 0x01
FID_POWER_MANAGEMENT = 0x02
FID_VOLATILE_WRITE_CACHE = 0x06
FID_NUMBER_OF_QUEUES = 0x07
FID_INTERRUPT_COALESCING = 0x08
FID_INTERRUPT_VECTOR_CONFIG = 0x09
FID_ASYNC_EVENT_CONFIG = 0x0B

AB_NO_LIMIT = 0b111
DEFAULT_AB = 3  # arbitration burst 2^3 = 8 commands per SQ per round

SEL_CURRENT, SEL_DEFAULT, SEL_SAVED, SEL_SUPPORTED = 0, 1, 2, 3
CAP_CHANGEABLE = 1 << 2


@dataclass(frozen=True)
class Feature:
    fid: int
    name: str
    default: Callable[[NvmeConfig], int]
    mask: int  # CDW11 bits a Set Features keeps
    check: Callable[[NvmeConfig, int], bool] | None = None


def _queues(cfg: NvmeConfig) -> int:
    n = cfg.io_queues - 1  # NSQA / NCQA, 0's based
    return n | n << 16


FEATURES: dict[int, Feature] = {f.fid: f for f in (
    Feature(FID_ARBITRATION, "arbitration", lambda c: DEFAULT_AB, 0xFFFF_FF07),
    Feature(FID_POWER_MANAGEMENT, "power_management", lambda c: 0, 0xFF,
            lambda c, v: v & 0x1F == 0),  # NPSS = 0: only power state 0
    Feature(FID_VOLATILE_WRITE_CACHE, "volatile_write_cache", lambda c: 1, 0x1),
    Feature(FID_NUMBER_OF_QUEUES, "number_of_queues", _queues, 0xFFFF_FFFF),
    Feature(FID_INTERRUPT_COALESCING, "interrupt_coalescing", lambda c: 0, 0xFFFF),
    Feature(FID_INTERRUPT_VECTOR_CONFIG, "interrupt_vector_config", lambda c: 0, 0x1_FFFF,
            lambda c, v: v & 0xFFFF < c.msix_vectors),
    Feature(FID_ASYNC_EVENT_CONFIG, "async_event_config", lambda c: 0, 0x7FF),
)}


def defaults(cfg: NvmeConfig) -> dict[int, int]:
    """Current values after a reset."""
    return {fid: f.default(cfg) for fid, f in FEATURES.items()}


def arbitration_burst(value: int, sq_size: int) -> int:
    """Commands one SQ may submit per round (2^AB; 111b is no limit)."""
    ab = value & 0x7
    return sq_size if ab == AB_NO_LIMIT else 1 << ab


def set_features(ctrl: NvmeController, cmd: Command) -> Outcome:
    fid = cmd.cdw10 & 0xFF
    feat = FEATURES.get(fid)
    if feat is None:
        log.debug("nvme_err_feature_unknown: fid=%#x", fid)
        return refuse(Status.INVALID_FIELD)
    if cmd.cdw10 >> 31:
        return refuse(Status.FEATURE_NOT_SAVEABLE)
    value = cmd.cdw11 & feat.mask
    if feat.check is not None and not feat.check(ctrl.cfg, value):
        log.debug("nvme_err_feature_value: %s %#x", feat.name, value)
        return refuse(Status.INVALID_FIELD)
    if fid == FID_NUMBER_OF_QUEUES:
        return _set_number_of_queues(ctrl, value)
    if fid == FID_INTERRUPT_VECTOR_CONFIG:
        ctrl.iv_config[value & 0xFFFF] = value
        return OK
    ctrl.features[fid] = value
    log.debug("nvme_set_feature: %s = %#x", feat.name, value)
    return OK


def _set_number_of_queues(ctrl: NvmeController, value: int) -> Outcome:
    # QEMU's order: a sequence error once I/O queues were created, then the field check.
    if ctrl.qs_created:
        log.debug("nvme_err_number_of_queues_after_create")
        return refuse(Status.COMMAND_SEQUENCE_ERROR)
    if value & 0xFFFF == 0xFFFF or value >> 16 == 0xFFFF:
        return refuse(Status.INVALID_FIELD)
    # The allocation is fixed by the configuration (QEMU): report it whatever was asked.
    return Outcome(0, ctrl.features[FID_NUMBER_OF_QUEUES])


def get_features(ctrl: NvmeController, cmd: Command) -> Outcome:
    fid = cmd.cdw10 & 0xFF
    sel = (cmd.cdw10 >> 8) & 0x7
    feat = FEATURES.get(fid)
    if feat is None or sel > SEL_SUPPORTED:
        log.debug("nvme_err_feature_unknown: fid=%#x sel=%d", fid, sel)
        return refuse(Status.INVALID_FIELD)
    if sel == SEL_SUPPORTED:
        return Outcome(0, CAP_CHANGEABLE)
    if fid == FID_INTERRUPT_VECTOR_CONFIG:
        iv = cmd.cdw11 & 0xFFFF
        if iv >= ctrl.cfg.msix_vectors:
            return refuse(Status.INVALID_FIELD)
        if sel == SEL_CURRENT:
            return Outcome(0, ctrl.iv_config.get(iv, iv))
        return Outcome(0, iv)
    if sel == SEL_CURRENT:
        return Outcome(0, ctrl.features[fid])
    return Outcome(0, feat.default(ctrl.cfg))  # default; saved = default (not saveable)


__all__ = [
    "FEATURES", "FID_ARBITRATION", "FID_ASYNC_EVENT_CONFIG", "FID_INTERRUPT_COALESCING",
    "FID_INTERRUPT_VECTOR_CONFIG", "FID_NUMBER_OF_QUEUES", "FID_POWER_MANAGEMENT",
    "FID_VOLATILE_WRITE_CACHE", "Feature", "arbitration_burst", "defaults", "get_features",
    "set_features",
]
