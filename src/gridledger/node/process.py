"""A validator as its own process: NATS JetStream log + vote exchange, SQLite store, HTTP API.

Streams (both file-backed, replicated R=3 on a 3-server cluster):
  ``GL_<chain>_LOG``    transactions and ticks — the total order every validator cuts blocks from
  ``GL_<chain>_VOTES``  ML-DSA votes over block headers; durable, so a validator that restarts
                        finds the certificates of blocks it missed next to the log itself

Loop: cut the next block from the log -> execute -> publish our vote -> wait for a quorum of
votes for one header -> store the block with its certificate. Votes are tallied against the
validator set active at that height (governance can change it), and a validator votes only
while its key is in that set: a validator added by governance starts the process with an
empty store, replays the log certifying blocks from the durable votes of the others, and
votes from its activation height on. A quorum for a header other
than ours means we diverged: we drop our block and stop signing (operators investigate).
Every ``tick_s`` seconds each validator publishes a tick (``publish_tick``); message-id
deduplication keeps one tick per period in the log. Admitted transactions are published in
batches, one log message for many (``batch_entries``).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gridledger.crypto.hashing import sha3_256
from gridledger.crypto.keystore import load_key, save_key
from gridledger.crypto.sig import SigningKey
from gridledger.errors import ConfigError, RejectedTx
from gridledger.ledger.block import Certificate, Vote, vote_ok
from gridledger.ledger.genesis import Genesis, make_genesis
from gridledger.ledger.modules.registry.keeper import get_participant
from gridledger.ledger.tx import decode_tx
from gridledger.node.embedded import VoteTally
from gridledger.node.nats_orderer import NatsOrderer, stream_name, subject
from gridledger.node.orderer import BlockCutter, Entry
from gridledger.node.validator import Validator
from gridledger.ledger import codec


# -- node init ------------------------------------------------------------------
def init_network(out: Path, validators: int, participants: int, chain_id: str,
                 passphrase: str, balance_micro: int = 100_000_000,
                 scrypt_n: int = 2**15) -> list[Path]:
    """Create genesis, validator keys (encrypted) and participant keys for a new network.

    Layout: ``out/genesis.cbor``, ``out/validator-<i>/{validator.key.json, node.json}``,
    ``out/participants/p<i>.key.json``. Returns the validator folders.
    """
    out.mkdir(parents=True, exist_ok=True)
    if (out / "genesis.cbor").exists():
        raise ConfigError(f"{out} already holds a network (genesis.cbor exists)")
    vkeys = [SigningKey.generate("ml-dsa-65") for _ in range(validators)]
    pkeys = [SigningKey.generate("ml-dsa-65") for _ in range(participants)]
    parts: list[dict[str, Any]] = [
        {"alg": k.alg, "pk": k.public_key.raw, "roles": ["validator"], "name": f"validator-{i}"}
        for i, k in enumerate(vkeys)]
    parts += [{"alg": k.alg, "pk": k.public_key.raw, "roles": ["prosumer"], "name": f"p{i}",
               "cp": f"cp-{i}", "balance_micro": balance_micro} for i, k in enumerate(pkeys)]
    genesis = make_genesis(chain_id, parts, {"genesis_time_unix": int(time.time())})
    (out / "genesis.cbor").write_bytes(genesis.encode())
    dirs = []
    for i, k in enumerate(vkeys):
        d = out / f"validator-{i}"
        save_key(d, "validator", k, passphrase, scrypt_n)
        (d / "node.json").write_text(json.dumps({"index": i, "chain_id": chain_id}, indent=2))
        dirs.append(d)
    for i, k in enumerate(pkeys):
        save_key(out / "participants", f"p{i}", k, passphrase, scrypt_n)
    return dirs


def new_validator(net: Path, passphrase: str, name: str | None = None, alg: str = "ml-dsa-65",
                  scrypt_n: int = 2**15) -> Path:
    """Create the folder of a validator to be added by governance: ``net/validator-<k>/``
    with an encrypted key, ``node.json`` and ``join.json``.

    ``join.json`` is what the proposing validator submits (``gridledger tx propose-validator
    --add``): the name, algorithm, public key and the key's proof of possession (signature
    over ``validator_pop_message(chain_id, name)``, context ``gl/validator-pop``). It holds
    nothing secret.
    """
    from gridledger.ledger.modules.governance.types import (
        VALIDATOR_POP_CONTEXT,
        validator_pop_message,
    )

    genesis = Genesis.decode((net / "genesis.cbor").read_bytes())
    k = 0
    while (net / f"validator-{k}").exists():
        k += 1
    d = net / f"validator-{k}"
    name = name or f"validator-{k}"
    key = SigningKey.generate(alg)
    save_key(d, "validator", key, passphrase, scrypt_n)
    (d / "node.json").write_text(json.dumps({"index": k, "chain_id": genesis.chain_id}, indent=2))
    pop = key.sign(validator_pop_message(genesis.chain_id, name), VALIDATOR_POP_CONTEXT)
    (d / "join.json").write_text(json.dumps(
        {"name": name, "alg": key.alg, "pk": key.public_key.raw.hex(), "pop": pop.hex(),
         "address": key.address.hex(), "chain_id": genesis.chain_id}, indent=2) + "\n")
    return d


def read_join(path: Path) -> dict[str, Any]:
    """The ``governance/propose_add_validator`` body from a ``join.json``."""
    j = json.loads(path.read_text())
    try:
        return {"alg": str(j["alg"]), "pk": bytes.fromhex(j["pk"]), "name": str(j["name"]),
                "pop": bytes.fromhex(j["pop"])}
    except (KeyError, ValueError, TypeError) as exc:
        raise ConfigError(f"{path} is not a join.json (alg, pk, name, pop): {exc}") from exc


VOTES_KEPT = 8  # heights of votes kept below the tip (audits look one height back)


# -- vote exchange ----------------------------------------------------------------
class VoteBoard:
    """Votes from the durable VOTES stream, indexed by height.

    Anyone who may publish on the stream's subject can put anything there, so nothing in a
    vote is taken on trust: the validator index only says which key to check the signature
    under (``VoteTally``), the message id is a hash of the signed bytes (a forged vote can
    never take a real vote's id and have it deduplicated away), and an invalid vote is
    blamed on nobody. Signature checks are memoised (the tally is recomputed at every wake-up
    while a quorum forms), and heights below ``prune``'s floor are dropped, so memory stays
    bounded on a long-running chain.
    """

    def __init__(self, orderer: NatsOrderer) -> None:
        self.o = orderer
        self.chain_id = orderer.chain_id
        self._by_height: dict[int, list[Vote]] = {}
        self._checked: dict[tuple[Vote, str, bytes], bool] = {}
        self._floor = 0  # votes below this height are not kept
        self._cond = threading.Condition()
        self.o._call(self._setup())

    async def _setup(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while True:  # ride out a JetStream leader election after a server failure
            try:
                await self._setup_once()
                return
            except Exception:
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.5)

    async def _setup_once(self) -> None:
        from nats.js.api import StorageType, StreamConfig

        js = self.o._js
        cfg = StreamConfig(name=stream_name(self.chain_id, "VOTES"),
                           subjects=[subject(self.chain_id, "votes")],
                           num_replicas=self.o.replicas, storage=StorageType.FILE,
                           duplicate_window=300.0)
        try:
            await js.stream_info(cfg.name)
        except Exception:
            try:
                await js.add_stream(cfg)
            except Exception:
                await js.stream_info(cfg.name)
        await js.subscribe(subject(self.chain_id, "votes"), cb=self._on_vote, ordered_consumer=True)

    async def _on_vote(self, msg: Any) -> None:
        try:
            h, hh, i, sig = codec.decode(msg.data)
            v = Vote(int(h), bytes(hh), int(i), bytes(sig))
        except Exception:
            return  # garbage on the votes subject is ignored; signatures are checked on use
        with self._cond:
            if v.height < self._floor:
                return
            self._by_height.setdefault(v.height, []).append(v)
            self._cond.notify_all()

    def publish(self, v: Vote) -> None:
        data = codec.encode([v.height, v.header_hash, v.validator, v.sig])
        msg_id = sha3_256(data).hex()  # re-publishing the same vote is deduplicated

        async def go() -> None:
            await self.o._js.publish(subject(self.chain_id, "votes"), data,
                                     headers={"Nats-Msg-Id": msg_id})

        self.o._call(go())

    def check(self, vote: Vote, keys: Sequence[tuple[str, bytes]]) -> bool:
        """``vote_ok``, memoised on (vote, key): a pure function of its inputs."""
        if not 0 <= vote.validator < len(keys):
            return False
        alg, pk = keys[vote.validator]
        memo = (vote, alg, pk)
        with self._cond:
            hit = self._checked.get(memo)
        if hit is None:
            hit = vote_ok(vote, keys)
            with self._cond:
                if vote.height >= self._floor:
                    self._checked[memo] = hit
        return hit

    def prune(self, below: int) -> None:
        """Forget votes (and their checks) for heights below ``below``."""
        with self._cond:
            if below <= self._floor:
                return
            self._floor = below
            for h in [h for h in self._by_height if h < below]:
                del self._by_height[h]
            for m in [m for m in self._checked if m[0].height < below]:
                del self._checked[m]

    def heights(self) -> int:
        """How many heights hold votes (memory bound checks)."""
        with self._cond:
            return len(self._by_height)

    def votes(self, height: int) -> list[Vote]:
        with self._cond:
            return list(self._by_height.get(height, []))

    def wait(self, height: int, pred: Any, timeout_s: float) -> bool:
        with self._cond:
            return bool(self._cond.wait_for(lambda: pred(self._by_height.get(height, [])), timeout_s))


MAX_BATCH_BYTES = 512 * 1024  # one log message; NATS refuses payloads over 1 MiB by default


def batch_entries(raws: Sequence[bytes], max_txs: int) -> list[Entry]:
    """Log entries for ``raws`` in order: batches of at most ``max_txs`` transactions and
    ``MAX_BATCH_BYTES`` bytes (a lone transaction stays a ``tx`` entry, whose message id is
    its hash)."""
    out: list[Entry] = []
    cur: list[bytes] = []
    size = 0
    for raw in raws:
        if cur and (len(cur) >= max_txs or size + len(raw) > MAX_BATCH_BYTES):
            out.append(Entry("txs", batch=tuple(cur)) if len(cur) > 1 else Entry("tx", tx=cur[0]))
            cur, size = [], 0
        cur.append(raw)
        size += len(raw)
    if cur:
        out.append(Entry("txs", batch=tuple(cur)) if len(cur) > 1 else Entry("tx", tx=cur[0]))
    return out


# -- the validator process ----------------------------------------------------------
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


class ValidatorProcess:
    """One validator: consumes the log, votes, certifies, stores, serves the API."""

    def __init__(self, cfg: ProcessConfig, passphrase: str) -> None:
        self.cfg = cfg
        net_dir = cfg.node_dir.parent
        self.genesis = Genesis.decode((net_dir / "genesis.cbor").read_bytes())
        meta = json.loads((cfg.node_dir / "node.json").read_text())
        key = load_key(cfg.node_dir / "validator.key.json", passphrase)
        self.validator = Validator(int(meta["index"]), key, self.genesis,
                                   cfg.node_dir / "ledger.sqlite", fault=cfg.fault)
        self.orderer = NatsOrderer(cfg.nats_urls, self.genesis.chain_id, cfg.replicas)
        self.board = VoteBoard(self.orderer)
        self.cutter = BlockCutter(cfg.max_block_txs, self.validator.log_end,
                                  self.validator.app.slot_time)
        from gridledger.node.admission import Mempool

        from gridledger.node.embedded import reputation_quota

        quota = reputation_quota(self.validator)
        quota.rate_per_s, quota.burst = cfg.quota_rate_per_s, cfg.quota_burst
        self.mempool = Mempool(self.validator.app, capacity=50_000, quota=quota)
        self.lock = threading.RLock()
        self.stop = threading.Event()
        self.genesis_time = int(self.genesis.params.get("genesis_time_unix", 0))
        self.subs: list[Any] = []
        self._inflight: Any = None
        self._certified: dict[int, tuple[bytes, list[tuple[str, bytes]]]] = {}
        self._unpublished: list[Any] = []
        self._pre_pos = 0  # log entry (and transaction within it) up to which signatures
        self._pre_off = 0  # were checked ahead of execution
        self._tick_pos = -1  # log position of our last tick
        self.index: dict[bytes, int] = {}
        self.offenders: dict[int, set[str]] = {}

    # block pipeline ---------------------------------------------------------
    def step(self) -> bool:
        """Advance by one block if the log has one; returns whether a block was finalised.

        Idempotent under NATS failures: the executed block stays in flight and votes are
        re-published (message-id deduplication) until a quorum certificate appears.
        """
        v = self.validator
        with self.lock:
            if self._inflight is None:
                blk = self.cutter.next_block(self.orderer)
                if blk is None:
                    return False
                self._inflight = v.execute(blk, self.mempool.cache.check)
            header = self._inflight
        for vote in v.votes(header):  # none while our key is not in this height's set
            self.board.publish(vote)
        keys = v.app.validator_keys()  # the set certifying this height (from the parent state)
        cert: list[Certificate | None] = [None]

        def have_quorum(votes: list[Vote]) -> bool:
            tally = VoteTally(len(keys), check=self.board.check)
            for vt in votes:
                tally.add(vt, keys)
            cert[0] = tally.certificate()
            for i, why in tally.offenders.items():
                self.offenders.setdefault(i, set()).add(why)
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
        self.board.prune(header.height - VOTES_KEPT)
        if ok:
            self._notify(header, v._last_result)
        return True

    def audit(self, height: int, certified: bytes, keys: list[tuple[str, bytes]]) -> None:
        """Name every validator whose votes at ``height`` equivocated or were for a header
        other than the certified one; keep the evidence in our store. (An invalid vote
        names nobody: on the shared VOTES stream it proves nothing about its index.)"""
        tally = VoteTally(len(keys), check=self.board.check)
        for vt in self.board.votes(height):
            tally.add(vt, keys)
        for i, vote in tally.voted.items():
            if vote.header_hash != certified and i not in tally.offenders:
                tally.offenders[i] = "voted for a header the quorum did not certify"
        with self.lock:
            for i, why in sorted(tally.offenders.items()):
                if why not in self.offenders.get(i, set()):
                    self.offenders.setdefault(i, set()).add(why)
                    self.validator.store.add_evidence(height, "fault", {"validator": i, "reason": why})
            for ev in tally.evidence:
                self.validator.store.add_evidence(ev.height, "equivocation", ev.to_obj())

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
        state, cache = self.validator.app.state, self.mempool.cache
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
                p = get_participant(state, tx.sender)
                if p is None or p["alg"] != tx.alg or cache.known(tx, p["alg"], p["pk"]):
                    continue
                cache.check(tx, p["alg"], p["pk"])
                n += 1
            self._pre_pos, self._pre_off = self._pre_pos + 1, 0
        return n

    def _notify(self, header: Any, result: Any) -> None:
        from gridledger.api.service import block_event

        ev = block_event(header, result)
        for r in result.receipts:
            # a transaction submitted through two validators can be logged twice; its
            # second run fails (replayed nonce) and must not hide the first one's receipt
            if r.ok or r.tx_hash not in self.index:
                self.index[r.tx_hash] = header.height
        for fn in list(self.subs):
            fn(ev)

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

    def publish_tick(self) -> None:
        """Publish the tick of the current ``tick_s`` period.

        A tick carries whole seconds since genesis (consensus time). Every validator
        publishes the same period's tick under the same message id, so one enters the log.
        A tick within a second (``tick_s`` < 1) is published only if the log has grown since
        our last tick: a busy chain closes a block every ``tick_s``, an idle one adds one
        empty block per second.
        """
        since = time.time() - self.genesis_time
        t = int(since)
        sub = int((since - t) / self.cfg.tick_s) if self.cfg.tick_s < 1 else 0
        grew = self.orderer.length() > self._tick_pos + 1
        if t > self.cutter.slot_time or (sub and grew):
            msg_id = f"tick-{t}" if sub == 0 else f"tick-{t}.{sub}"
            self._tick_pos = self.orderer.append(Entry("tick", time_s=t), msg_id=msg_id)

    def run(self) -> None:
        """Run until ``stop`` is set: producer thread + block loop (+ API if a port is set)."""
        server = self._start_api() if self.cfg.http_port else None

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
        try:
            while not self.stop.is_set():
                try:
                    if not self.step() and not self.preverify():
                        self.orderer.wait_for(self.cutter.scanned + 1, timeout_s=0.2)
                except Exception as exc:  # NATS failover: reconnect happens underneath
                    print(f"validator {self.validator.index}: retrying after {exc!r}", flush=True)
                    time.sleep(0.3)
        finally:
            self.stop.set()
            th.join(timeout=2)
            if server is not None:
                server.should_exit = True
            self.orderer.close()
            self.validator.close()

    def _start_api(self) -> Any:
        import uvicorn

        from gridledger.api import create_app
        from gridledger.api.service import ProcessService

        app = create_app(ProcessService(self))
        config = uvicorn.Config(app, host=self.cfg.http_host, port=self.cfg.http_port,
                                log_level="warning", lifespan="off")
        server = uvicorn.Server(config)
        threading.Thread(target=server.run, daemon=True).start()
        return server


# -- running validator processes (tests, benchmarks, one-machine trials) --------------------
def spawn_validator(node_dir: Path, nats_urls: list[str], http_port: int, passphrase: str,
                    *extra_args: str) -> Any:
    """Start ``gridledger node start`` for ``node_dir`` as a child process (log in the folder)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "GRIDLEDGER_PASSPHRASE": passphrase}
    log = open(node_dir / "process.log", "ab")
    return subprocess.Popen([sys.executable, "-m", "gridledger.cli.main", "node", "start",
                             str(node_dir), "--nats", ",".join(nats_urls),
                             "--http-port", str(http_port), *extra_args],
                            env=env, stdout=log, stderr=subprocess.STDOUT)


def stop_processes(procs: list[Any], timeout_s: float = 15.0) -> None:
    """SIGTERM every process, then SIGKILL whatever has not exited in ``timeout_s``."""
    import signal
    import subprocess

    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            p.kill()
