"""A cluster's run directory: its topology, and per host a pid file, a socket and a log.

``$SMARTIO_RUN_DIR/<cluster>/`` (default ``/tmp/smartio-<uid>/<cluster>``)::

    topology.toml      the topology the cluster was started with (source text)
    <host>.pid         the daemon's pid
    <host>.sock        its ZeroMQ ipc:// endpoint
    <host>.log         its log

Programs and commands find the cluster by name (``--cluster`` or ``SMARTIO_CLUSTER``,
default ``default``) and their host by name (``--host`` or ``SMARTIO_HOST``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from smartio.errors import NotRunning
from smartio.hw.memory import check_cluster_name
from smartio.hw.state import pid_alive
from smartio.hw.topology import TopologySpec, loads_topology

DEFAULT_CLUSTER = "default"


def cluster_name(name: str | None = None) -> str:
    return check_cluster_name(name or os.environ.get("SMARTIO_CLUSTER") or DEFAULT_CLUSTER)


def data_dir(cluster: str) -> Path:
    """Where a cluster keeps data that must outlive it (file-backed namespaces)."""
    env = os.environ.get("SMARTIO_DATA_DIR")
    base = Path(env) if env else Path(f"/var/tmp/smartio-{os.getuid()}")
    return base / cluster


def base_dir() -> Path:
    env = os.environ.get("SMARTIO_RUN_DIR")
    return Path(env) if env else Path(f"/tmp/smartio-{os.getuid()}")


class RunDir:
    """Paths and liveness of one cluster's run directory."""

    def __init__(self, cluster: str | None = None) -> None:
        self.cluster = cluster_name(cluster)
        self.path = base_dir() / self.cluster

    @property
    def topology_file(self) -> Path:
        return self.path / "topology.toml"

    def exists(self) -> bool:
        return self.topology_file.exists()

    def topology(self) -> TopologySpec:
        if not self.exists():
            raise NotRunning(f"cluster {self.cluster!r} is not running; start it with "
                             f"`smartio cluster up --cluster {self.cluster}`")
        return loads_topology(self.topology_file.read_text(), source=str(self.topology_file))

    def pid_file(self, host: str) -> Path:
        return self.path / f"{host}.pid"

    def socket(self, host: str) -> Path:
        return self.path / f"{host}.sock"

    def endpoint(self, host: str) -> str:
        return f"ipc://{self.socket(host)}"

    def log(self, host: str) -> Path:
        return self.path / f"{host}.log"

    def engine_pid_file(self, host: str, function: str) -> Path:
        return self.path / f"{host}.{function}.engine.pid"

    def engine_log(self, host: str, function: str) -> Path:
        return self.path / f"{host}.{function}.engine.log"

    def all_pids(self) -> list[int]:
        """Every daemon and engine pid recorded in the run directory."""
        out = []
        for f in self.path.glob("*.pid"):
            try:
                out.append(int(f.read_text().strip()))
            except (OSError, ValueError):
                continue
        return out

    def pid(self, host: str) -> int | None:
        try:
            return int(self.pid_file(host).read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def alive(self, host: str) -> bool:
        pid = self.pid(host)
        return pid is not None and pid_alive(pid)

    def create(self, topology_text: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.topology_file.with_suffix(".tmp")
        tmp.write_text(topology_text)
        tmp.replace(self.topology_file)

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.path)


__all__ = ["DEFAULT_CLUSTER", "RunDir", "base_dir", "cluster_name", "data_dir", "pid_alive"]
