"""`gridledger node cluster` stops its NATS servers however it is asked to stop (issue 20.5:
SIGTERM used to leave the three servers running; Ctrl-C stopped them)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gridledger.node.nats_cluster import nats_server_binary


def _children(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after its ')'
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] != "Z"


def _cluster(folder: Path, size: int, ignore_sigint: bool = False) -> subprocess.Popen[str]:
    """`gridledger node cluster FOLDER --size SIZE` started in a process of its own (skips the
    test where nats-server is not installed); its first line names the cluster's URLs."""
    try:
        nats_server_binary()
    except Exception:
        pytest.skip("nats-server is not installed")
    return subprocess.Popen(
        [sys.executable, "-c", "from gridledger.cli.main import main; main()",
         "node", "cluster", str(folder), "--size", str(size)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "COLUMNS": "200"},
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_sigint
        else None)


@pytest.mark.parametrize(("sig", "size", "inherit_ignored"),
                         [(signal.SIGTERM, 3, False), (signal.SIGHUP, 3, False),
                          (signal.SIGINT, 3, False), (signal.SIGTERM, 1, False),
                          (signal.SIGINT, 3, True)])
def test_signal_stops_every_nats_server(tmp_path: Path, sig: signal.Signals, size: int,
                                        inherit_ignored: bool) -> None:
    """Also a one-server "cluster" (nats-server refused a JetStream cluster without routes:
    `node cluster --size 1` failed with "did not start"), and SIGINT when the command
    inherited it ignored, as a background job of a script does (it then hung: a fresh
    clone's `make test` run from a script failed here)."""
    proc = _cluster(tmp_path / "nats", size, ignore_sigint=inherit_ignored)
    servers: list[int] = []
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "NATS cluster:" in line, line + proc.stdout.read()
        servers = _children(proc.pid)
        assert len(servers) == size, servers
        proc.send_signal(sig)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in servers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in servers if _alive(p)], "NATS servers left running"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for p in servers:  # a failed run must not leave its servers behind either
            if _alive(p):
                os.kill(p, signal.SIGKILL)


def test_a_killed_server_is_restarted_and_said(tmp_path: Path) -> None:
    """A server of `node cluster` killed (OOM killer, an operator's mistake) stayed a
    zombie, unsaid; the cluster ran on short of it. Now it is back on its port, and said."""
    proc = _cluster(tmp_path / "nats", 1)
    servers: list[int] = []
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "NATS cluster:" in line, line + proc.stdout.read()
        url = line.split("NATS cluster:")[1].strip()
        servers = _children(proc.pid)
        assert len(servers) == 1, servers
        os.kill(servers[0], signal.SIGKILL)
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout],  # type: ignore[union-attr]
                         daemon=True).start()
        said = ""
        while "exited" not in said:
            try:
                said = lines.get(timeout=15)
            except queue.Empty:
                pytest.fail("the cluster said nothing within 15 s of its server's death")
        assert "exited with code -9; restarted on the same port" in said and url in said, said
        again = _children(proc.pid)
        assert len(again) == 1 and again != servers
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
