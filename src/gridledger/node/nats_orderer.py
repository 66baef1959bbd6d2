"""Ordering on NATS JetStream: the log is a file-backed stream replicated R=3 (Raft).

Every validator publishes admitted transactions and ticks to the stream subject; JetStream
assigns the total order; each validator consumes the whole stream with an ordered consumer
and cuts the same blocks from it (``BlockCutter``). ``Nats-Msg-Id`` deduplicates: a
transaction re-submitted through several validators (msg id = tx hash) and the tick that
every validator publishes for the same time (msg id = ``tick-<t>``) enter the log once.

nats-py is asyncio; this class runs its loop on a private thread and offers the same
synchronous ``Orderer`` interface as ``LocalOrderer``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

from gridledger.crypto.hashing import sha3_256
from gridledger.errors import ConfigError
from gridledger.node.orderer import Entry


def stream_name(chain_id: str, what: str = "LOG") -> str:
    safe = "".join(c if c.isalnum() else "_" for c in chain_id).upper()
    return f"GL_{safe}_{what}"


def subject(chain_id: str, what: str = "log") -> str:
    safe = "".join(c if c.isalnum() else "_" for c in chain_id)
    return f"gl.{safe}.{what}"


def entry_msg_id(entry: Entry) -> str:
    """Default message id: the tick's second, the transaction's hash, the batch's hash."""
    if entry.kind == "tick":
        return f"tick-{entry.time_s}"
    return sha3_256(entry.tx if entry.kind == "tx" else entry.encode()).hex()


class NatsOrderer:
    """A synchronous ``Orderer`` over a JetStream stream."""

    def __init__(self, urls: Sequence[str], chain_id: str, replicas: int = 3,
                 timeout_s: float = 10.0) -> None:
        self.urls = list(urls)
        self.chain_id = chain_id
        self.replicas = replicas
        self.timeout_s = timeout_s
        self._entries: list[Entry] = []
        self._cond = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="nats-orderer")
        self._thread.start()
        self._nc: Any = None
        self._js: Any = None
        self._call(self._connect())

    def _call(self, coro: Any, timeout: float | None = None) -> Any:
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return fut.result(timeout or self.timeout_s * 8)

    async def _connect(self) -> None:
        import nats
        from nats.js.api import StorageType, StreamConfig

        async def quiet(_e: Exception) -> None:
            # reconnects and failovers are expected (fault tests); the client retries
            return None

        self._nc = await nats.connect(servers=self.urls, max_reconnect_attempts=-1,
                                      reconnect_time_wait=0.2, connect_timeout=self.timeout_s,
                                      error_cb=quiet)
        self._js = self._nc.jetstream(timeout=self.timeout_s)
        # Right after a server failure JetStream may be electing a new meta/stream leader
        # for a few seconds: retry the stream set-up instead of failing the validator.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s * 6
        while True:
            try:
                await self._setup_stream()
                return
            except Exception:
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.5)

    async def _setup_stream(self) -> None:
        from nats.js.api import StorageType, StreamConfig

        cfg = StreamConfig(name=stream_name(self.chain_id), subjects=[subject(self.chain_id)],
                           num_replicas=self.replicas, storage=StorageType.FILE,
                           duplicate_window=300.0)
        try:
            await self._js.stream_info(cfg.name)
        except Exception:
            try:
                await self._js.add_stream(cfg)
            except Exception as exc:
                # another validator may have created it between our two calls
                try:
                    await self._js.stream_info(cfg.name)
                except Exception:
                    raise ConfigError(f"cannot create JetStream stream {cfg.name}: {exc}") from exc
        await self._js.subscribe(subject(self.chain_id), cb=self._on_msg, ordered_consumer=True)

    async def _on_msg(self, msg: Any) -> None:
        seq = msg.metadata.sequence.stream
        try:
            entry = Entry.decode(msg.data)
        except Exception:
            # anyone who can publish on the subject can put garbage in the log; it takes a
            # position (every validator sees the same log) and carries nothing
            entry = Entry("void")
        with self._cond:
            # the ordered consumer delivers in stream order without gaps; a duplicate
            # redelivery after a consumer reset is skipped by sequence
            if seq == len(self._entries) + 1:
                self._entries.append(entry)
                self._cond.notify_all()

    # -- Orderer protocol ------------------------------------------------------
    def append(self, entry: Entry, msg_id: str | None = None) -> int:
        """Publish and wait for the JetStream ack; returns the entry's position.

        ``msg_id`` overrides the deduplication id (default ``entry_msg_id``)."""
        ack = self._call(self._publish(entry, msg_id))
        return int(ack.seq) - 1

    async def _publish(self, entry: Entry, msg_id: str | None = None) -> Any:
        return await self._js.publish(subject(self.chain_id), entry.encode(),
                                      headers={"Nats-Msg-Id": msg_id or entry_msg_id(entry)})

    def append_many(self, entries: Sequence[Entry]) -> list[int]:
        """Publish entries with acks awaited concurrently (one round trip for all)."""
        async def go() -> list[Any]:
            return list(await asyncio.gather(*(self._publish(e) for e in entries)))

        return [int(a.seq) - 1 for a in self._call(go(), timeout=self.timeout_s * 6)]

    def read(self, start: int, limit: int) -> Sequence[Entry]:
        with self._cond:
            return self._entries[start:start + limit]

    def length(self) -> int:
        with self._cond:
            return len(self._entries)

    def wait_for(self, n: int, timeout_s: float | None = None) -> bool:
        """Block until at least ``n`` entries have been consumed locally."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._entries) >= n,
                                       timeout_s if timeout_s is not None else self.timeout_s)

    def close(self) -> None:
        async def shut() -> None:
            if self._nc is not None:
                await self._nc.drain()
            me = asyncio.current_task()
            rest = [t for t in asyncio.all_tasks() if t is not me]
            for t in rest:
                t.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        try:
            self._call(shut(), timeout=5)
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
