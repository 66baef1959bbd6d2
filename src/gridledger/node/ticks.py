"""Signed ticks and the chain's clock: consensus time from a quorum of validators' clocks.

Block time (``slot_time``, whole seconds since genesis) comes from the ordered log, never
from a local clock. Each validator puts ticks into the log: ``{chain_id, time_ms, signer,
sig}``, ML-DSA-signed by its validator key under the FIPS 204 context ``gl/tick``, where
``time_ms`` is its own clock in milliseconds since genesis and ``signer`` its address. A tick
whose signer is not in the validator set of the block being cut, whose signature does not
verify, whose chain is another, or whose time is older than the chain's time, carries
nothing.

``TickClock`` decides, for the block being cut, when it closes and at what time. It keeps
the newest valid tick of each validator seen since the block opened and derives the time as
the (f+1)-th largest of them, ``f = max_faulty(n)``: at least one of any f+1 validators is
honest, so f Byzantine validators can neither move the chain's time beyond every honest
clock (a tick a century ahead is outvoted) nor hold it back once f+1 honest validators have
ticked. The block closes at a tick when

* at least f+1 validators have ticked since it opened and the derived time is later than the
  parent's time (one block per second on an idle chain), or
* it holds transactions and at least f+1 validators have ticked since its first transaction
  (sub-second blocks under load; a tick older than the transactions does not close them).

The state the rule needs at a block boundary is only the log position and the parent's time
(both in the store), so a validator that restarts, or catches up from a peer's certified
blocks, cuts exactly the blocks everyone else cut.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gridledger.crypto.sig import SigningKey, address_of, verify_signature
from gridledger.errors import MalformedEncoding
from gridledger.ledger import codec
from gridledger.ledger.block import MAX_CHAIN_ID_CHARS, MAX_SIG_BYTES, max_faulty

TICK_CONTEXT = b"gl/tick"
TICK_FIELDS = ("chain_id", "time_ms", "signer", "sig")
MAX_TIME_MS = 2**62


def tick_message(chain_id: str, time_ms: int, signer: bytes) -> bytes:
    """The bytes a validator signs for a tick (context ``gl/tick``)."""
    return codec.encode({"chain_id": chain_id, "time_ms": time_ms, "signer": signer})


@dataclass(frozen=True)
class Tick:
    chain_id: str
    time_ms: int  # the signer's clock, milliseconds since the chain's genesis time
    signer: bytes  # address of the validator key that signed
    sig: bytes

    def to_obj(self) -> dict[str, Any]:
        return {"chain_id": self.chain_id, "time_ms": self.time_ms, "signer": self.signer,
                "sig": self.sig}

    @classmethod
    def from_obj(cls, obj: Any) -> Tick:
        """Strict: exactly the four fields, each of its exact type; ``MalformedEncoding``."""
        if not isinstance(obj, dict) or sorted(obj) != sorted(TICK_FIELDS):
            raise MalformedEncoding(f"bad tick: expected a map of {sorted(TICK_FIELDS)}")
        chain_id, time_ms, signer, sig = (obj[k] for k in TICK_FIELDS)
        if type(chain_id) is not str or not 0 < len(chain_id) <= MAX_CHAIN_ID_CHARS:
            raise MalformedEncoding("bad tick: chain_id must be non-empty text")
        if type(time_ms) is not int or not 0 <= time_ms <= MAX_TIME_MS:
            raise MalformedEncoding("bad tick: time_ms must be a non-negative integer")
        if type(signer) is not bytes or len(signer) != 32:
            raise MalformedEncoding("bad tick: signer must be a 32-byte address")
        if type(sig) is not bytes or len(sig) > MAX_SIG_BYTES:
            raise MalformedEncoding(f"bad tick: sig must be at most {MAX_SIG_BYTES} bytes")
        return cls(chain_id, time_ms, signer, sig)

    @property
    def time_s(self) -> int:
        return self.time_ms // 1000


def sign_tick(key: SigningKey, chain_id: str, time_ms: int) -> Tick:
    """A tick of ``key``'s validator at ``time_ms`` (milliseconds since genesis)."""
    msg = tick_message(chain_id, time_ms, key.address)
    return Tick(chain_id, time_ms, key.address, key.sign(msg, TICK_CONTEXT))


class TickClock:
    """The close-and-time rule for the block being cut (see the module docstring)."""

    def __init__(self, chain_id: str) -> None:
        self.chain_id = chain_id
        self._latest: dict[bytes, int] = {}  # signer -> newest tick time since the block opened
        self._after_txs: set[bytes] = set()  # signers who ticked after its first transaction
        self._keys: tuple[tuple[str, bytes], ...] = ()
        self._by_addr: Mapping[bytes, tuple[str, bytes]] = {}

    def reset(self) -> None:
        """A block closed: the next one starts with no ticks."""
        self._latest.clear()
        self._after_txs.clear()

    def _members(self, keys: Sequence[tuple[str, bytes]]) -> Mapping[bytes, tuple[str, bytes]]:
        if tuple(keys) != self._keys:
            self._keys = tuple(keys)
            self._by_addr = {address_of(alg, pk): (alg, pk) for alg, pk in self._keys}
        return self._by_addr

    def valid(self, tick: Tick, keys: Sequence[tuple[str, bytes]], slot_time: int) -> bool:
        """Whether ``tick`` counts: this chain, a member's valid signature, not stale."""
        key = self._members(keys).get(tick.signer)
        if key is None or tick.chain_id != self.chain_id or tick.time_s < slot_time:
            return False
        msg = tick_message(tick.chain_id, tick.time_ms, tick.signer)
        return verify_signature(key[0], key[1], msg, tick.sig, TICK_CONTEXT)

    def add(self, tick: Tick, keys: Sequence[tuple[str, bytes]], slot_time: int,
            open_txs: int) -> int | None:
        """Count ``tick``; returns the block's time if the block closes here, else None."""
        if not self.valid(tick, keys, slot_time):
            return None
        self._latest[tick.signer] = max(self._latest.get(tick.signer, 0), tick.time_ms)
        if open_txs:
            self._after_txs.add(tick.signer)
        need = max_faulty(len(keys)) + 1
        if len(self._latest) < need:
            return None
        derived = sorted(self._latest.values(), reverse=True)[need - 1] // 1000
        if derived > slot_time or (open_txs and len(self._after_txs) >= need):
            return max(slot_time, derived)
        return None
