"""Module versions and their activation at a height (issue 13.2).

Every module carries a version. Which version of each module executes a block is chain
state, so two validators (and ``verify-chain`` years later) run the same code for the same
block:

State
  ``gov/versions``  ``{module: version}`` in force; absent until the first upgrade, when the
                    genesis versions apply (``genesis_versions``)
  ``gov/upgrades``  passed upgrades waiting for their height:
                    ``[[height, module, version, proposal, digest], …]`` by height

Governance is the only writer of the schedule (an upgrade proposal passed by the validator
quorum); ``Application`` reads it before each block and, at the activation height, builds
the new module list from the catalog and calls ``activate`` inside the block: the new
version's migration runs, ``gov/versions`` is rewritten, and the block event
``module_upgraded`` names the module, the versions and the proposal. A migration that
raises aborts the block (every honest validator alike): the chain stops rather than run a
version whose state it could not build.

What an upgrade *declares* (``Declaration``) travels in the proposal as a digest; each
validator's dry run (``gridledger.ledger.dryrun``) checks the new version against it before
voting yes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gridledger.crypto.hashing import tagged_hash
from gridledger.ledger import codec
from gridledger.ledger.context import BlockContext
from gridledger.ledger.state import State

VERSIONS_KEY = b"gov/versions"
SCHEDULE_KEY = b"gov/upgrades"
GENESIS_SECTION = "versions"
"""Optional genesis section ``{module: version}``: the versions a chain starts with."""


@dataclass(frozen=True)
class Declaration:
    """What a module version says about itself, checked by every validator's dry run.

    ``migration``: one line describing the state migration run at activation.
    ``writes``: key prefixes the migration may write (create, change or delete).
    ``changes``: key prefixes whose values may differ from the previous version's when the
    same blocks are executed (e.g. ``bank/bal/`` for a fee rule); everything else must come
    out identical. ``receipts``: whether receipts (rules, events) may differ; if False
    every receipt of the replayed blocks must be byte-identical to the committed one.
    """

    migration: str = "none"
    writes: tuple[bytes, ...] = ()
    changes: tuple[bytes, ...] = ()
    receipts: bool = False

    def digest(self, module: str, version: int) -> bytes:
        """What a proposal carries for this version: SHA3 over the module, the version and
        the declaration (canonical CBOR)."""
        return tagged_hash("gl/upgrade", codec.encode({
            "changes": list(self.changes), "migration": self.migration, "module": module,
            "receipts": self.receipts, "version": version, "writes": list(self.writes)}))

    def may_write(self, key: bytes) -> bool:
        """Whether the migration may write ``key``."""
        return any(key.startswith(p) for p in self.writes)

    def may_differ(self, key: bytes) -> bool:
        """Whether ``key`` may end up different from the previous version's state after
        the same blocks: written by the migration, or declared as changed."""
        return any(key.startswith(p) for p in self.writes + self.changes)


NO_CHANGE = Declaration()
"""The declaration of a version that changes nothing observable (the first version)."""


@dataclass(frozen=True)
class Activation:
    """A passed upgrade: ``module`` switches to ``version`` at block ``height``."""

    height: int
    module: str
    version: int
    proposal: int
    digest: bytes


def genesis_versions(doc: Mapping[str, Any], defaults: Mapping[str, int]) -> dict[str, int]:
    """The versions a chain starts with: ``defaults`` (the catalog's), overridden by the
    genesis section ``versions``."""
    out = dict(defaults)
    for name, v in dict(doc.get(GENESIS_SECTION, {})).items():
        out[str(name)] = int(v)
    return out


def active_versions(state: State, genesis: Mapping[str, int]) -> dict[str, int]:
    """The versions executing now: the stored map, or the genesis versions."""
    stored = state.get_obj(VERSIONS_KEY)
    return dict(genesis) if stored is None else {str(k): int(v) for k, v in stored.items()}


def scheduled(state: State) -> list[Activation]:
    """Passed upgrades not yet active, by (height, proposal)."""
    return [Activation(int(h), str(m), int(v), int(p), bytes(d))
            for h, m, v, p, d in state.get_obj(SCHEDULE_KEY, [])]


def schedule(state: State, act: Activation) -> None:
    """Add a passed upgrade (governance only)."""
    acts = sorted([*scheduled(state), act], key=lambda a: (a.height, a.proposal))
    state.set_obj(SCHEDULE_KEY, [[a.height, a.module, a.version, a.proposal, a.digest]
                                 for a in acts])


def due(state: State, height: int) -> list[Activation]:
    """The upgrades that activate at block ``height`` (or before it, if blocks were empty
    of them: never skipped)."""
    return [a for a in scheduled(state) if a.height <= height]


def activate(state: State, ctx: BlockContext, acts: Sequence[Activation],
             versions_before: Mapping[str, int], modules: Sequence[Any],
             events: list[dict[str, Any]]) -> None:
    """Switch to the new versions inside block ``ctx.height``: run each new version's
    migration (``Module.migrate``), rewrite ``gov/versions`` from ``modules`` (the new
    list), drop the activations from the schedule, and emit ``module_upgraded``.

    A migration's exception propagates (the caller aborts the block)."""
    by_name = {m.name: m for m in modules}
    for a in sorted(acts, key=lambda a: (a.height, a.proposal)):
        m = by_name[a.module]
        migration_events: list[dict[str, Any]] = []
        if m.migrate is not None:
            m.migrate(state, ctx, migration_events)
        events.append({"type": "module_upgraded", "module": a.module,
                       "from_version": versions_before.get(a.module, 0), "version": a.version,
                       "proposal": a.proposal, "digest": a.digest, "height": ctx.height})
        events.extend(migration_events)
    state.set_obj(VERSIONS_KEY, {m.name: m.version for m in sorted(modules, key=lambda m: m.name)})
    done = {(a.module, a.proposal) for a in acts}
    rest = [a for a in scheduled(state) if (a.module, a.proposal) not in done]
    if rest:
        state.set_obj(SCHEDULE_KEY, [[a.height, a.module, a.version, a.proposal, a.digest]
                                     for a in rest])
    else:
        state.delete(SCHEDULE_KEY)
