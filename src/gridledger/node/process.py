"""A validator as its own process: an orderer (NATS JetStream across processes), an SQLite
store, the HTTP API.

Loop: cut the next block from the log -> execute it (set aside: reads still see the last
certified state) -> publish our vote -> wait for a quorum of votes for one header on the
orderer's vote channel -> store the block with its certificate. Votes are tallied against the
validator set of that height (governance can change it), and a validator votes only while
its key is in that set: a validator added by governance starts with an empty store, replays
the log certifying blocks from the others' durable votes, and votes from its activation
height on. A quorum for a header other than ours means we diverged: we drop our block and
stop signing (operators investigate).

A producer thread publishes admitted transactions in batches (``orderer.batch_entries``)
and this validator's signed ticks (``node.ticks``): every ``tick_s`` seconds while the
chain's time is behind its clock, and, with ``tick_s`` below 1, whenever transactions
arrived since its last tick.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gridledger.crypto.keystore import load_key
from gridledger.errors import RejectedTx
from gridledger.files import FolderLock
from gridledger.ledger.block import Certificate, Header, Vote
from gridledger.ledger.genesis import Genesis
from gridledger.ledger.tx import decode_tx
from gridledger.node.admission import Mempool
from gridledger.node.embedded import reputation_quota
from gridledger.node.orderer import BlockCutter, Entry, Orderer, batch_entries
from gridledger.node.service import ValidatorService
from gridledger.node.validator import Validator
from gridledger.node.votes import VoteBoard, VoteTally, board_check

Keys = list[tuple[str, bytes]]


@dataclass
class ProcessConfig:
    node_dir: Path
    nats_urls: list[str]
    http_host: str = "127.0.0.1"
    http_port: int = 0
    tick_s: float = 1.0
    max_block_txs: int = 500
    replicas: int = 3
    fault: str | None = None
    quota_rate_per_s: float = 20.0
    quota_burst: float = 200.0
    network: str | None = None
    """The network model the dashboard's network panel draws (a SimBench code or pandapower
    JSON, ``grid.load_grid``): the power flow of the last certified readings."""


class ValidatorProcess:
    """One validator: consumes the log, votes, certifies, stores, serves the API.

    ``orderer`` defaults to NATS JetStream at ``cfg.nats_urls``; tests may pass a shared
    ``LocalOrderer`` to run several validator processes' logic in one Python process.
    """

    def __init__(self, cfg: ProcessConfig, passphrase: str, orderer: Orderer | None = None) -> None:
        """Raises ``FolderInUse`` when another live process runs on ``cfg.node_dir`` (two
        processes on one store: the second's blocks hit the first's UNIQUE heights and
        wedged it for good), ``KeystoreError`` for a wrong passphrase, ``ConfigError`` …"""
        self.cfg = cfg
        self._folder = FolderLock(cfg.node_dir, "validator.lock", "validator process")
        try:
            self._open(cfg, passphrase, orderer)
        except BaseException:
            self._folder.release()
            raise

    def _open(self, cfg: ProcessConfig, passphrase: str, orderer: Orderer | None) -> None:
        net_dir = cfg.node_dir.parent
        self.genesis = Genesis.decode((net_dir / "genesis.cbor").read_bytes())
        meta = json.loads((cfg.node_dir / "node.json").read_text())
        key = load_key(cfg.node_dir / "validator.key.json", passphrase)
        self.validator = Validator(int(meta["index"]), key, self.genesis,
                                   cfg.node_dir / "ledger.sqlite", fault=cfg.fault)
        if orderer is None:
            from gridledger.node.nats_orderer import NatsOrderer

            index = self.validator.index
            orderer = NatsOrderer(cfg.nats_urls, self.genesis.chain_id, cfg.replicas,
                                  on_link=lambda msg: print(f"validator {index}: {msg}",
                                                            flush=True))
        self.orderer: Orderer = orderer
        self.board = VoteBoard(self.orderer, self.genesis.chain_id)
        self.cutter = BlockCutter(self.genesis.chain_id, cfg.max_block_txs,
                                  self.validator.log_end, self.validator.app.slot_time)
        quota = reputation_quota(self.validator)
        quota.rate_per_s, quota.burst = cfg.quota_rate_per_s, cfg.quota_burst
        self.mempool = Mempool(self.validator.app, capacity=50_000, quota=quota)
        self.lock = threading.RLock()
        self.stop = threading.Event()
        self.api: Any = None  # the API server (``ServerThread``) while ``run`` serves one
        self.genesis_time = int(self.genesis.params.get("genesis_time_unix", 0))
        self._inflight: Header | None = None
        self._certified: dict[int, tuple[bytes, Keys]] = {}
        self._recorded: set[tuple[int, int, bytes]] = set()  # equivocations stored (recent)
        self._unpublished: list[Entry] = []
        self._pre_pos = 0  # log entry (and transaction within it) up to which signatures
        self._pre_off = 0  # were checked ahead of execution
        self._tick_pos = -1  # log position of our last tick
        # offenders named so far, rebuilt from the evidence in our store after a restart
        self.offenders: dict[int, set[str]] = {}
        for _h, kind, body in self.validator.store.evidence():
            reason = "equivocation" if kind == "equivocation" else str(body.get("reason", kind))
            self.offenders.setdefault(int(body["validator"]), set()).add(reason)
        self.service = ValidatorService(
            self.validator, self.lock,
            lambda raws: self.mempool.admit_many(raws, time.monotonic()), self._counters)

    def _counters(self) -> dict[str, Any]:
        # the mempool is thread-safe and admission looks up single state entries, so
        # admission and these counters do not wait for the node lock
        return {"mempool": len(self.mempool), "log_length": self.orderer.length(),
                "offenders": {str(k): sorted(v) for k, v in list(self.offenders.items())},
                "votes_rejected": self.board.rejected, "vote_heights_open": self.board.heights(),
                "votes_held": self.board.held(),
                "awaiting_certificate": None if self._inflight is None else self._inflight.height,
                "ordering_lost_s": self._ordering_lost_s()}

    def _ordering_lost_s(self) -> float | None:
        """Seconds since this node lost its connection to the ordering cluster (None: it has
        one, or its orderer is in-process)."""
        lost = getattr(self.orderer, "lost_at", None)
        return None if lost is None else round(time.monotonic() - lost, 1)

    # block pipeline ---------------------------------------------------------
    def step(self) -> bool:
        """Advance by one block if the log has one; returns whether a block was finalised.

        Idempotent under NATS failures: the executed block stays in flight and votes are
        re-published (message-id deduplication) until a quorum certificate appears.
        """
        v = self.validator
        with self.lock:
            keys = v.app.validator_keys()  # the set certifying the next height
            if self._inflight is None:
                blk = self.cutter.next_block(self.orderer, keys)
                if blk is None:
                    return False
                self._inflight = v.execute(blk, self.mempool.cache.check)
            header = self._inflight
        self.board.open(header.height, keys)
        for vote in v.votes(header):  # none while our key is not in this height's set
            self.board.publish(vote)
        cert: list[Certificate | None] = [None]

        def have_quorum(votes: list[Vote]) -> bool:
            tally = VoteTally(len(keys), self.genesis.chain_id, header.height, check=board_check)
            for vt in votes:
                tally.add(vt, keys)
            cert[0] = tally.certificate()
            return cert[0] is not None

        # while the others vote, check the signatures of the transactions ordered after
        # this block, so the next block executes without waiting for them
        deadline = time.monotonic() + 5.0
        while not self.stop.is_set() and time.monotonic() < deadline:
            busy = self.preverify() > 0
            if self.board.wait(header.height, have_quorum, timeout_s=0.0 if busy else 0.05):
                break
        if cert[0] is None:
            return False  # still in flight; the caller retries (and re-publishes our vote)
        with self.lock:
            ok = v.finalize(cert[0])
            self._inflight = None
        # keep each height's validator set with it: a governance change can make the sets
        # of two consecutive heights differ
        self._certified[header.height] = (cert[0].header_hash, keys)
        # audit the previous height too: a faulty validator's votes may arrive after the
        # quorum was already reached
        for h in (header.height - 1, header.height):
            if h in self._certified:
                self.audit(h, *self._certified[h])
        self._certified.pop(header.height - 2, None)
        self.board.close_below(header.height - 1)
        self.orderer.forget_before(min(self.cutter.pos, self._pre_pos))
        if ok:
            self.service.notify(header, v.last_result)
        return True

    def audit(self, height: int, certified: bytes, keys: Keys) -> None:
        """Name every validator whose valid votes at ``height`` equivocated or were for a
        header other than the certified one; keep the evidence in our store. (An invalid
        vote names nobody: on the shared vote channel it proves nothing about its index.)"""
        tally = VoteTally(len(keys), self.genesis.chain_id, height, check=board_check)
        for vt in self.board.votes(height):
            tally.add(vt, keys)
        for i, vote in tally.voted.items():
            if vote.header_hash != certified and i not in tally.offenders:
                tally.offenders[i] = "voted for a header the quorum did not certify"
        with self.lock:
            for i, why in sorted(tally.offenders.items()):
                if why not in self.offenders.get(i, set()):
                    self.offenders.setdefault(i, set()).add(why)
                    if why != "equivocation":
                        self.validator.store.add_evidence(height, "fault", {"validator": i, "reason": why})
            for ev in tally.evidence:
                seen = (ev.height, ev.validator, ev.second.header_hash)
                if seen not in self._recorded:
                    self._recorded.add(seen)
                    self.validator.store.add_evidence(ev.height, "equivocation", ev.to_obj())
            # audits look one height back: older entries can go (bounded memory)
            self._recorded = {r for r in self._recorded if r[0] >= height - 1}

    def preverify(self, max_sigs: int = 16) -> int:
        """Check up to ``max_sigs`` signatures of ordered transactions not yet executed.

        Runs in idle time (waiting for votes or for the log), on the main thread. Results go
        into the signature cache that admission fills and execution reads, keyed by (tx
        hash, key address), so every signature is still checked once by this validator,
        against the key the state names when the transaction executes (a key rotated in
        between misses the cache and is checked then). Returns how many were checked.
        """
        if self._pre_pos < self.cutter.pos:  # executed meanwhile: nothing to do there
            self._pre_pos, self._pre_off = self.cutter.pos, 0
        app, cache = self.validator.app, self.mempool.cache
        n = 0
        for e in self.orderer.read(self._pre_pos, 64):
            txs = e.txs()
            while self._pre_off < len(txs):
                if n >= max_sigs:
                    return n  # resume inside this entry next time (batches hold hundreds)
                raw = txs[self._pre_off]
                self._pre_off += 1
                try:
                    tx = decode_tx(raw)
                except RejectedTx:
                    continue
                try:
                    alg, pk = app.signer_key(tx.sender)
                except RejectedTx:
                    continue  # unknown sender: execution rejects it without a signature check
                if alg != tx.alg or cache.known(tx, alg, pk):
                    continue
                cache.check(tx, alg, pk)
                n += 1
            self._pre_pos, self._pre_off = self._pre_pos + 1, 0
        return n

    # producers ----------------------------------------------------------------
    def publish_pending(self) -> None:
        """Publish admitted transactions, many per log message (``batch_entries``); a failed
        publish is retried with the same messages, never dropped (the log deduplicates by
        message id: a batch's hash)."""
        # producer thread only (the mempool has its own lock): never waits for execution
        taken = self.mempool.take(self.cfg.max_block_txs)
        self._unpublished += batch_entries([t.raw for t in taken], self.cfg.max_block_txs)
        if self._unpublished:
            self.orderer.append_many(self._unpublished)
            self._unpublished = []

    def _txs_since_our_tick(self) -> bool:
        """Transactions ordered after our last tick and not yet cut into a block."""
        start = max(self._tick_pos + 1, self.cutter.pos)
        return any(e.kind in ("tx", "txs") for e in self.orderer.read(start, 4096))

    def publish_tick(self) -> None:
        """Publish this validator's signed tick(s) if the chain needs one.

        A tick carries this validator's clock in milliseconds since genesis. It is needed
        while the chain's time (whole seconds) is behind our clock, and, with ``tick_s``
        below 1, when transactions were ordered since our last tick (a busy chain then
        closes a block every ``tick_s``; an idle one adds one empty block per second).
        """
        now_ms = int((time.time() - self.genesis_time) * 1000)
        behind = now_ms // 1000 > self.cutter.slot_time
        if behind or (self.cfg.tick_s < 1 and self._txs_since_our_tick()):
            entries = [Entry("tick", tick=t) for t in self.validator.ticks(now_ms)]
            if entries:
                self._tick_pos = max(self.orderer.append_many(entries))

    def run(self) -> None:
        """Run until ``stop`` is set: producer thread + block loop (+ API if a port is set)."""
        api = self.api = self._start_api() if self.cfg.http_port else None

        def producer() -> None:
            last_tick = 0.0
            while not self.stop.is_set():
                try:
                    self.publish_pending()
                    now = time.monotonic()
                    if now - last_tick >= self.cfg.tick_s:
                        self.publish_tick()
                        last_tick = now
                except Exception:
                    time.sleep(0.2)  # NATS failover in progress; the client reconnects
                time.sleep(0.02)

        th = threading.Thread(target=producer, daemon=True)
        th.start()
        retried, repeats = "", 0  # the last error retried after, and its repeats since
        try:
            while not self.stop.is_set():
                if api is not None and api.failed:  # a validator does not run on unseen
                    raise RuntimeError(f"validator {self.validator.index}: its API on "
                                       f"{api.host}:{api.port} stopped: {api.error!r}")
                try:
                    if not self.step() and not self.preverify():
                        self.orderer.wait_for(self.cutter.scanned + 1, timeout_s=0.2)
                except sqlite3.Error as exc:
                    # the store refused a write (disk full, I/O error, another writer): the
                    # block in flight is gone from the validator, and retrying spun forever
                    # ("no pending block" every 0.3 s) on a stale height. Stop: a restart
                    # recovers from what the store holds.
                    raise RuntimeError(
                        f"validator {self.validator.index}: its store "
                        f"{self.validator.store.path} failed ({type(exc).__name__}: {exc}); "
                        "stopped: free the disk or fix the store, then start it again (it "
                        "recovers from its store and the log)") from exc
                except Exception as exc:  # NATS failover: reconnect happens underneath
                    # said once per kind of error, not every 0.3 s (a NATS outage printed
                    # dozens of identical lines); the count comes with the next one said
                    said = repr(exc)
                    if said != retried:
                        more = f" (the previous one {repeats} more times)" if repeats else ""
                        print(f"validator {self.validator.index}: retrying after {said}{more}",
                              flush=True)
                        retried, repeats = said, 0
                    else:
                        repeats += 1
                    time.sleep(0.3)
                    continue
                if retried:
                    more = f", {repeats} more times" if repeats else ""
                    print(f"validator {self.validator.index}: going again after "
                          f"{retried}{more}", flush=True)
                    retried, repeats = "", 0
        finally:
            self.stop.set()
            th.join(timeout=2)
            if api is not None:
                api.stop(timeout_s=2)
            self.board.close()
            self.orderer.close()
            self.service.close()
            self.validator.close()
            self._folder.release()

    def _start_api(self) -> Any:
        """The API server, listening before the block loop starts (``ServerThread``: a port
        in use raises ``ServeError`` here, not in the server's thread)."""
        from gridledger.api import create_app
        from gridledger.api.limits import ServerThread

        grid = None
        if self.cfg.network is not None:
            from gridledger.grid import load_grid
            from gridledger.grid.single_line import ledger_grid_source

            grid = ledger_grid_source(load_grid(self.cfg.network))
        return ServerThread(create_app(self.service, grid=grid), self.cfg.http_host,
                            self.cfg.http_port, name=f"api-{self.validator.index}")
