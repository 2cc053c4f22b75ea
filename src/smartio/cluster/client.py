"""The program side of the control plane: attach to a host's daemon, call it, get events.

A :class:`DaemonClient` has two DEALER sockets to the host daemon: one for requests
(synchronous, one at a time, under a lock) and one on which the daemon pushes events, read
by a background thread that hands each event to the registered listeners. Attaching to a
cluster or host that is not running fails at once with a message saying how to start it.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import msgspec
import zmq

from smartio.cluster import messages as m
from smartio.cluster.rundir import RunDir
from smartio.errors import NotRunning, ProtocolError, Timeout, error_for_code

log = logging.getLogger(__name__)

CALL_TIMEOUT = 15.0
DEAD_CHECK = 0.2  # while waiting for a reply, check this often that the daemon lives
Listener = Callable[[m.Msg], None]


def host_name(host: str | None) -> str:
    name = host or os.environ.get("SMARTIO_HOST")
    if not name:
        raise NotRunning("no host given; pass host=..., --host, or set SMARTIO_HOST")
    return name


class DaemonClient:
    """A program's connection to its host daemon."""

    def __init__(self, host: str | None = None, cluster: str | None = None,
                 name: str = "") -> None:
        self.rundir = RunDir(cluster)
        self.cluster = self.rundir.cluster
        self.host = host_name(host)
        topo = self.rundir.topology()
        if self.host not in {h.name for h in topo.hosts}:
            raise NotRunning(f"cluster {self.cluster!r} has no host {self.host!r}; hosts: "
                             + ", ".join(h.name for h in topo.hosts))
        if not self.rundir.alive(self.host):
            raise NotRunning(f"the daemon of host {self.host!r} in cluster {self.cluster!r} "
                             f"is not running; start the cluster with `smartio cluster up "
                             f"--cluster {self.cluster}` or the host with `smartio node run "
                             f"--cluster {self.cluster} --host {self.host}`")
        self.topology = topo
        self.id = uuid.uuid4().hex
        self._ctx = zmq.Context()
        self._req = self._socket()
        self._evt = self._socket()
        self._lock = threading.Lock()
        self._rids = itertools.count(1)
        self._listeners: list[Listener] = []
        self._stop = threading.Event()
        self._closed = False
        self.hello = self.call(m.Hello(client=self.id, pid=os.getpid(), name=name or
                                       f"pid {os.getpid()}"))
        self._call_on(self._evt, m.Subscribe(client=self.id))
        self._thread = threading.Thread(target=self._events, name="smartio-events", daemon=True)
        self._thread.start()

    def _socket(self) -> zmq.Socket[bytes]:
        s = self._ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(self.rundir.endpoint(self.host))
        return s

    def _call_on(self, sock: zmq.Socket[bytes], msg: m.Msg,
                 timeout: float = CALL_TIMEOUT) -> dict[str, Any]:
        rid = next(self._rids)
        sock.send_multipart([m.PROTOCOL, m.encode(m.Envelope(rid, msg))])  # type: ignore[arg-type]
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout(f"host {self.host} did not answer {type(msg).__name__} within "
                              f"{timeout:g} s (is its daemon alive? `smartio cluster status`)")
            if not sock.poll(int(min(left, DEAD_CHECK) * 1000)):
                if not self.rundir.alive(self.host):
                    raise NotRunning(f"the daemon of host {self.host!r} died; restart the "
                                     f"cluster (`smartio cluster down --cluster "
                                     f"{self.cluster}`, then `up`)")
                continue
            frames = sock.recv_multipart()
            try:
                rep = m.decode_reply(frames[-1])
            except msgspec.DecodeError as e:
                raise ProtocolError(f"undecodable reply from {self.host}: {e}") from None
            if rep.rid == rid:
                break
        if not rep.ok:
            raise error_for_code(rep.code, rep.error)
        return rep.data

    def call(self, msg: m.Msg, timeout: float = CALL_TIMEOUT) -> dict[str, Any]:
        """Send one request and return the reply data; raises the SISCI error on failure."""
        if self._closed:
            raise NotRunning("this program's connection to its host is closed")
        with self._lock:
            return self._call_on(self._req, msg, timeout)

    def add_listener(self, fn: Listener) -> None:
        self._listeners.append(fn)

    def remove_listener(self, fn: Listener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(fn)

    def _events(self) -> None:
        while not self._stop.is_set():
            try:
                if not self._evt.poll(100):
                    continue
                frames = self._evt.recv_multipart()
            except zmq.ZMQError:
                return
            try:
                event = m.decode_event(frames[-1])
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue  # the subscribe reply, or noise
            for fn in list(self._listeners):
                try:
                    fn(event)
                except Exception:
                    log.exception("err_event_listener")

    def close(self) -> None:
        if self._closed:
            return
        with contextlib.suppress(Exception):  # best effort: the daemon also notices exit
            if self.rundir.alive(self.host):
                self.call(m.Goodbye(client=self.id), timeout=2.0)
        self._closed = True
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(1)
        self._req.close(0)
        self._evt.close(0)
        self._ctx.term()


__all__ = ["DaemonClient", "host_name"]
