"""Device engines: the process that runs one device model (DESIGN §3.5, §5).

A host daemon starts one engine per device function of its host when the cluster comes up
and stops it with the cluster. The engine attaches to the fabric, builds the model over a
:class:`~smartio.hw.devices.context.FabricContext`, and polls it the way NVMeVirt's
dispatcher does. When the model has nothing to do, the loop backs off — first yielding the
CPU, then sleeping up to ``MAX_SLEEP`` — so that an idle engine costs a few percent of a
core at most, while a busy one answers within microseconds. A Function Level Reset
requested through config space resets the model.

Run as ``python -m smartio.hw.engine --cluster C --topology FILE --function NAME``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from smartio.errors import IllegalParameter
from smartio.hw.devices.base import DeviceModel
from smartio.hw.devices.context import FabricContext
from smartio.hw.fabric import Fabric
from smartio.hw.topology import load_topology

log = logging.getLogger(__name__)

SPIN_POLLS = 2000  # idle polls that only yield before the engine starts sleeping
MAX_SLEEP = 0.002
FLR_CHECK_EVERY = 64


def make_model(ctx: FabricContext, model: str, params: dict[str, Any],
               data_dir: Path | None) -> DeviceModel:
    """Build the device model named by the topology for this function."""
    if model == "nvme":
        from smartio.hw.devices.nvme import NvmeController

        return NvmeController(ctx, params, data_dir)
    if model == "gpu":
        import importlib

        from smartio.hw.devices.gpu import GpuModel

        # Named kernels a host program launches through the ring must be registered in
        # the engine's process: SMARTIO_GPU_KERNELS lists modules that register them.
        for mod in filter(None, os.environ.get("SMARTIO_GPU_KERNELS", "").split(",")):
            importlib.import_module(mod.strip())
        return GpuModel(ctx, params)
    raise IllegalParameter(f"no device engine for model {model!r} (function {ctx.name})")


def has_engine(model: str) -> bool:
    return model in ("nvme", "gpu")


class Engine:
    """The poll loop of one device."""

    def __init__(self, fabric: Fabric, function: str, data_dir: Path | None) -> None:
        ep = next(e for e in fabric.topo.endpoints if e.name == function)
        dma_bits = int(ep.params.get("dma_bits", 64))
        self.ctx = FabricContext(fabric, function, dma_bits)
        self.model = make_model(self.ctx, ep.model, dict(ep.params), data_dir)
        self.stop = False
        self.parent = os.getppid()  # the host daemon; the engine ends with it
        self.polls = 0
        self.busy_polls = 0

    def run(self) -> None:
        idle = 0
        poll = self.model.poll
        busy = getattr(self.model, "busy", lambda: False)
        while not self.stop:
            self.polls += 1
            if poll():
                self.busy_polls += 1
                idle = 0
                continue
            idle += 1
            if idle % FLR_CHECK_EVERY == 0:
                if self.ctx.flr_requested():
                    log.info("engine_flr: %s", self.ctx.name)
                    self.model.reset()
                    self.ctx.flr_complete()
                if os.getppid() != self.parent:
                    log.warning("engine_orphaned: %s: its host daemon is gone", self.ctx.name)
                    break
            if idle < SPIN_POLLS or busy():  # held completions: stay awake for their time
                os.sched_yield()
            else:
                time.sleep(min(MAX_SLEEP, 0.00005 * (idle - SPIN_POLLS + 1)))
        self.model.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="smartio-engine", description=__doc__)
    ap.add_argument("--cluster", required=True)
    ap.add_argument("--topology", required=True, type=Path)
    ap.add_argument("--function", required=True)
    ap.add_argument("--data-dir", type=Path, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s engine {args.function} "
                        "%(levelname)s %(name)s: %(message)s")
    fabric = Fabric.attach(load_topology(args.topology), args.cluster)
    engine = Engine(fabric, args.function, args.data_dir)

    def stop(*_: object) -> None:
        engine.stop = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("engine_up: %s pid %d", args.function, os.getpid())
    print("engine_ready", flush=True)  # the host daemon waits for this line
    profile = os.environ.get("SMARTIO_ENGINE_PROFILE")  # a directory: cProfile each engine
    try:
        if profile:
            import cProfile

            cProfile.runctx("engine.run()", globals(), {"engine": engine},
                            str(Path(profile) / f"{args.function}.prof"))
        else:
            engine.run()
    finally:
        fabric.close()
        log.info("engine_down: %s (%d polls, %d busy)", args.function, engine.polls,
                 engine.busy_polls)


if __name__ == "__main__":
    main()
