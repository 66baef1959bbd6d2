"""Ordering on NATS JetStream: the log and the vote channel, each a file-backed stream
replicated R=3 (Raft).

``GL_<chain>_LOG`` (subject ``gl.<chain>.log``): every validator publishes admitted
transactions (in batches) and its signed ticks; JetStream assigns the total order; each
validator reads the whole stream in order and cuts the same blocks from it
(``BlockCutter``). The log is fetched by a pull consumer into a bounded window: entries a
node has cut are forgotten (``forget_before``), and fetching pauses while the window is
full, so memory grows neither with the chain nor with a flood of entries. ``Nats-Msg-Id``
deduplicates by content: a transaction re-submitted through several validators (message id
= its hash), a batch or tick re-published after a failed acknowledgement (message id = the
entry's hash), enter the log once.

``GL_<chain>_VOTES`` (subjects ``gl.<chain>.votes.<height>``): one subject per height, so a
validator follows only the heights it works on (``follow_votes``): the votes stored for a
height are fetched by subject when it is followed, new ones arrive on one long-lived
consumer of all vote subjects, which drops heights nobody follows without decoding them.
Votes published for heights far ahead are never read into memory until the chain gets
there. A height still followed a second after it was opened has its stored votes fetched again
every second (``vote_poll_s``): the push consumer of new votes can be silent for many seconds
after a NATS server dies (until nats-py's ordered consumer misses its heartbeats and is
remade on another server) — measured: a chain stalled ~20 s at one height after a kill -9,
with every vote it needed already stored in the stream. Votes are deduplicated by the board
before any signature check, so a re-fetch costs a few direct reads.

nats-py is asyncio; this class runs its loop on a private thread and offers the same
synchronous ``Orderer`` protocol as ``LocalOrderer``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from gridledger.crypto.hashing import sha3_256
from gridledger.errors import ConfigError
from gridledger.node.orderer import Entry

MAX_PAYLOAD_BYTES = 1024 * 1024  # nats-server's default max_payload


def stream_name(chain_id: str, what: str = "LOG") -> str:
    safe = "".join(c if c.isalnum() else "_" for c in chain_id).upper()
    return f"GL_{safe}_{what}"


def subject(chain_id: str, what: str = "log") -> str:
    safe = "".join(c if c.isalnum() else "_" for c in chain_id)
    return f"gl.{safe}.{what}"


def entry_msg_id(entry: Entry) -> str:
    """Message id from content: the transaction's hash, or the hash of the encoded batch or
    signed tick (so only a re-publication of the same bytes is deduplicated)."""
    return sha3_256(entry.tx if entry.kind == "tx" else entry.encode()).hex()


QUICK_S = 2.0
"""How long a health check or a stored vote's read waits for JetStream's answer (retried,
not failed, after): a request to a server that died is never answered, and the client's
JetStream timeout (``timeout_s``, 10 s) is for publishes, which must not fail under load."""

VOTE_HEARTBEAT_S = 1.0
"""The vote consumer's idle heartbeat: nats-py remakes an ordered consumer after two missed
heartbeats, so a consumer lost with its server is back after ~2 s (nats-py's default, 5 s,
left a chain without certificates for 10-20 s after a kill -9 of one NATS server)."""


FIRST_CONNECT_S = 15.0
"""How long a new orderer tries to reach any of its NATS servers before it gives up."""

JS_REPLICAS_NOT_CLUSTERED = 10074
"""JetStream's error code for "replicas > 1 not supported in non-clustered mode"."""


class ReplicasNotClustered(ConfigError):
    """Streams of several replicas asked of a lone (non-clustered) NATS server."""


def vote_subject(chain_id: str, height: int) -> str:
    return f"{subject(chain_id, 'votes')}.{height}"


class NatsOrderer:
    """A synchronous ``Orderer`` over a JetStream stream."""

    def __init__(self, urls: Sequence[str], chain_id: str, replicas: int = 3,
                 timeout_s: float = 10.0, max_buffered: int = 20_000,
                 max_buffered_bytes: int = 128 * 1024 * 1024,
                 vote_poll_s: float | None = 1.0,
                 on_link: Callable[[str], None] | None = None) -> None:
        self.urls = list(urls)
        # told when the connection to every server is lost and when it is back (a validator
        # prints it: it used to wait for a cluster that had gone, silently)
        self.on_link = on_link
        self.lost_at: float | None = None  # monotonic time the connection was lost, if it is
        self.chain_id = chain_id
        self.replicas = replicas
        self.timeout_s = timeout_s
        self.max_buffered = max_buffered
        self.max_buffered_bytes = max_buffered_bytes
        # the log from position ``_base`` on, as far as it has been fetched; entries below
        # ``_base`` were forgotten (``forget_before``): memory holds a window, not the chain
        self._entries: list[Entry] = []
        self._sizes: list[int] = []
        self._base = 0
        self._bytes = 0
        self._closing = False
        self._followers: dict[int, list[Callable[[bytes], None]]] = {}
        self._followed_at: dict[int, float] = {}  # height -> loop time it was first followed
        # None: no re-fetch (only the push consumer delivers new votes: the removal test)
        self.vote_poll_s = vote_poll_s
        self._cond = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="nats-orderer")
        self._thread.start()
        self._nc: Any = None
        self._js: Any = None
        self._last_error: Exception | None = None
        self._call(self._connect())

    def _call(self, coro: Any, timeout: float | None = None) -> Any:
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return fut.result(timeout or self.timeout_s * 8)

    async def _connect(self) -> None:
        import nats
        from nats.js.api import DeliverPolicy

        async def quiet(e: Exception) -> None:
            # reconnects and failovers are expected (fault tests); the client retries. The
            # last error is kept to say why a first connection never came
            self._last_error = e

        async def lost() -> None:
            if self._closing or self.lost_at is not None:
                return
            self.lost_at = time.monotonic()
            if self.on_link is not None:
                self.on_link(f"lost the NATS connection ({', '.join(self.urls)}); "
                             "reconnecting, no block is ordered meanwhile")

        async def back() -> None:
            was, self.lost_at = self.lost_at, None
            if self.on_link is not None and was is not None:
                url = self._nc.connected_url if self._nc is not None else None
                where = f"{url.scheme}://{url.netloc}" if url is not None else "NATS"
                self.on_link(f"reconnected to {where} after {time.monotonic() - was:.1f} s")

        # the first connection is bounded: with max_reconnect_attempts=-1 the client tries
        # forever, and a mistyped --nats (or no cluster) left `node start` silent for 84 s,
        # then "cannot start the validator: " with nothing after it
        try:
            self._nc = await asyncio.wait_for(nats.connect(
                servers=self.urls, max_reconnect_attempts=-1, reconnect_time_wait=0.2,
                connect_timeout=self.timeout_s, error_cb=quiet, disconnected_cb=lost,
                reconnected_cb=back), timeout=FIRST_CONNECT_S)
        except TimeoutError:  # asyncio's is the builtin since 3.11
            why = self._last_error
            raise ConfigError(
                f"cannot reach NATS at {', '.join(self.urls)} within {FIRST_CONNECT_S:.0f} s"
                f"{f' ({why!s})' if why is not None and str(why) else ''}: is the cluster "
                "running, and are these the URLs it printed?") from None
        self._js = self._nc.jetstream(timeout=self.timeout_s)
        # Right after a server failure JetStream may be electing a new meta/stream leader
        # for a few seconds: retry the stream set-up instead of failing the validator.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s * 6
        while True:
            try:
                await self._ensure_stream(stream_name(self.chain_id), subject(self.chain_id))
                await self._ensure_stream(stream_name(self.chain_id, "VOTES"),
                                          subject(self.chain_id, "votes") + ".*")
                # new votes only: a height's stored votes are fetched when it is followed
                await self._js.subscribe(subject(self.chain_id, "votes") + ".*", cb=self._on_vote,
                                         ordered_consumer=True, deliver_policy=DeliverPolicy.NEW,
                                         stream=stream_name(self.chain_id, "VOTES"),
                                         idle_heartbeat=VOTE_HEARTBEAT_S)
                break
            except ReplicasNotClustered:
                raise
            except Exception:
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.5)

        self._consumer = asyncio.ensure_future(self._consume())
        self._poller = (asyncio.ensure_future(self._poll_votes(self.vote_poll_s))
                        if self.vote_poll_s else None)

    async def _ensure_stream(self, name: str, subj: str) -> None:
        from nats.js.api import StorageType, StreamConfig

        cfg = StreamConfig(name=name, subjects=[subj], num_replicas=self.replicas,
                           storage=StorageType.FILE, duplicate_window=300.0)
        try:
            await self._js.stream_info(cfg.name)
        except Exception:
            try:
                await self._js.add_stream(cfg)
            except Exception as exc:
                if getattr(exc, "err_code", None) == JS_REPLICAS_NOT_CLUSTERED:
                    # no retry makes a lone server a cluster (it waited 60 s to say so)
                    raise ReplicasNotClustered(
                        f"cannot create JetStream stream {cfg.name} with {self.replicas} "
                        "replicas: the NATS server is not clustered; start the validator with "
                        "--replicas 1 (as `gridledger node cluster --size 1` says)") from exc
                # another validator may have created it between our two calls
                try:
                    await self._js.stream_info(cfg.name)
                except Exception:
                    raise ConfigError(f"cannot create JetStream stream {cfg.name}: {exc}") from exc

    def _room(self) -> int:
        """How many entries may be fetched now (0: the window is full)."""
        with self._cond:
            free_bytes = self.max_buffered_bytes - self._bytes
            if free_bytes <= 0:
                return 0
            # a message is at most NATS's payload limit: a batch cannot overshoot the budget
            # by more than itself
            by_bytes = max(1, free_bytes // MAX_PAYLOAD_BYTES)
            return max(0, min(self.max_buffered - len(self._entries), by_bytes))

    async def _consume(self) -> None:
        """Fetch the log in order into the window, pausing while the window is full (the
        node forgets what it has cut: ``forget_before``), so a node far behind, or a flood
        of entries, never holds more than ``max_buffered`` entries / bytes."""
        from nats.errors import TimeoutError as NatsTimeout
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        psub: Any = None
        idle = 0  # consecutive empty fetches
        while not self._closing:
            room = self._room()
            if not room:
                await asyncio.sleep(0.02)
                continue
            with self._cond:
                want = self._base + len(self._entries) + 1  # next stream sequence
            try:
                if psub is None:
                    cfg = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                         opt_start_seq=want, ack_policy=AckPolicy.NONE,
                                         inactive_threshold=30.0, mem_storage=True,
                                         num_replicas=1)
                    # QUICK_S: right after a server died the meta layer may still place the
                    # new consumer on it, and that request is never answered (measured: 10 s
                    # lost to the JetStream timeout); asking again places it elsewhere
                    psub = await asyncio.wait_for(
                        self._js.pull_subscribe(subject(self.chain_id),
                                                stream=stream_name(self.chain_id), config=cfg),
                        QUICK_S)
                msgs = await psub.fetch(batch=min(256, room), timeout=1.0)
                idle = 0
            except NatsTimeout:
                # nothing new — or the consumer's server died (an R1 consumer's fetches then
                # only time out): after 3 quiet seconds check it still exists, else remake it
                idle += 1
                if idle >= 3 and psub is not None:
                    idle = 0
                    try:  # a consumer lost with its server does not answer: QUICK_S
                        await asyncio.wait_for(psub.consumer_info(), QUICK_S)
                    except Exception:
                        psub = None
                continue
            except asyncio.CancelledError:
                raise
            except Exception:
                psub = None  # consumer lost (a server failed): make a new one from ``want``
                await asyncio.sleep(0.3)
                continue
            for msg in msgs:
                if not self._accept(msg):
                    psub = None  # a gap: start again from the next sequence we need
                    break

    def _accept(self, msg: Any) -> bool:
        """Append ``msg`` if it is the next entry; False on a gap."""
        seq = int(msg.metadata.sequence.stream)
        try:
            entry = Entry.decode(msg.data)
        except Exception:
            # anyone who can publish on the subject can put garbage in the log; it takes a
            # position (every validator sees the same log) and carries nothing
            entry = Entry("void")
        with self._cond:
            nxt = self._base + len(self._entries) + 1
            if seq < nxt:
                return True  # a duplicate after a consumer reset
            if seq > nxt:
                return False
            self._entries.append(entry)
            self._sizes.append(len(msg.data))
            self._bytes += len(msg.data)
            self._cond.notify_all()
            return True

    # -- Orderer protocol ------------------------------------------------------
    def append(self, entry: Entry) -> int:
        """Publish and wait for the JetStream ack; returns the entry's position."""
        ack = self._call(self._publish(entry))
        return int(ack.seq) - 1

    async def _publish(self, entry: Entry) -> Any:
        return await self._js.publish(subject(self.chain_id), entry.encode(),
                                      headers={"Nats-Msg-Id": entry_msg_id(entry)})

    def append_many(self, entries: Sequence[Entry]) -> list[int]:
        """Publish entries with acks awaited concurrently (one round trip for all)."""
        async def go() -> list[Any]:
            return list(await asyncio.gather(*(self._publish(e) for e in entries)))

        return [int(a.seq) - 1 for a in self._call(go(), timeout=self.timeout_s * 6)]

    def read(self, start: int, limit: int) -> Sequence[Entry]:
        """Entries from ``start``; none for a position already forgotten."""
        with self._cond:
            if start < self._base:
                return []
            i = start - self._base
            return self._entries[i:i + limit]

    def length(self) -> int:
        with self._cond:
            return self._base + len(self._entries)

    def wait_for(self, n: int, timeout_s: float | None = None) -> bool:
        """Block until at least ``n`` entries have been consumed locally."""
        with self._cond:
            return self._cond.wait_for(lambda: self._base + len(self._entries) >= n,
                                       timeout_s if timeout_s is not None else self.timeout_s)

    def forget_before(self, position: int) -> None:
        """Drop entries below ``position`` (already cut into blocks): the window moves on."""
        with self._cond:
            drop = min(max(0, position - self._base), len(self._entries))
            if drop:
                self._bytes -= sum(self._sizes[:drop])
                del self._entries[:drop]
                del self._sizes[:drop]
                self._base += drop

    def buffered(self) -> int:
        """Entries held in memory (the window)."""
        with self._cond:
            return len(self._entries)

    # -- the vote channel ---------------------------------------------------------
    def publish_vote(self, height: int, data: bytes) -> None:
        """Publish an encoded vote on its height's subject; its message id is the hash of
        the bytes (re-publishing the same vote is deduplicated, and a forger can never take
        a real vote's id first)."""
        async def go() -> None:
            await self._js.publish(vote_subject(self.chain_id, height), data,
                                   headers={"Nats-Msg-Id": sha3_256(data).hex()})

        self._call(go())

    def follow_votes(self, height: int, deliver: Callable[[bytes], None]) -> Callable[[], None]:
        """Every stored vote of ``height`` (fetched by subject), then new ones as they come
        (one long-lived consumer of all vote subjects serves every followed height)."""
        with self._cond:
            self._followers.setdefault(height, []).append(deliver)
            self._followed_at.setdefault(height, self._loop.time())

        def stop() -> None:
            with self._cond:
                subs = self._followers.get(height, [])
                if deliver in subs:
                    subs.remove(deliver)
                if not subs:
                    self._followers.pop(height, None)
                    self._followed_at.pop(height, None)

        try:
            self._call(self._fetch_votes(height, deliver))
        except BaseException:
            stop()
            raise
        return stop

    async def _poll_votes(self, every_s: float) -> None:
        """Fetch the stored votes of every height followed for ``every_s`` or longer again,
        every ``every_s`` (see the module doc: a silent push consumer after a server died)."""
        loop = asyncio.get_running_loop()
        while not self._closing:
            await asyncio.sleep(every_s)
            now = loop.time()
            with self._cond:
                due = sorted(h for h, t in self._followed_at.items() if now - t >= every_s)
            for height in due[:8]:  # the chain works on one or two heights at a time
                def fanout(data: bytes, height: int = height) -> None:
                    with self._cond:
                        subs = list(self._followers.get(height, ()))
                    for deliver in subs:
                        deliver(data)
                try:
                    await self._fetch_votes(height, fanout, patience_s=every_s)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    break  # a leader election: the next round tries again

    async def _fetch_votes(self, height: int, deliver: Callable[[bytes], None],
                           patience_s: float | None = None) -> None:
        from nats.js.errors import NotFoundError

        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.timeout_s * 3 if patience_s is None else patience_s)
        seq = 1
        while True:
            try:
                # one request waits QUICK_S, not the JetStream timeout: a request sent to a
                # dead stream leader would hold the poll for 10 s after a new one was elected
                msg = await asyncio.wait_for(
                    self._js.get_msg(stream_name(self.chain_id, "VOTES"), seq=seq,
                                     subject=vote_subject(self.chain_id, height), next=True),
                    QUICK_S)
            except NotFoundError:
                return  # no more stored votes of this height
            except Exception:
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.3)  # a stream leader election: try again
                continue
            if msg.data:
                deliver(msg.data)
            seq = int(msg.seq) + 1

    async def _on_vote(self, msg: Any) -> None:
        try:
            height = int(msg.subject.rsplit(".", 1)[1])
        except (ValueError, IndexError):
            return
        with self._cond:
            followers = list(self._followers.get(height, ()))
        for deliver in followers:  # heights nobody follows are not even decoded
            deliver(msg.data)

    def close(self) -> None:
        async def shut() -> None:
            self._closing = True
            self._consumer.cancel()
            await asyncio.gather(self._consumer, return_exceptions=True)
            if self._nc is not None:
                # every publish was acknowledged already: nothing to flush, no need to drain.
                # Without a server (the cluster gone) close() raises or waits: bounded, and
                # the tasks below are cancelled whatever it does (they were left pending:
                # "Task was destroyed but it is pending!" and "Event loop is closed" tracebacks
                # on every stop of a validator whose cluster was down)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._nc.close(), timeout=2)
            me = asyncio.current_task()
            rest = [t for t in asyncio.all_tasks() if t is not me]
            for t in rest:
                t.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        with contextlib.suppress(Exception):  # closing a broken connection: nothing to keep
            self._call(shut(), timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
