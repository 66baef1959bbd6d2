"""Start and stop a local NATS JetStream cluster (Debian package ``nats-server``).

Used by tests, benchmarks and ``gridledger node cluster`` on one machine: three servers on
loopback, JetStream on, clustered with routes so streams can be replicated R=3 (Raft).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from gridledger.errors import ConfigError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nats_server_binary() -> str:
    path = shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None)
    if path is None:
        raise ConfigError("nats-server not found: install it with 'apt-get install nats-server'")
    return path


@dataclass
class NatsServer:
    name: str
    client_port: int
    cluster_port: int
    store_dir: Path
    conf: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"

    def start(self) -> None:
        with open(self.store_dir.parent / f"{self.name}.log", "ab") as log:  # the child keeps its own
            self.proc = subprocess.Popen([nats_server_binary(), "-c", str(self.conf)],
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.client_port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise ConfigError(f"nats-server {self.name} did not start on port {self.client_port}")

    def kill(self) -> None:
        """SIGKILL (fault tests) — the server's JetStream files stay for a restart."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def stop(self) -> None:
        self.signal_stop()
        self.reap(time.monotonic() + 10)

    def signal_stop(self) -> None:
        """SIGTERM: the server shuts down on its own (``reap`` waits for it)."""
        if self.proc is not None:
            self.proc.terminate()

    def reap(self, deadline: float) -> None:
        """Wait for a stopping server until ``deadline`` (monotonic), then SIGKILL it."""
        if self.proc is not None:
            try:
                self.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.proc = None


@dataclass
class NatsCluster:
    """Three (or n) clustered JetStream servers on 127.0.0.1 (one: a lone JetStream server,
    whose streams take ``replicas=1``)."""

    root: Path
    size: int = 3
    servers: list[NatsServer] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        ports = [(free_port(), free_port()) for _ in range(self.size)]
        for i, (cp, rp) in enumerate(ports):
            name = f"n{i + 1}"
            store = self.root / name
            store.mkdir(exist_ok=True)
            routes = ", ".join(f"nats-route://127.0.0.1:{r}" for j, (_, r) in enumerate(ports) if j != i)
            conf = self.root / f"{name}.conf"
            # clients use exactly the URLs they are given (no gossiped addresses), so a node
            # behind a proxy or firewall cannot bypass it; one server is no cluster (nats-server
            # refuses a JetStream cluster without routes): its streams take replicas 1
            cluster = (f"cluster {{ name: gridledger, listen: 127.0.0.1:{rp}, routes: [{routes}], "
                       "no_advertise: true }\n") if self.size > 1 else ""
            conf.write_text(
                f"server_name: {name}\nlisten: 127.0.0.1:{cp}\n"
                f"jetstream {{ store_dir: \"{store}\", max_memory_store: 268435456, "
                f"max_file_store: 2147483648 }}\n" + cluster)
            self.servers.append(NatsServer(name, cp, rp, store, conf))

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    def start(self) -> NatsCluster:
        for s in self.servers:
            s.start()
        return self

    def stop(self) -> None:
        """Every server is told to stop before any is waited for: stopped one by one, each
        clustered server waited for its peers' route timeouts (up to 10 s each — a CLI
        ``node cluster`` took over 30 s to exit on a loaded machine)."""
        for s in self.servers:
            s.signal_stop()
        deadline = time.monotonic() + 10
        for s in self.servers:
            s.reap(deadline)

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
