"""The shape of a ledger module, and what block execution needs from modules.

A module is a package ``ledger/modules/<name>/`` of one shape (Cosmos SDK ``x/<name>``)::

    types.py       frozen dataclasses: state records (``Record``: canonical CBOR map) and
                   messages; ``parse_<kind>(body) -> message`` does ALL stateless validation
                   (types, ranges, sizes, exact field set) and is what admission runs too
    errors.py      one exception class per rule, each a subclass of a body category
                   (``InvalidBody``, ``Unauthorized``, ``InsufficientFunds``) naming ``rule``
    expected.py    ``typing.Protocol``s of what it uses from other modules ("expected
                   keepers"); the catalog passes the implementations in
    keeper.py      the only code that reads or writes the module's key prefix
    handlers.py    typed message -> keeper calls + events; thin
    invariants.py  checks any node or test can run after any block
    module.py      ``build(<dependencies>) -> Module``: kinds, roles, hooks, invariants, rules
    README.md      State, Messages, Events, Rules, Invariants

``ledger/modules/catalog.py`` is the one place where modules are wired to each other; no
module imports another module's package. The ledger core (``state``, ``context``,
``params``, ``codec``, ``record``, ``validate``, this file) is below every module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from gridledger.errors import RejectedTx
from gridledger.ledger.context import BlockContext, TxContext
from gridledger.ledger.state import State
from gridledger.ledger.upgrades import NO_CHANGE, Declaration

M = TypeVar("M")

Body = dict[str, Any]
"""A transaction body as decoded from canonical CBOR (text keys)."""
Handler = Callable[[State, TxContext, Body], None]
"""A legacy handler over the raw body (modules not yet converted to typed messages)."""
BlockHook = Callable[[State, BlockContext, list[dict[str, Any]]], None]
Invariant = Callable[[State], None]


@dataclass(frozen=True)
class Scoped:
    """An invariant that reads only keys under the prefixes ``reads``: inside a block,
    whose prior state held it, only a write under one of them can break it, so
    ``run_invariants`` skips it when the block wrote none (a full scan of every finding or
    decision after every block was ~2 % of a replayed block's CPU; issue 17). Outside a
    block (genesis, a restored state, tests) and in a block that activates an upgrade it
    always runs. Declare every prefix the check reads, other modules' keys included."""

    reads: tuple[bytes, ...]
    check: Invariant

    def __call__(self, state: State) -> None:
        self.check(state)
GenesisHook = Callable[[State, dict[str, Any]], None]
View = Callable[[State, str], Any]
"""A read-only query over state: ``(state, argument) -> plain data`` (ints, bytes, text,
lists, maps). Served by ``Application.query("<module>/<view>/<argument>")``."""


class History(Protocol):
    """What a node keeps of past blocks beside its state: the block events it stored for a
    height (its store's receipts, which the header's ``receipts_root`` commits to). A view
    reads it for records a ledger rule moved out of state into a block's events (the
    certificates archive); ``None`` when this node does not hold that block."""

    def block_events(self, height: int) -> list[dict[str, Any]] | None: ...


HistoryView = Callable[[State, "History | None", str], Any]
"""A view that may also read the node's stored block events (``History``; None when the
application has no store): served like a ``View``."""
RejectHook = Callable[[State, TxContext, str], None]
"""Called with the rule after an authenticated transaction failed in its body (the body's
changes already rolled back); e.g. reputation charges the sender."""


class Signer(Protocol):
    """What the envelope check reads about a sender (the registry's participant record)."""

    @property
    def alg(self) -> str: ...
    @property
    def pk(self) -> bytes: ...
    @property
    def roles(self) -> tuple[str, ...]: ...


class Accounts(Protocol):
    """What execution needs to authenticate senders and name the validator set.

    One module provides it (``Module.accounts``; the registry). A k-of-n committee sender
    (e.g. a DSO whose transactions are signed by several DSO nodes) would be a second kind
    of ``Signer`` checked in ``execute.authenticate``; nothing else needs to change.
    """

    def signer(self, state: State, addr: bytes) -> Signer | None: ...
    def validator_keys(self, state: State) -> list[tuple[str, bytes]]: ...


@dataclass(frozen=True)
class MsgKind(Generic[M]):
    """One transaction kind: its stateless parser, its typed handler, who may send it."""

    kind: str
    parse: Callable[[Body], M]
    """Stateless validation of the body; raises the ``RejectedTx`` naming the rule."""
    handle: Callable[[State, TxContext, M], None]
    roles: frozenset[str] | None = None
    """Roles allowed to send this kind (any one of them); ``None``: every participant."""


@dataclass(frozen=True)
class Module:
    """A ledger module: its message kinds, hooks, invariants and rules.

    ``handlers`` / ``roles`` (raw-body handlers) are the pre-typed form, still accepted
    while modules convert; new code lists ``messages``.
    """

    name: str
    version: int
    messages: tuple[MsgKind[Any], ...] = ()
    rules: tuple[type[RejectedTx], ...] = ()
    """Every rule the module's messages and hooks can raise (the chain-wide rule registry)."""
    init_genesis: GenesisHook | None = None
    begin_block: BlockHook | None = None
    end_block: BlockHook | None = None
    invariants: tuple[Invariant, ...] = ()
    on_rejected: RejectHook | None = None
    accounts: Accounts | None = None
    views: Mapping[str, View] = field(default_factory=dict)
    """Published read-only views (``query("<name>/<view>/<arg>")``): what the simulator,
    CLI and API read instead of the module's keys."""
    history_views: Mapping[str, HistoryView] = field(default_factory=dict)
    """Views that also read stored block events (``History``), served beside ``views``."""
    handlers: Mapping[str, Handler] = field(default_factory=dict)
    roles: Mapping[str, frozenset[str]] = field(default_factory=dict)
    migrate: BlockHook | None = None
    """Run once, at the start of the block where this version replaces the previous one
    (``ledger.upgrades.activate``): the state migration its ``declares`` describes."""
    declares: Declaration = NO_CHANGE
    """What this version's migration writes and what it changes compared with the
    previous version; the upgrade proposal carries its digest and validators' dry runs
    check it (``ledger.dryrun``)."""

    def kinds(self) -> list[MsgKind[Any]]:
        """Every kind this module handles, typed or legacy."""
        out = list(self.messages)
        for kind, h in self.handlers.items():
            out.append(MsgKind(kind, _raw_body, h, self.roles.get(kind)))
        return out


def _raw_body(body: Body) -> Body:
    return body
