"""Start and stop a local NATS JetStream cluster (Debian package ``nats-server``).

Used by tests, benchmarks and ``gridledger node cluster`` on one machine: three servers on
loopback, JetStream on, clustered with routes so streams can be replicated R=3 (Raft).

Several clusters may run on one machine at once (parallel test workers, a benchmark beside
the tests). Each has its own cluster name and server names, so a route that reaches another
cluster's server — a port picked as free, then taken by another cluster before its server
bound it — is refused by nats-server instead of merging the two JetStream meta groups (CI
saw exactly that: "no suitable peers for placement, peer offline" until the foreign cluster
stopped). A server counts as started only when the server answering on its client port
names itself as this cluster's server, not when anything answers there.

A cluster restarted on its directory comes back on the same ports (``ports.json``): the
validators were started with its URLs and reconnect to them by themselves; on new ports
they waited forever, silently. While it runs, ``revive`` restarts a server that died
(same ports, same JetStream store), and a server left running by an earlier run that was
killed (its pid in ``nK.pid``, its command line naming this directory's config) is
stopped before the cluster starts again instead of holding the ports.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from gridledger.errors import ConfigError
from gridledger.files import FolderInUse, FolderLock


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


def server_info(port: int, timeout_s: float = 0.5) -> dict[str, object]:
    """The INFO a NATS server sends first on its client port (``server_name``, ``cluster``…).

    Raises OSError when nothing answers, ValueError when what answers is not NATS."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as c:
        c.settimeout(timeout_s)
        buf = b""
        while b"\r\n" not in buf and len(buf) < 65536:
            chunk = c.recv(4096)
            if not chunk:
                break
            buf += chunk
    line = buf.split(b"\r\n", 1)[0]
    if not line.startswith(b"INFO "):
        raise ValueError(f"not a NATS server on port {port}: {line[:40]!r}")
    info = json.loads(line[5:])
    if not isinstance(info, dict):
        raise ValueError(f"not a NATS server on port {port}: INFO is not an object")
    return info


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and has not ended (a zombie has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] not in ("Z", "X")


class PortTaken(ConfigError):
    """A server's port was taken by another process before the server bound it."""


@dataclass
class NatsServer:
    name: str
    client_port: int
    cluster_port: int
    store_dir: Path
    conf: Path
    proc: subprocess.Popen[bytes] | None = None
    server_name: str = ""  # the name in its config: unique per cluster run (see module doc)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"

    @property
    def pid_file(self) -> Path:
        return self.store_dir.parent / f"{self.name}.pid"

    def stop_orphan(self) -> int | None:
        """Stop this server's process left running by an earlier run that was killed (so
        its ports are free again); returns its pid, or None when there was none."""
        try:
            pid = int(self.pid_file.read_text().strip())
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        # only a nats-server started on this very config file: never another program
        # that reused the pid
        try:  # its config argument, relative to its own working directory
            confs = {(Path(f"/proc/{pid}/cwd").resolve() / a.decode(errors="replace")).resolve()
                     for a in cmd[1:] if a}
        except OSError:
            return None
        if not cmd or Path(cmd[0].decode(errors="replace")).name != "nats-server" \
                or self.conf.resolve() not in confs:
            return None
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _running(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _running(pid):
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
        return pid

    def exited(self) -> int | None:
        """The exit code if this server's process has ended (None: running or stopped)."""
        return None if self.proc is None else self.proc.poll()

    def start(self) -> None:
        with open(self.store_dir.parent / f"{self.name}.log", "ab") as log:  # the child keeps its own
            self.proc = subprocess.Popen([nats_server_binary(), "-c", str(self.conf)],
                                         stdout=log, stderr=subprocess.STDOUT)
        want = self.server_name or self.name
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:  # exited: most often a port already in use
                self.proc = None
                tail = self._log_tail()
                kind = PortTaken if "address already in use" in tail else ConfigError
                raise kind(f"nats-server {self.name} exited on start: {tail}")
            try:
                info = server_info(self.client_port, 0.2)
            except (OSError, ValueError):
                time.sleep(0.05)
                continue
            if info.get("server_name") == want:
                return
            # another cluster's server holds our client port: ours will exit (checked above)
            time.sleep(0.05)
        self.kill()
        raise ConfigError(f"nats-server {self.name} did not start on port {self.client_port}")

    def _log_tail(self) -> str:
        try:
            lines = (self.store_dir.parent / f"{self.name}.log").read_text(
                errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        errs = [ln for ln in lines if "[FTL]" in ln or "[ERR]" in ln]
        return (errs or lines or ["(empty log)"])[-1]

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
    name: str = ""  # the cluster name: unique per directory unless given (see module doc)

    def __post_init__(self) -> None:
        # absolute: a server's command line and pid file must name this directory whatever
        # the working directory of the run that finds them (``stop_orphan``)
        self.root = Path(self.root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        # kept in the directory: JetStream's stored Raft groups know their peers by server
        # name, so a cluster restarted on its directory must keep its names
        named = self.root / "cluster-name"
        # a directory an earlier version started: its servers were n1, n2… of "gridledger"
        self._legacy = not self.name and not named.exists() and any(
            (self.root / "n1").glob("*"))
        if self._legacy:
            self.name = "gridledger"
        elif not self.name:
            self.name = (named.read_text().strip() if named.exists()
                         else f"gridledger-{secrets.token_hex(4)}")
        if not self._legacy:
            named.write_text(self.name + "\n")
        self._kept = self._kept_ports()
        self._lock: FolderLock | None = None  # held from start to stop
        self._down: dict[str, float] = {}  # servers revive could not restart: when to retry
        self._configure(self._kept)

    @property
    def ports_file(self) -> Path:
        return self.root / "ports.json"

    def _kept_ports(self) -> list[tuple[int, int]] | None:
        """The client and route ports of this directory's last run.

        Raises ConfigError when that run had another size: its streams' replicas live on
        its servers (a 3-server folder run with ``--size 1`` came up on new URLs, with R=3
        streams a lone server cannot serve, and said nothing)."""
        try:
            got = json.loads(self.ports_file.read_text())
            ports = [(int(c), int(r)) for c, r in got]
        except (OSError, ValueError, TypeError):
            return None
        if len(ports) != self.size:
            raise ConfigError(
                f"{self.root} holds a cluster of {len(ports)} server"
                f"{'s' if len(ports) != 1 else ''} ({self.ports_file}); run it with --size "
                f"{len(ports)}, or give a new folder for a cluster of {self.size}")
        return ports

    def _configure(self, ports: list[tuple[int, int]] | None = None) -> None:
        """Write every server's config on ``ports`` (default: free ones, picked again after
        a port was taken)."""
        self.servers = []
        ports = ports or [(free_port(), free_port()) for _ in range(self.size)]
        for i, (cp, rp) in enumerate(ports):
            name = f"n{i + 1}"
            store = self.root / name
            store.mkdir(exist_ok=True)
            routes = ", ".join(f"nats-route://127.0.0.1:{r}" for j, (_, r) in enumerate(ports) if j != i)
            conf = self.root / f"{name}.conf"
            # clients use exactly the URLs they are given (no gossiped addresses), so a node
            # behind a proxy or firewall cannot bypass it; one server is no cluster (nats-server
            # refuses a JetStream cluster without routes): its streams take replicas 1
            cluster = (f"cluster {{ name: {self.name}, listen: 127.0.0.1:{rp}, routes: [{routes}], "
                       "no_advertise: true }\n") if self.size > 1 else ""
            server_name = name if self._legacy else f"{self.name}-{name}"
            conf.write_text(
                f"server_name: {server_name}\nlisten: 127.0.0.1:{cp}\n"
                f"pid_file: \"{self.root / (name + '.pid')}\"\n"
                f"jetstream {{ store_dir: \"{store}\", max_memory_store: 268435456, "
                f"max_file_store: 2147483648 }}\n" + cluster)
            self.servers.append(NatsServer(name, cp, rp, store, conf, server_name=server_name))

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    def start(self, attempts: int = 3) -> NatsCluster:
        """Start every server; when another process took a picked port first, stop what
        started and try again on fresh ports (up to ``attempts`` times).

        Raises ConfigError when a server does not start, or when another live run holds
        the directory (its servers are not orphans: they are left alone)."""
        if self._lock is None:
            try:
                self._lock = FolderLock(self.root, "cluster.lock", "NATS cluster run")
            except FolderInUse as exc:
                raise ConfigError(str(exc)) from exc
        try:
            for s in self.servers:  # a killed earlier run's servers hold our ports
                s.stop_orphan()
            return self._start(attempts)
        except BaseException:
            self.stop()
            raise

    def _start(self, attempts: int) -> NatsCluster:
        for attempt in range(attempts):
            try:
                for s in self.servers:
                    s.start()
                self.ports_file.write_text(json.dumps(
                    [[s.client_port, s.cluster_port] for s in self.servers]) + "\n")
                return self
            except PortTaken as exc:
                self._stop_servers()
                if self._kept:  # moving would strand the validators on the old URLs
                    raise ConfigError(
                        f"{exc}; {self.root} keeps its servers on the ports of its last run "
                        f"({', '.join(self.urls)}) so that validators started with those "
                        f"URLs reconnect: free the port, or delete {self.ports_file} to start "
                        "on new ports (then restart every validator with the new URLs)"
                    ) from exc
                if attempt == attempts - 1:
                    raise
                self._configure()
        return self

    def revive(self) -> list[str]:
        """Restart every server whose process has ended, on its ports and store; one line
        per server for the operator (what ended, and whether it is back)."""
        said = []
        now = time.monotonic()
        for s in self.servers:
            code = s.exited()
            if code is None and not (s.name in self._down and now >= self._down[s.name]):
                continue
            what = (f"nats-server {s.name} ({s.url}) exited with code {code}" if code is not None
                    else f"nats-server {s.name} ({s.url}) is still down")
            s.proc = None
            try:
                s.start()
                self._down.pop(s.name, None)
                said.append(f"{what}; restarted on the same port and store")
            except ConfigError as exc:
                self._down[s.name] = time.monotonic() + 10  # tried again in 10 s
                said.append(f"{what}; restart failed (again in 10 s): {exc}")
        return said

    def stop(self) -> None:
        """Every server is told to stop before any is waited for: stopped one by one, each
        clustered server waited for its peers' route timeouts (up to 10 s each — a CLI
        ``node cluster`` took over 30 s to exit on a loaded machine)."""
        self._stop_servers()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _stop_servers(self) -> None:
        for s in self.servers:
            s.signal_stop()
        deadline = time.monotonic() + 10
        for s in self.servers:
            s.reap(deadline)

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
