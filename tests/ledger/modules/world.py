"""A small market chain for module tests: one validator, a DSO, prosumers with meters.

Every block goes through ``tests.conftest.apply`` (all invariants after every block) and
then ``check_locks``: every micro-unit the bank holds locked is accounted for by a market
record, so no escrow can leak.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from gridledger.crypto.sig import SigningKey
from gridledger.ledger.app import Application
from gridledger.ledger.execute import BlockResult
from gridledger.ledger.genesis import make_genesis
from gridledger.ledger.modules.bank import keeper as bank
from gridledger.ledger.modules.market import keeper as market_keeper
from gridledger.ledger.modules.market.invariants import market_holds
from gridledger.ledger.modules.market.types import order_commitment
from gridledger.ledger.tx import sign_tx
from gridledger.sim.keys import sim_key
from tests.conftest import apply

CHAIN = "market-test"
S = 900              # slot_seconds
GATE = 300           # gate_closure_s
REVEAL = 150         # reveal_window_s
SETTLE = 900         # settle_window_s
FW = bytes(32)       # firmware hash in readings
USER_BALANCE = 10_000_000
DSO_BALANCE = 1_000_000_000


def t_order(slot: int) -> int:
    """A block time when orders for ``slot`` are open."""
    return slot * S - GATE - 100


def t_reveal(slot: int) -> int:
    return slot * S - GATE + 10


def t_clear(slot: int) -> int:
    return slot * S - GATE + REVEAL


def t_read(slot: int) -> int:
    return (slot + 1) * S + 10


def t_settle(slot: int) -> int:
    return (slot + 1) * S + SETTLE


@dataclass
class World:
    app: Application
    validators: list[SigningKey]
    dso: SigningKey
    users: list[SigningKey]
    meters: list[SigningKey]
    nonces: dict[bytes, int] = field(default_factory=dict)
    results: list[BlockResult] = field(default_factory=list)

    @property
    def validator(self) -> SigningKey:
        return self.validators[0]

    # -- transactions ---------------------------------------------------------------------
    def tx(self, key: SigningKey, kind: str, body: dict[str, Any]) -> bytes:
        n = self.nonces.get(key.address, 0)
        self.nonces[key.address] = n + 1
        return sign_tx(key, CHAIN, n, kind, body)

    def order(self, i: int, slot: int, side: str, energy_wh: int, price: int) -> bytes:
        return self.tx(self.users[i], "market/order", {"slot": slot, "side": side,
                                                       "energy_wh": energy_wh,
                                                       "price_micro_per_kwh": price})

    def reading(self, i: int, slot: int, import_wh: int, export_wh: int) -> bytes:
        return self.tx(self.meters[i], "metering/reading", {"slot": slot, "import_wh": import_wh,
                                                            "export_wh": export_wh, "firmware": FW})

    def commit(self, i: int, slot: int, side: str, energy_wh: int, price: int,
               salt: bytes | None = None) -> tuple[bytes, dict[str, Any]]:
        """A commit tx and the matching reveal body (without commit_id, added on reveal)."""
        salt = salt if salt is not None else os.urandom(16)
        c = order_commitment(self.users[i].address, slot, side, energy_wh, price, salt)
        raw = self.tx(self.users[i], "market/commit", {"slot": slot, "commitment": c})
        return raw, {"slot": slot, "side": side, "energy_wh": energy_wh,
                     "price_micro_per_kwh": price, "salt": salt}

    def envelope(self, slot: int, entries: list[list[Any]]) -> bytes:
        return self.tx(self.dso, "market/envelope", {"slot": slot, "envelopes": entries})

    # -- blocks ---------------------------------------------------------------------------
    def block(self, txs: list[bytes], at: int) -> BlockResult:
        _, result = apply(self.app, txs, at)
        check_locks(self)
        self.results.append(result)
        return result

    def ok(self, txs: list[bytes], at: int) -> BlockResult:
        """Apply a block and insist every transaction succeeded."""
        result = self.block(txs, at)
        bad = [r for r in result.receipts if not r.ok]
        assert not bad, bad
        return result

    # -- queries --------------------------------------------------------------------------
    def addr(self, i: int) -> bytes:
        return self.users[i].address

    def bal(self, addr: bytes) -> int:
        return bank.balance(self.app.state, addr)

    def lock(self, addr: bytes) -> int:
        return bank.locked(self.app.state, addr)

    def total(self, addr: bytes) -> int:
        return self.bal(addr) + self.lock(addr)

    def retail_hold(self, addr: bytes) -> int:
        """What the market keeps locked against ``addr``'s unsettled retail import."""
        return market_keeper.retail_of(self.app.state, addr).held_micro

    def money(self) -> int:
        st = self.app.state
        return (sum(int(v) for _, v in st.items_with_prefix(bank.BAL))
                + sum(int(v) for _, v in st.items_with_prefix(bank.LOCK)))

    def events(self, type_: str) -> list[dict[str, Any]]:
        """Block events and transaction events of ``type_``, over every block so far."""
        out = []
        for r in self.results:
            out += [e for e in r.block_events if e["type"] == type_]
            for rc in r.receipts:
                out += [e for e in rc.events if e["type"] == type_]
        return out


def check_locks(w: World) -> None:
    """Every bank lock is exactly what the market holds (no leaked escrow)."""
    st = w.app.state
    locks = {k[len(bank.LOCK):]: int(v) for k, v in st.items_with_prefix(bank.LOCK)}
    assert locks == {a: v for a, v in market_holds(st).items() if v}, "escrow leaked or unbacked"


def make_world(n_users: int = 4, params: dict[str, Any] | None = None, seed: int = 5,
               consumers: tuple[int, ...] = (), balances: dict[int, int] | None = None,
               n_validators: int = 1, sections: dict[str, Any] | None = None,
               cps: tuple[str, ...] = ()) -> World:
    """Genesis with validators, one DSO (grid account), ``n_users`` traders at cp0.. (or at
    ``cps``, e.g. a network's own connection points), one ML-DSA-44 meter per cp."""
    vs = [sim_key(seed, "validator", i) for i in range(n_validators)]
    dso = sim_key(seed, "dso", 0)
    users = [sim_key(seed, "user", i) for i in range(n_users)]
    meters = [sim_key(seed, "meter", i, alg="ml-dsa-44") for i in range(n_users)]
    parts: list[dict[str, Any]] = [
        {"alg": v.alg, "pk": v.public_key.raw, "roles": ["validator"], "name": f"v{i}"}
        for i, v in enumerate(vs)]
    parts += [
        {"alg": dso.alg, "pk": dso.public_key.raw, "roles": ["dso"], "name": "dso",
         "balance_micro": DSO_BALANCE}]
    for i, k in enumerate(users):
        parts.append({"alg": k.alg, "pk": k.public_key.raw,
                      "roles": ["consumer"] if i in consumers else ["prosumer"],
                      "name": f"u{i}", "cp": cps[i] if cps else f"cp{i}",
                      "balance_micro": (balances or {}).get(i, USER_BALANCE)})
    for i, m in enumerate(meters):
        parts.append({"alg": m.alg, "pk": m.public_key.raw, "roles": ["meter"],
                      "name": f"m{i}", "meter_of": cps[i] if cps else f"cp{i}"})
    base = {"slot_seconds": S, "gate_closure_s": GATE, "reveal_window_s": REVEAL,
            "settle_window_s": SETTLE}
    genesis = make_genesis(CHAIN, parts, {**base, **(params or {})}, sections=sections)
    return World(Application(genesis), vs, dso, users, meters)
