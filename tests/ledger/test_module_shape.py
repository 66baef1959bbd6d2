"""The module framework: rules as values, faults contained, hooks that fail abort the block."""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any

import pytest

import gridledger.ledger.modules as modules_pkg
from gridledger.errors import BlockAborted, RejectedTx
from gridledger.ledger import codec
from gridledger.ledger.app import Application
from gridledger.ledger.context import BlockContext, TxContext
from gridledger.ledger.module import Body, Module, MsgKind
from gridledger.ledger.modules.catalog import modules as default_modules
from gridledger.ledger.record import Record, optional
from gridledger.ledger.rules import CATEGORIES, chain_rules
from gridledger.ledger.state import State
from gridledger.ledger.tx import TX_CONTEXT, signing_bytes
from tests.conftest import CHAIN, apply


def _all_rule_classes() -> set[type[RejectedTx]]:
    for info in pkgutil.walk_packages(modules_pkg.__path__, modules_pkg.__name__ + "."):
        importlib.import_module(info.name)
    out: set[type[RejectedTx]] = set()
    todo = [RejectedTx]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            todo.append(sub)
            if sub.__module__.startswith("gridledger.ledger.modules.") and "rule" in sub.__dict__:
                out.add(sub)
    return out


def test_rule_names_are_unique_across_the_chain_and_every_rule_is_declared():
    rules = chain_rules(default_modules())
    names = [r.name for r in rules]
    assert len(names) == len(set(names))
    declared = {r.error for r in rules}
    missing = {c.__qualname__ for c in _all_rule_classes()} - {c.__qualname__ for c in declared}
    assert not missing, f"rule classes no module declares: {sorted(missing)}"
    for r in rules:
        assert r.name == r.name.lower() and " " not in r.name and r.doc, r
        assert r.category in CATEGORIES or r.module == "core", r


def test_two_classes_claiming_one_rule_are_refused():
    class A(RejectedTx):
        """A."""
        rule = "same-name"

    class B(RejectedTx):
        """B."""
        rule = "same-name"

    with pytest.raises(ValueError, match="same-name"):
        chain_rules([Module("x", 1, rules=(A,)), Module("y", 1, rules=(B,))])


@dataclass(frozen=True)
class Poke(Record):
    key: bytes


def _parse_poke(body: Body) -> Poke:
    return Poke(bytes(body["key"]))


def _faulty_module(fail_in: str) -> Module:
    """A test module whose ``test/poke`` writes a key and then fails as told."""

    def poke(state: State, ctx: TxContext, msg: Poke) -> None:
        state.set(b"test/" + msg.key, b"\x01")
        if fail_in == "handler":
            raise KeyError("a defect")

    def end_block(state: State, ctx: BlockContext, events: list[dict[str, Any]]) -> None:
        state.set(b"test/end", b"\x01")
        if fail_in == "end_block":
            raise ZeroDivisionError

    return Module("test", 1, messages=(MsgKind("test/poke", _parse_poke, poke),),
                  end_block=end_block)


def test_an_exception_in_a_handler_is_an_internal_error_receipt_with_the_tx_rolled_back(chain):
    apps = [Application(chain.genesis, default_modules() + [_faulty_module("handler")])
            for _ in range(2)]
    txs = [chain.tx(chain.users[0], "test/poke", {"key": b"k"}), chain.transfer(1, 2, 5)]
    results = [apply(app, txs) for app in apps]
    (h1, r1), (h2, _) = results
    bad, good = r1.receipts
    assert not bad.ok and bad.rule == "internal-error" and bad.detail == "KeyError in test/poke"
    assert good.ok
    assert apps[0].state.get(b"test/k") is None  # rolled back
    assert apps[0].query(f"nonce/{chain.users[0].address.hex()}") == 1  # nonce consumed
    assert h1.state_root == h2.state_root and h1.receipts_root == h2.receipts_root


def test_a_failing_block_hook_aborts_the_block_and_leaves_state_untouched(chain):
    app = Application(chain.genesis, default_modules() + [_faulty_module("end_block")])
    root = app.state.root()
    with pytest.raises(BlockAborted, match="test.end_block at height 1: ZeroDivisionError"):
        app.finalize_block([chain.transfer(0, 1, 5)], 900)
    assert app.state.root() == root and app.height == 0
    assert app.state.get(b"test/end") is None


def _envelope(chain, alg: str, body: dict[str, Any], kind: str = "bank/transfer") -> bytes:
    user = chain.users[0]
    env = {"alg": alg, "body": body, "chain_id": CHAIN, "kind": kind,
           "nonce": chain.nonces.get(user.address, 0), "sender": user.address}
    sig = user.sign(signing_bytes(CHAIN, user.address, env["nonce"], kind, body, alg), TX_CONTEXT)
    return codec.encode({**env, "sig": sig})


def test_unknown_algorithm_in_an_envelope_is_a_named_rejection_and_the_block_goes_on(app, chain):
    body = {"to": chain.users[1].address, "amount_micro": 5}
    raw = _envelope(chain, "ml-dsa-99", body)
    _, result = apply(app, [raw, chain.transfer(2, 1, 7)])
    bad, good = result.receipts
    assert bad.rule == "unknown-algorithm" and good.ok
    with pytest.raises(RejectedTx, match="unknown-algorithm"):
        app.check_tx(raw)


def test_a_failing_block_hook_is_signed_by_no_validator(chain, tmp_path):
    """Issue 18.4 through the embedded network: the block is rolled back everywhere and no
    validator stores or signs it."""
    from gridledger.node.embedded import EmbeddedNetwork

    mods = default_modules() + [_faulty_module("end_block")]
    net = EmbeddedNetwork(chain.genesis, chain.validators, tmp_path, modules=mods)
    try:
        roots = {v.app.state.root() for v in net.validators}
        net.submit(chain.transfer(0, 1, 5))
        with pytest.raises(BlockAborted):
            net.tick(900)
        assert all(v.app.height == 0 and v.store.tip() == 0 for v in net.validators)
        assert {v.app.state.root() for v in net.validators} == roots
    finally:
        net.close()


@dataclass(frozen=True)
class _Leaf(Record):
    addr: bytes
    n: int


@dataclass(frozen=True)
class _Tree(Record):
    name: str
    leaves: tuple[_Leaf, ...]
    best: _Leaf | None = optional()
    pair: tuple[int, int] | None = optional()


def test_records_encode_to_the_plain_map_and_back():
    t = _Tree("t", (_Leaf(b"a", 1), _Leaf(b"b", 2)))
    assert t.to_obj() == {"name": "t", "leaves": [{"addr": b"a", "n": 1}, {"addr": b"b", "n": 2}]}
    assert _Tree.decode(t.encode()) == t
    full = _Tree("t", (), _Leaf(b"c", 3), (4, 5))
    assert full.to_obj()["best"] == {"addr": b"c", "n": 3} and full.to_obj()["pair"] == [4, 5]
    assert _Tree.from_obj(codec.decode(full.encode())) == full
    with pytest.raises(ValueError, match="no field"):
        _Tree.from_obj({"name": "t", "leaves": [], "extra": 1})


def test_a_parser_defect_is_internal_error_at_admission_and_in_execution(chain):
    def bad_parse(body: Body) -> Poke:
        raise TypeError("defect")

    def never(state: State, ctx: TxContext, msg: Poke) -> None:
        raise AssertionError("not reached")

    mod = Module("test", 1, messages=(MsgKind("test/poke", bad_parse, never),))
    app = Application(chain.genesis, [*default_modules(), mod])
    raw = chain.tx(chain.users[0], "test/poke", {"key": b"k"})
    with pytest.raises(RejectedTx, match="internal-error: TypeError in test/poke"):
        app.check_tx(raw)
    _, result = apply(app, [raw])
    assert result.receipts[0].rule == "internal-error"
    assert result.receipts[0].detail == "TypeError in test/poke"
