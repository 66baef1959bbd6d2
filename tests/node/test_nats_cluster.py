"""Two NATS clusters on one machine never merge, and a taken port is not mistaken for a
started server (regression: CI failed with "no suitable peers for placement" while another
test's cluster, sharing the cluster name, had routed into the orderer suite's cluster)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import time
from pathlib import Path

import pytest

from gridledger.node import nats_cluster
from gridledger.node.nats_cluster import NatsCluster, nats_server_binary, server_info


@pytest.fixture(autouse=True)
def _needs_nats():
    try:
        nats_server_binary()
    except Exception:
        pytest.skip("nats-server is not installed")


def _placements(urls, tries: int) -> list[str]:
    """Try to create a fresh R=3 stream once a second (``tries`` times, stopping at the
    first failure); the failures' messages."""
    import asyncio

    import nats
    import nats.errors
    from nats.js.api import StreamConfig

    async def go() -> list[str]:
        nc = await nats.connect(servers=urls)
        js = nc.jetstream(timeout=3.0)
        failures: list[str] = []
        try:
            for i in range(tries):
                cfg = StreamConfig(name=f"PLACE{i}", subjects=[f"place.{i}"], num_replicas=3)
                for attempt in range(2):  # a timeout on a loaded machine is asked once more
                    try:            # (adding the same stream again is idempotent)
                        await js.add_stream(cfg)
                        break
                    except nats.errors.TimeoutError as exc:
                        if attempt:
                            failures.append(f"timeout: {exc}")
                    except Exception as exc:
                        failures.append(str(exc))
                        break
                if failures:
                    break
                await asyncio.sleep(1.0)
        finally:
            await nc.close()
        return failures

    return asyncio.run(go())


@pytest.mark.parametrize("shared_name", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_a_foreign_cluster_routing_in_is_refused(tmp_path, shared_name):
    """``shared_name``: the defence removed — both clusters named alike, as every cluster
    was before — and the foreign route is taken into the suite's cluster."""
    a = NatsCluster(tmp_path / "a").start()
    b = NatsCluster(tmp_path / "b", size=2, name=a.name if shared_name else "")
    try:
        time.sleep(1.0)
        assert (a.name == b.name) == shared_name
        # a port collision: b's first server routes to a's second server
        conf = b.servers[0].conf
        conf.write_text(re.sub(r"routes: \[[^\]]*\]",
                               f"routes: [nats-route://127.0.0.1:{a.servers[1].cluster_port}]",
                               conf.read_text()))
        b.start()
        # the foreign route is tried (refused, or taken) within a few seconds
        if shared_name:
            # the route is taken, not refused: the meta groups meet. Whether placement then
            # fails depends on which meta leader wins (CI's run and a reproduction here:
            # "no suitable peers for placement, peer offline"; not every time), so the
            # removal test shows the merge, not its timing-dependent symptom
            time.sleep(3.0)
            logs = [(tmp_path / d / "n2.log").read_text() for d in ("a",)] + [
                (tmp_path / "b" / "n1.log").read_text()]
            assert not any("does not match" in log for log in logs)
            assert "Route connection created" in logs[1]
            return
        failures = _placements(a.urls, tries=4)  # a fresh R=3 stream every second
        assert failures == [], failures
        assert "does not match" in (tmp_path / "a" / "n2.log").read_text()
    finally:
        b.stop()
        a.stop()


def test_a_taken_port_is_retried_on_fresh_ports(tmp_path, monkeypatch):
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    taken = held.getsockname()[1]
    real = nats_cluster.free_port
    picks = iter([taken])
    monkeypatch.setattr(nats_cluster, "free_port", lambda: next(picks, None) or real())
    c = NatsCluster(tmp_path / "c", size=1)
    assert c.servers[0].client_port == taken
    try:
        c.start()
        port = c.servers[0].client_port
        assert port != taken and server_info(port)["server_name"] == f"{c.name}-n1"
    finally:
        c.stop()
        held.close()


def test_the_cluster_name_is_kept_with_its_directory(tmp_path):
    first = NatsCluster(tmp_path / "d", size=1)
    again = NatsCluster(tmp_path / "d", size=1)
    other = NatsCluster(tmp_path / "e", size=1)
    assert first.name == again.name != other.name


def _gone(pid: int, timeout_s: float = 10) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return True
        if stat[stat.rindex(")") + 2:].split()[0] == "Z":
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def test_a_restarted_cluster_keeps_its_urls(tmp_path):
    """Validators were started with the cluster's URLs: `node cluster DIR` restarted on
    new ports left them waiting forever (found: a 4-validator network halted, silently)."""
    first = NatsCluster(tmp_path / "k", size=1).start()
    urls = first.urls
    first.stop()
    again = NatsCluster(tmp_path / "k", size=1).start()
    try:
        assert again.urls == urls
        assert server_info(again.servers[0].client_port)["server_name"] == f"{again.name}-n1"
    finally:
        again.stop()


def test_a_kept_port_taken_is_refused_naming_the_file(tmp_path):
    first = NatsCluster(tmp_path / "t", size=1).start()
    port = first.servers[0].client_port
    first.stop()
    held = socket.socket()
    held.bind(("127.0.0.1", port))
    held.listen()
    again = NatsCluster(tmp_path / "t", size=1)
    try:
        with pytest.raises(nats_cluster.ConfigError, match=r"ports\.json"):
            again.start()
    finally:
        again.stop()  # started elsewhere before the fix: never left running
        held.close()


def test_a_dead_server_is_revived_on_its_port(tmp_path):
    c = NatsCluster(tmp_path / "r", size=1).start()
    try:
        s = c.servers[0]
        assert c.revive() == []
        old = s.proc.pid
        os.kill(old, signal.SIGKILL)
        deadline = time.monotonic() + 10  # a Go process is reapable once all its threads end
        while s.exited() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        said = c.revive()
        assert len(said) == 1 and "exited with code -9; restarted" in said[0], said
        assert s.proc is not None and s.proc.pid != old
        assert server_info(s.client_port)["server_name"] == f"{c.name}-n1"
    finally:
        c.stop()


def test_servers_left_by_a_killed_run_are_stopped_before_a_restart(tmp_path):
    """`node cluster` killed with SIGKILL leaves its servers running on the kept ports; the
    next run stops them (their pid file and command line say they are this directory's)."""
    first = NatsCluster(tmp_path / "o", size=1).start()
    orphan = first.servers[0].proc.pid
    urls = first.urls
    first.servers[0].proc = None  # the run is gone: nobody will stop or reap it,
    first._lock.release()         # and the kernel dropped its lock on the folder
    again = NatsCluster(tmp_path / "o", size=1)
    try:
        again.start()
        assert again.urls == urls
        assert again.servers[0].proc.pid != orphan
        assert _gone(orphan)
    finally:
        again.stop()
        if not _gone(orphan, 0):
            with contextlib.suppress(ProcessLookupError):
                os.kill(orphan, signal.SIGKILL)


def test_a_second_run_on_a_live_clusters_folder_is_refused(tmp_path):
    """Only a dead run's servers are orphans: a second `node cluster DIR` beside a live one
    is refused, naming the live run, and leaves its servers alone."""
    live = NatsCluster(tmp_path / "l", size=1).start()
    second = NatsCluster(tmp_path / "l", size=1)
    try:
        held = rf"in use by another NATS cluster run \(pid {os.getpid()}\)"
        with pytest.raises(nats_cluster.ConfigError, match=held):
            second.start()
        assert live.servers[0].exited() is None
        assert server_info(live.servers[0].client_port)["server_name"] == f"{live.name}-n1"
    finally:
        second.stop()
        live.stop()
    NatsCluster(tmp_path / "l", size=1).start().stop()  # its stop let go of the folder


def test_a_folder_run_with_another_size_is_refused_naming_its_size(tmp_path):
    """A 3-server folder run with --size 1 came up on new URLs with R=3 streams a lone
    server cannot serve, and said nothing."""
    NatsCluster(tmp_path / "s", size=1).start().stop()
    with pytest.raises(nats_cluster.ConfigError, match=r"holds a cluster of 1 server .*--size 1"):
        NatsCluster(tmp_path / "s", size=2)
