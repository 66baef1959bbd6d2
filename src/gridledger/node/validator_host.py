"""Validators of the embedded network in a process of their own (issue 17).

In one process the embedded network's validators execute each block one after another on
one core. ``ValidatorHost`` runs some of them in a worker process (``python -c``: nothing
inherited but the environment, so a caller holding threads is safe): each hosted validator
still checks every signature itself, executes every block itself from the same cut of the
log, signs its own vote and writes its own store, exactly as in the caller's process, while
the caller executes the others on another core. ``HostedValidator`` stands for one of them
in the caller: the interface the embedded network drives, plus what an operator's tools
read (``store``, opened read-only on the validator's own file, and ``app.catalog``).

Messages are pickled over the worker's stdin/stdout (one request, one reply, in order;
``finalize``, ``add_evidence`` and ``install_release`` replies are read lazily, so the
worker stores a block while the caller goes on; ``open``'s when the validator's height is
first read, so the worker starts up while the caller opens its own validators). Requests
are written by a thread of their own: a block is larger than a pipe's buffer, and a caller
writing it itself waited until the worker had executed the block before (its first hosted
validator's) and read this one — the caller's own executions started only then. A worker
that dies raises ``BlockError`` at the next call.
"""

from __future__ import annotations

import contextlib
import importlib
import pickle
import queue
import subprocess
import sys
import threading
import types
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from gridledger.crypto.sig import SigningKey, verify_signature
from gridledger.errors import BlockError, RejectedTx
from gridledger.frames import frame_bytes, reap_worker, recv_frame, send_frame
from gridledger.ledger.block import Certificate, Header, Vote
from gridledger.ledger.genesis import Genesis
from gridledger.ledger.modules.catalog import DEFAULT as DEFAULT_CATALOG
from gridledger.ledger.modules.catalog import Catalog, Release
from gridledger.ledger.tx import Tx, decode_tx
from gridledger.node.orderer import CutBlock
from gridledger.node.store import BlockStore
from gridledger.node.ticks import Tick

_HOST = "from gridledger.node.validator_host import _host_main; _host_main()"
_ASKED = object()
"""A request whose reply its caller reads (``ValidatorHost.recv``)."""


class _Pickler(pickle.Pickler):
    """Modules travel by name (an installed ``Release`` may hold a keeper module)."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, types.ModuleType):
            return importlib.import_module, (obj.__name__,)
        return NotImplemented


def _send(stream: IO[bytes], obj: Any) -> None:
    send_frame(stream, obj, _Pickler)


_recv = recv_frame


class ValidatorHost:
    """A worker process holding validators of one embedded network."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            [sys.executable, "-c", _HOST], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            # a Ctrl-C at the terminal stops the run, which then closes its stores here
            start_new_session=True)
        # what each request not answered yet wants done with its reply, in order: None for a
        # lazy one (finalize, add_evidence, install_release: dropped), a callable for one sent
        # with ``then`` (open), ``_ASKED`` for one whose caller reads it (``recv``)
        self._unread: deque[Callable[[Any], None] | object | None] = deque()
        self._last_block: CutBlock | None = None  # the block the worker holds (``execute``)
        self._frames: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._write_error: OSError | None = None
        self._writer = threading.Thread(target=self._write_frames, args=(self.proc.stdin,),
                                        name="validator-host-writer", daemon=True)
        self._writer.start()

    def _write_frames(self, stdin: IO[bytes] | None) -> None:
        """The writer thread: frames in the order sent, until ``None`` or a broken pipe."""
        assert stdin is not None
        while (frame := self._frames.get()) is not None:
            if self._write_error is not None:
                continue  # the worker is gone: drop what follows (recv raises)
            try:
                stdin.write(frame)
                stdin.flush()
            except OSError as exc:
                self._write_error = exc

    def _pipes(self) -> tuple[IO[bytes], IO[bytes]]:
        if self.proc is None or self.proc.stdin is None or self.proc.stdout is None:
            raise BlockError("the validator host is closed")
        return self.proc.stdin, self.proc.stdout

    def send(self, *msg: Any, lazy: bool = False,
             then: Callable[[Any], None] | None = None) -> None:
        """Send a request; ``lazy``: its reply is read (and dropped) before the next reply
        wanted; ``then``: its reply goes to ``then`` when it is read (``flush``, or before
        the next reply wanted). Otherwise the caller reads the reply with ``recv``."""
        self._pipes()
        if self._write_error is not None:
            raise BlockError(f"the validator host is gone: {self._write_error}")
        # pickled here (an unpicklable request fails in the caller), written by the thread
        self._frames.put(frame_bytes(msg, _Pickler))
        self._unread.append(then if lazy or then is not None else _ASKED)

    def _read(self) -> Any:
        _, stdout = self._pipes()
        try:
            ok, value = _recv(stdout)
        except (EOFError, OSError) as exc:
            raise BlockError("the validator host is gone") from exc
        if not ok:
            raise BlockError(f"validator host: {value}")
        return value

    def flush(self) -> None:
        """Read the replies of the lazy and ``then`` requests sent before any request whose
        reply is still to be read with ``recv`` (raises ``BlockError`` for a failed one)."""
        while self._unread and self._unread[0] is not _ASKED:
            then = self._unread.popleft()
            value = self._read()
            if callable(then):
                then(value)

    def recv(self) -> Any:
        """The reply to the oldest request not yet answered whose caller reads it (the lazy
        and ``then`` ones sent before it are read first)."""
        self.flush()
        if self._unread:
            self._unread.popleft()
        return self._read()

    def call(self, *msg: Any) -> Any:
        self.send(*msg)
        return self.recv()

    def start_execute(self, index: int, blk: CutBlock, fault: str | None) -> None:
        """Ask validator ``index`` to execute ``blk``. The worker keeps the last block it was
        sent: the same block for a second hosted validator goes by reference, not pickled,
        written and unpickled again (a block is sent once per host, not once per hosted
        validator; each one still decodes, checks and executes it itself). A cut block is
        not changed after it is cut (``BlockCutter``)."""
        if blk is self._last_block:
            self.send("execute_last", index, fault)
        else:
            self.send("execute", index, blk, fault)
            self._last_block = blk

    def close(self) -> None:
        """Close every hosted validator's store and end the worker."""
        if self.proc is None:
            return
        proc = self.proc
        with contextlib.suppress(BlockError):
            self.call("exit")
        self._frames.put(None)
        self._writer.join(30)
        self.proc = None
        reap_worker(proc, 30)


def release_ref(release: Release) -> tuple[str, str] | None:
    """(module, name) of a release defined at module level, which goes to the host by name
    (its keeper may be a proxy that does not pickle); None: it goes by value. The host
    imports that module: a release meant for validators belongs in a module that the ledger
    side can import without the simulator (``sim.releases``, not ``sim.attacks``: issue 17,
    the host spent ~4.6 s of CPU importing the simulator for ``contract-bug``'s release)."""
    module = sys.modules.get(getattr(release.build, "__module__", ""))
    if module is None:
        return None
    name = next((k for k, val in vars(module).items() if val is release), None)
    return None if name is None else (module.__name__, name)


class _HostedApp:
    """What operators' tools read of a hosted validator's application: the catalog of
    module versions it can run (``install_release`` goes to the validator itself)."""

    def __init__(self, v: HostedValidator) -> None:
        self._v = v
        self.catalog: Catalog = DEFAULT_CATALOG

    def install_release(self, release: Release) -> None:
        self.catalog = self.catalog.with_release(release)
        if self._v.closed:  # a crashed node: its restart starts from this build's catalog,
            return          # as an in-process validator's does
        # no reply wanted (an error is raised at the next call): the caller goes on while
        # the host finishes what it is doing (the demo's setup waited ~1 s here for the host
        # to store the privacy registration blocks)
        self._v.host.send("install_release", self._v.index, release_ref(release) or release,
                          lazy=True)


class HostedValidator:
    """Validator ``index`` running in ``host`` (``node.validator.Validator`` there)."""

    def __init__(self, host: ValidatorHost, index: int, key: SigningKey, genesis: Genesis,
                 store_path: str | Path, fault: str | None = None,
                 snapshot_every: int = 50, durable: bool = True) -> None:
        self.host = host
        self.index = index
        self.key = key
        self.fault = fault
        self.snapshot_every = snapshot_every
        self.store_path = Path(store_path)
        self.app = _HostedApp(self)
        self._store: BlockStore | None = None
        self._header: Header | None = None
        self._votes: list[Vote] = []
        self._vote_index: int | None = None
        self._ticks_at: int | None = None
        self.closed = False
        self._tip: tuple[int, bytes] | None = None
        # the reply is read when the height is first asked for: the worker opens the store
        # (and, first, starts up: its imports) while the caller opens its own validators
        host.send("open", index, key.alg, key.seed, genesis.encode(), str(self.store_path),
                  fault, snapshot_every, durable, then=self._opened)

    def _opened(self, tip: tuple[int, bytes]) -> None:
        self._tip = (int(tip[0]), bytes(tip[1]))

    def _at(self) -> tuple[int, bytes]:
        if self._tip is None:
            self.host.flush()   # the open's reply
        if self._tip is None:
            raise BlockError(f"hosted validator {self.index} was not opened")
        return self._tip

    @property
    def height(self) -> int:
        """The validator's height (its last block's)."""
        return self._at()[0]

    @property
    def last_hash(self) -> bytes:
        """The hash of the validator's last block's header."""
        return self._at()[1]

    @property
    def store(self) -> BlockStore:
        """The validator's own store, opened read-only here (it writes it in the host)."""
        if self._store is None:
            self._at()  # opened (created) there first
            self._store = BlockStore(self.store_path, readonly=True)
        return self._store

    def catch_up(self, peer: Path) -> int:
        """Apply the peer store's certified blocks beyond our tip (``node.sync.catch_up``,
        in the host); returns how many."""
        n, height, last_hash = self.host.call("catch_up", self.index, str(peer))
        self._tip = (height, last_hash)
        return int(n)

    def start_execute(self, blk: CutBlock) -> None:
        self.host.start_execute(self.index, blk, self.fault)

    def end_execute(self) -> Header:
        header: Header
        header, self._votes, self._vote_index = self.host.recv()
        self._header = header
        return header

    def execute(self, blk: CutBlock) -> Header:
        self.start_execute(blk)
        return self.end_execute()

    def vote_index(self) -> int | None:
        return self._vote_index

    def votes(self, header: Header) -> list[Vote]:
        """The votes the host signed for the header it executed (faults applied there)."""
        return list(self._votes)

    def start_ticks(self, time_ms: int) -> None:
        """Ask for ``ticks(time_ms)`` now (signed in the host meanwhile); ``ticks`` collects."""
        self.host.send("ticks", self.index, time_ms, self.fault)
        self._ticks_at = time_ms

    def ticks(self, time_ms: int) -> list[Tick]:
        if self._ticks_at != time_ms:
            self.start_ticks(time_ms)
        self._ticks_at = None
        ticks: list[Tick]
        ticks, self._vote_index = self.host.recv()
        return ticks

    def finalize(self, cert: Certificate) -> bool:
        """Store the pending block under ``cert`` (in the host, while the caller goes on)."""
        self.host.send("finalize", self.index, cert, lazy=True)
        ours = self._header is not None and cert.header_hash == self._header.hash
        if ours and self._header is not None:
            self._tip = (self._header.height, self._header.hash)
        self._header = None
        return ours

    def abandon(self) -> None:
        self.host.call("abandon", self.index)

    def add_evidence(self, height: int, kind: str, body: dict[str, Any]) -> None:
        self.host.send("add_evidence", self.index, height, kind, body, lazy=True)

    def state(self) -> tuple[int, bytes, bytes]:
        """(height, last hash, state root), asked of the validator itself."""
        height, last_hash, root = self.host.call("state", self.index)
        self._tip = (height, last_hash)
        return height, last_hash, root

    def state_root(self) -> bytes:
        return self.state()[2]

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
        if not self.closed:
            self.closed = True
            self.host.call("close", self.index)


def _host_main() -> None:
    """The worker: requests on stdin, replies ``(ok, value)`` on stdout, in order."""
    from gridledger.node.embedded import block_sig_items, checks_from
    from gridledger.node.sync import catch_up
    from gridledger.node.validator import Validator

    validators: dict[int, Validator] = {}
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    last: list[CutBlock] = []   # the last block sent (``execute_last`` executes it again)

    def open_(i: int, alg: str, seed: bytes, genesis: bytes, path: str, fault: str | None,
              snapshot_every: int, durable: bool) -> tuple[int, bytes]:
        v = Validator(i, SigningKey(alg, seed), Genesis.decode(genesis), path, None, fault,
                      snapshot_every, durable=durable)
        validators[i] = v
        return v.height, v.app.last_hash

    def catch_up_(i: int, peer: str) -> tuple[int, int, bytes]:
        v = validators[i]
        store = BlockStore(peer, readonly=True)
        try:
            n = catch_up(v, store)
        finally:
            store.close()
        return n, v.height, v.app.last_hash

    def execute(i: int, blk: CutBlock, fault: str | None) -> tuple[Header, list[Vote], int | None]:
        last[:] = [blk]
        v = validators[i]
        v.fault = fault
        txs: list[Tx] = []
        for raw in blk.txs:
            try:
                txs.append(decode_tx(raw))
            except RejectedTx:  # execution records it in the receipt
                continue
        items = block_sig_items(txs, v)  # this validator checks every signature itself
        oks = [verify_signature(a, pk, m, s, c) for a, pk, m, s, c in items]
        header = v.execute(blk, checks_from(items, oks))
        return header, v.votes(header), v.vote_index()

    def ticks(i: int, time_ms: int, fault: str | None) -> tuple[list[Tick], int | None]:
        v = validators[i]
        v.fault = fault
        return v.ticks(time_ms), v.vote_index()

    def state(i: int) -> tuple[int, bytes, bytes]:
        v = validators[i]
        return v.height, v.app.last_hash, v.app.state.root()

    def close(i: int) -> None:
        validators.pop(i).close()

    def execute_last(i: int, fault: str | None) -> tuple[Header, list[Vote], int | None]:
        if not last:
            raise BlockError("no block was sent to execute again")
        return execute(i, last[0], fault)

    handlers: Mapping[str, Any] = {
        "open": open_, "catch_up": catch_up_, "execute": execute, "execute_last": execute_last,
        "ticks": ticks,
        "state": state, "close": close,
        "finalize": lambda i, cert: validators[i].finalize(cert),
        "abandon": lambda i: validators[i].abandon(),
        "add_evidence": lambda i, h, kind, body: validators[i].store.add_evidence(h, kind, body),
        "install_release": lambda i, rel: validators[i].app.install_release(
            getattr(importlib.import_module(rel[0]), rel[1]) if isinstance(rel, tuple) else rel),
    }
    while True:
        try:
            op, *args = _recv(stdin)
        except EOFError:
            break
        if op == "exit":
            for v in validators.values():
                v.close()
            _send(stdout, (True, None))
            break
        try:
            _send(stdout, (True, handlers[op](*args)))
        except Exception as exc:  # the caller raises it as a BlockError naming it
            _send(stdout, (False, f"{op} on validator {args[0] if args else '-'}: "
                                  f"{type(exc).__name__}: {exc}"))
