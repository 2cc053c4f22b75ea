"""The host daemon: one per host, the authority for that host's memory and devices.

DESIGN §4.2. A daemon owns its host's SmartIO state (:class:`~smartio.node.NodeDriver` and
:class:`~smartio.node.segments.HostSisci`), serves programs attached to the host and the
daemons of other hosts over one ZeroMQ ROUTER socket (ipc:// on this machine), and pushes
events to programs' event sockets. There is no central server: a daemon asks the owner
daemon whenever it needs something of another host. It watches its clients (a dead
program's resources are released and peers are told), its peers (a dead daemon's segments
are lost), and the links on its connections' paths (operational / not operational).

Handlers are named after the messages (``on_create_segment``) and live in
:mod:`smartio.cluster.handlers`; this module holds the loop and the plumbing.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import zmq
import zmq.asyncio

from smartio.cluster import messages as m
from smartio.cluster.devices import DeviceHandlers
from smartio.cluster.handlers import Handlers
from smartio.cluster.io import IoHandlers
from smartio.cluster.lending import LendingHandlers
from smartio.cluster.rundir import RunDir, pid_alive
from smartio.errors import NotRunning, ProtocolError, SmartIOError, Timeout
from smartio.hw.fabric import Fabric
from smartio.node.driver import NodeDriver
from smartio.node.segments import HostSisci

log = logging.getLogger(__name__)

CLIENT_CHECK_INTERVAL = 0.1
PEER_CHECK_INTERVAL = 0.5
LINK_CHECK_INTERVAL = 0.02
PEER_TIMEOUT = 5.0


@dataclass
class NodeConfig:
    cluster: str
    host: str


@dataclass
class ClientInfo:
    id: str
    pid: int
    name: str
    events: bytes | None = None  # ROUTER identity of its event socket
    queues: set[int] = field(default_factory=set)


class PeerLink:
    """A DEALER socket to another host's daemon with request/reply matching."""

    def __init__(self, ctx: zmq.asyncio.Context, host: str, endpoint: str) -> None:
        self.host = host
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self._rids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[m.Reply]] = {}
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        while True:
            frames = await self.sock.recv_multipart()
            try:
                rep = m.decode_reply(frames[-1])
            except msgspec.DecodeError:
                log.warning("ub_peer_reply: undecodable reply from %s", self.host)
                continue
            fut = self._pending.pop(rep.rid, None)
            if fut is not None and not fut.done():
                fut.set_result(rep)

    async def call(self, msg: m.Msg, timeout: float = PEER_TIMEOUT) -> dict[str, Any]:
        rid = next(self._rids)
        fut: asyncio.Future[m.Reply] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        await self.sock.send_multipart([m.PROTOCOL, m.encode(m.Envelope(rid, msg))])  # type: ignore[arg-type]
        try:
            rep = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise Timeout(f"host {self.host} did not answer {type(msg).__name__} within "
                          f"{timeout:g} s") from None
        finally:
            self._pending.pop(rid, None)
        if not rep.ok:
            from smartio.errors import error_for_code

            raise error_for_code(rep.code, rep.error)
        return rep.data

    def close(self) -> None:
        self._reader.cancel()
        self.sock.close(0)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class NodeDaemon(Handlers, IoHandlers, DeviceHandlers, LendingHandlers):
    """The daemon of one host. Use as ``asyncio.run(NodeDaemon(cfg).run())``."""

    def __init__(self, cfg: NodeConfig) -> None:
        self.cfg = cfg
        self.host = cfg.host
        self.rundir = RunDir(cfg.cluster)
        self.topo = self.rundir.topology()
        self.fabric = Fabric.attach(self.topo, cfg.cluster)
        self.driver = NodeDriver(self.fabric, cfg.host)
        self.sisci = HostSisci(self.driver)
        self.clients: dict[str, ClientInfo] = {}
        self.peers: dict[str, PeerLink] = {}
        self.stop = asyncio.Event()
        self.requests = 0
        self.errors = 0
        self._dispatch: dict[type, Callable[[Any], Awaitable[dict[str, Any] | None]]] = {}
        for cls in m.Request.__args__:
            handler = getattr(self, f"on_{_snake(cls.__name__)}", None)
            if handler is None:
                raise SmartIOError(f"daemon has no handler for {cls.__name__}")
            self._dispatch[cls] = handler
        Handlers.__init__(self)
        DeviceHandlers.__init__(self)
        LendingHandlers.__init__(self)

    # -- life cycle ------------------------------------------------------------------------

    async def run(self) -> None:
        self.ctx = zmq.asyncio.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        sock_path = self.rundir.socket(self.host)
        with contextlib.suppress(FileNotFoundError):
            sock_path.unlink()
        self.sock.bind(self.rundir.endpoint(self.host))
        self.driver.load()
        self._start_engines()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        self.rundir.pid_file(self.host).write_text(f"{os.getpid()}\n")
        log.info("node_up: %s pid %d at %s", self.host, os.getpid(),
                 self.rundir.endpoint(self.host))
        tasks = [loop.create_task(t) for t in (self._serve(), self._watch_clients(),
                                                self._watch_peers(), self._watch_links())]
        try:
            await self.stop.wait()
        finally:
            for t in tasks:
                t.cancel()
            for c in list(self.clients.values()):
                await self.release_client(c.id, notify=False)
            self._stop_engines()
            self.unload_devices()
            self.driver.unload()
            for p in self.peers.values():
                p.close()
            self.sock.close(0)
            self.ctx.term()
            self.fabric.close()
            with contextlib.suppress(FileNotFoundError):
                sock_path.unlink()
            with contextlib.suppress(FileNotFoundError):
                self.rundir.pid_file(self.host).unlink()
            log.info("node_down: %s", self.host)

    def _start_engines(self) -> None:
        """One device engine process per device function of this host."""
        from smartio.cluster.rundir import data_dir
        from smartio.hw.engine import has_engine

        self.engines: dict[str, subprocess.Popen[bytes]] = {}
        ddir = data_dir(self.cfg.cluster)
        for fn in self.fabric.maps[self.host].functions.values():
            if fn.kind != "endpoint" or not has_engine(fn.model):
                continue
            with open(self.rundir.engine_log(self.host, fn.name), "ab") as logf:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "smartio.hw.engine", "--cluster", self.cfg.cluster,
                     "--topology", str(self.rundir.topology_file), "--function", fn.name,
                     "--data-dir", str(ddir)], stdout=subprocess.PIPE, stderr=logf,
                    stdin=subprocess.DEVNULL)
            self.rundir.engine_pid_file(self.host, fn.name).write_text(f"{proc.pid}\n")
            self.engines[fn.name] = proc
            log.info("engine_start: %s pid %d", fn.name, proc.pid)
        # The host is up only when its devices are: wait for every engine's ready line.
        for name, proc in self.engines.items():
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if line.strip() != b"engine_ready":
                log.error("err_engine_start: %s exited (%s); see %s", name, proc.poll(),
                          self.rundir.engine_log(self.host, name))

    def _stop_engines(self) -> None:
        for proc in getattr(self, "engines", {}).values():
            proc.terminate()
        for name, proc in getattr(self, "engines", {}).items():
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            with contextlib.suppress(FileNotFoundError):
                self.rundir.engine_pid_file(self.host, name).unlink()

    async def _serve(self) -> None:
        while True:
            frames = await self.sock.recv_multipart()
            asyncio.get_running_loop().create_task(self._handle(frames))

    async def _handle(self, frames: list[bytes]) -> None:
        ident = frames[0]
        rid = 0
        self.requests += 1
        try:
            if len(frames) != 3 or frames[1] != m.PROTOCOL:
                raise ProtocolError(f"expected [{m.PROTOCOL.decode()!r}, body]; got "
                                    f"{len(frames) - 1} frame(s)")
            try:
                env = m.decode_request(frames[2])
            except (msgspec.DecodeError, msgspec.ValidationError) as e:
                raise ProtocolError(f"malformed message: {e}") from None
            rid = env.rid
            self._check_sender(env.msg)
            if isinstance(env.msg, m.Subscribe):
                client = self.clients.get(env.msg.client)
                if client is None:
                    raise ProtocolError("subscribe before hello")
                client.events = ident
                data: dict[str, Any] | None = {}
            else:
                data = await self._dispatch[type(env.msg)](env.msg)
            rep = m.Reply(rid, True, data=data or {})
        except SmartIOError as e:
            self.errors += 1
            rep = m.Reply(rid, False, e.code, str(e))
        except Exception as e:  # a bug must not take the daemon down; report it
            self.errors += 1
            log.exception("err_handler")
            rep = m.Reply(rid, False, "SCI_ERR_GENERIC", f"internal error: {e!r}")
        with contextlib.suppress(zmq.ZMQError):
            await self.sock.send_multipart([ident, m.PROTOCOL, m.encode(rep)])

    def _check_sender(self, msg: m.Msg) -> None:
        """Refuse requests on behalf of a client that never said Hello (nothing would ever
        release what they create) and peer messages from a host not in the cluster."""
        client = getattr(msg, "client", None)
        if (client is not None and not isinstance(msg, (m.Hello, m.Subscribe))
                and client not in self.clients):
            raise ProtocolError(f"{type(msg).__name__} from client {client!r} before hello")
        host = getattr(msg, "host", None)
        if (host is not None and type(msg).__name__.startswith("Peer")
                and host not in {h.name for h in self.topo.hosts}):
            raise ProtocolError(f"{type(msg).__name__} from {host!r}, which is not a host of "
                                f"cluster {self.rundir.cluster!r}")

    # -- events, clients and peers ---------------------------------------------------------

    async def emit(self, client_id: str, event: m.Msg) -> None:
        client = self.clients.get(client_id)
        if client is None or client.events is None:
            return
        with contextlib.suppress(zmq.ZMQError):
            await self.sock.send_multipart([client.events, m.PROTOCOL,
                                            m.encode(m.EventEnvelope(event))])  # type: ignore[arg-type]

    def peer(self, host: str) -> PeerLink:
        if host not in {h.name for h in self.topo.hosts}:
            raise NotRunning(f"no host {host!r} in this cluster")
        if not self.rundir.alive(host):
            raise NotRunning(f"the daemon of host {host} is not running")
        link = self.peers.get(host)
        if link is None:
            link = PeerLink(self.ctx, host, self.rundir.endpoint(host))
            self.peers[host] = link
        return link

    async def _watch_clients(self) -> None:
        while True:
            await asyncio.sleep(CLIENT_CHECK_INTERVAL)
            for c in list(self.clients.values()):
                if not pid_alive(c.pid):
                    log.info("client_gone: %s pid %d (%s)", c.id, c.pid, c.name)
                    await self.release_client(c.id)

    async def _watch_peers(self) -> None:
        dead: set[str] = set()
        while True:
            await asyncio.sleep(PEER_CHECK_INTERVAL)
            for h in self.topo.hosts:
                if h.name == self.host:
                    continue
                alive = self.rundir.alive(h.name)
                if not alive and h.name not in dead and self._touches(h.name):
                    log.warning("peer_gone: %s", h.name)
                    dead.add(h.name)
                    link = self.peers.pop(h.name, None)
                    if link is not None:
                        link.close()
                    await self.peer_gone(h.name)
                elif alive:
                    dead.discard(h.name)

    def _touches(self, host: str) -> bool:
        return any(c.peer_host == host or any(mh == host for mh, _, _ in c.members)
                   for c in self.sisci.connections.values()) or any(
            con.host == host for s in self.sisci.segments.values()
            for con in s.connectors.values()) or any(k[0] == host for k in self.lent)

    async def _watch_links(self) -> None:
        while True:
            await asyncio.sleep(LINK_CHECK_INTERVAL)
            await self.check_links()


def run_node(cluster: str, host: str) -> None:
    """Run a host daemon in the foreground until SIGTERM/SIGINT or a Shutdown message."""
    asyncio.run(NodeDaemon(NodeConfig(cluster, host)).run())


__all__ = ["ClientInfo", "NodeConfig", "NodeDaemon", "PeerLink", "run_node"]
