"""Parameter changes and module upgrades by the validators' vote (issue 13.2, 13.3).

A validator of the active set proposes (``governance/propose_params``,
``governance/propose_upgrade``); every validator votes explicitly (``governance/vote``,
yes or no with a reason) — a validator votes yes on an upgrade only after its own dry run
of the new version (``gridledger.ledger.dryrun``, outside execution). A motion passes in
the block where yes votes of *current* members reach ``quorum(n)``; it is rejected as soon
as no votes make that impossible, and expires (no later than the block before an
upgrade's activation height) otherwise.

A passed parameter change takes effect for block ``h + 2`` (applied at the end of
``h + 1``, as validator-set changes are); a passed upgrade is scheduled at its activation
height (``ledger.upgrades``), where ``Application`` switches every validator to the new
version inside that block. Each applied change is appended to the change log.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from gridledger.errors import ConfigError
from gridledger.ledger import upgrades
from gridledger.ledger.block import quorum
from gridledger.ledger.context import BlockContext, TxContext
from gridledger.ledger.modules.governance import keeper
from gridledger.ledger.modules.governance.errors import (
    ActivationHeight,
    AlreadyVoted,
    BadParams,
    NotValidator,
    ProposalClosed,
    ProposalExists,
    ProposalExpired,
    TooManyProposals,
    UnknownModule,
    UnknownProposal,
    VersionNotNewer,
)
from gridledger.ledger.modules.governance.expected import ValidatorSet
from gridledger.ledger.modules.governance.types import (
    ACTIVATION_DELAY,
    MAX_OPEN_MOTIONS,
    MAX_UPGRADE_HORIZON,
    Change,
    Motion,
    ProposeParams,
    ProposeUpgrade,
    VoteMotion,
)
from gridledger.ledger.params import load_params, parse_params, store_params
from gridledger.ledger.state import State

VOTABLE = ("open", "passed", "rejected")
"""Statuses in which a motion still records votes (until its expiry height)."""


class Motions:
    """Handlers of motions; ``valset`` is the registry, ``versions`` the module versions the
    chain runs (``{module: version}``, from the catalog that built this module list)."""

    def __init__(self, valset: ValidatorSet, versions: Mapping[str, int]) -> None:
        self.valset = valset
        self.versions = dict(versions)

    def _require_member(self, state: State, sender: bytes) -> list[bytes]:
        current = self.valset.validator_set(state)
        if sender not in current:
            raise NotValidator("only members of the active validator set propose or vote")
        return current

    def _create(self, state: State, ctx: TxContext, motion: Motion) -> Motion:
        if len(keeper.open_motion_ids(state)) >= MAX_OPEN_MOTIONS:
            raise TooManyProposals(f"at most {MAX_OPEN_MOTIONS} motions open at once")
        m = dataclasses.replace(motion, id=keeper.new_motion_id(state))
        keeper.put_motion(state, m)
        keeper.set_open_motion_ids(state, [*keeper.open_motion_ids(state), m.id])
        return m

    def propose_upgrade(self, state: State, ctx: TxContext, msg: ProposeUpgrade) -> None:
        """``governance/propose_upgrade``: rules ``not-validator``, ``unknown-module``,
        ``version-not-newer``, ``proposal-exists`` (one open upgrade per module),
        ``activation-height``, ``too-many-proposals``."""
        current = self._require_member(state, ctx.sender)
        if msg.module not in self.versions:
            raise UnknownModule(f"this chain runs no module {msg.module!r}")
        running = self.versions[msg.module]
        if msg.version <= running:
            raise VersionNotNewer(f"{msg.module} runs version {running}")
        for m in keeper.open_motions(state):
            # a rejected motion only records late votes until expiry: it blocks nothing
            if m.action == "upgrade" and m.module == msg.module and m.status != "rejected":
                raise ProposalExists(f"motion {m.id} already upgrades {msg.module}")
        h = ctx.block.height
        notice = load_params(state).upgrade_notice_blocks
        if not h + notice <= msg.activation_height <= h + MAX_UPGRADE_HORIZON:
            raise ActivationHeight(f"activation must be in [{h + notice}, "
                                   f"{h + MAX_UPGRADE_HORIZON}]")
        expiry = load_params(state).valset_vote_expiry_blocks
        m = self._create(state, ctx, Motion(
            0, "upgrade", ctx.sender, h, min(h + expiry, msg.activation_height - 1), "open",
            (), (), msg.activation_height, module=msg.module, version=msg.version,
            from_version=running, digest=msg.digest))
        ctx.emit("upgrade_proposed", proposal=m.id, module=msg.module, version=msg.version,
                 from_version=running, activation=msg.activation_height, digest=msg.digest,
                 proposer=ctx.sender, expires=m.expires, needed=quorum(len(current)))

    def propose_params(self, state: State, ctx: TxContext, msg: ProposeParams) -> None:
        """``governance/propose_params``: rules ``not-validator``, ``bad-params`` (the
        result breaks a cross-parameter rule), ``too-many-proposals``."""
        current = self._require_member(state, ctx.sender)
        _merged(state, msg.params)  # refuses now what could never apply
        h = ctx.block.height
        expiry = load_params(state).valset_vote_expiry_blocks
        m = self._create(state, ctx, Motion(0, "params", ctx.sender, h, h + expiry, "open", (), (),
                                            0, params=msg.params))
        ctx.emit("params_proposed", proposal=m.id, params=[list(kv) for kv in msg.params],
                 proposer=ctx.sender, expires=m.expires, needed=quorum(len(current)))

    def vote(self, state: State, ctx: TxContext, msg: VoteMotion) -> None:
        """``governance/vote``: rules ``not-validator``, ``unknown-proposal``,
        ``proposal-expired``, ``proposal-closed``, ``already-voted``; an upgrade that can
        no longer apply when it passes (another upgrade of the module activated first):
        ``version-not-newer``.

        A vote that arrives after the motion was decided (validators vote in the same block;
        the quorum is reached by the first) is recorded too, until the motion's expiry or
        application: every validator's verdict and reason stay on the ledger."""
        current = self._require_member(state, ctx.sender)
        m = keeper.motion(state, msg.proposal)
        if m is None:
            raise UnknownProposal(f"no motion {msg.proposal}")
        if m.status == "expired" or (m.status in VOTABLE and ctx.block.height > m.expires):
            raise ProposalExpired(f"motion {m.id} took votes until height {m.expires}")
        if m.status not in VOTABLE:
            raise ProposalClosed(f"motion {m.id} already {m.status}")
        if ctx.sender in m.yes or ctx.sender in m.no:
            raise AlreadyVoted("one vote per validator and motion")
        if msg.approve:
            m = dataclasses.replace(m, yes=tuple(sorted((*m.yes, ctx.sender))))
        else:
            m = dataclasses.replace(m, no=tuple(sorted((*m.no, ctx.sender))),
                                    reasons=tuple(sorted((*m.reasons, (ctx.sender, msg.reason)))))
        yes = [v for v in m.yes if v in current]
        no = [v for v in m.no if v in current]
        need = quorum(len(current))
        ctx.emit("motion_vote", proposal=m.id, action=m.action, voter=ctx.sender,
                 approve=msg.approve, reason=msg.reason, yes=len(yes), no=len(no), needed=need,
                 status=m.status)
        if m.status == "open" and len(yes) >= need:
            m = self._pass(state, ctx, m, len(yes))
        elif m.status == "open" and len(current) - len(no) < need:
            m = dataclasses.replace(m, status="rejected")
            ctx.emit("motion_rejected", proposal=m.id, action=m.action, no=len(no),
                     reasons=[[v, r] for v, r in m.reasons])
        keeper.put_motion(state, m)

    def _pass(self, state: State, ctx: TxContext, m: Motion, votes: int) -> Motion:
        if m.action == "upgrade":
            module, version = str(m.module), int(m.version or 0)
            if version <= self.versions.get(module, 0):
                raise VersionNotNewer(f"{module} already runs version {self.versions[module]}")
            upgrades.schedule(state, upgrades.Activation(m.activation, module, version, m.id,
                                                         bytes(m.digest or b"")))
            ctx.emit("upgrade_passed", proposal=m.id, module=m.module, version=m.version,
                     activation=m.activation, votes=votes)
            return dataclasses.replace(m, status="passed")
        activation = ctx.block.height + ACTIVATION_DELAY
        ctx.emit("params_passed", proposal=m.id, activation=activation, votes=votes)
        return dataclasses.replace(m, status="passed", activation=activation)

    def end_block(self, state: State, ctx: BlockContext, events: list[dict[str, Any]]) -> None:
        """Expire stale motions; apply passed parameter changes due next block; record
        upgrades the block activated."""
        ids = keeper.open_motion_ids(state)
        if not ids:
            return
        still = []
        for mid in ids:
            m = keeper.motion(state, mid)
            if m is None:
                continue
            if m.status == "open" and ctx.height >= m.expires:
                keeper.put_motion(state, dataclasses.replace(m, status="expired"))
                events.append({"type": "motion_expired", "proposal": m.id, "action": m.action})
            elif m.status == "rejected" and ctx.height >= m.expires:
                pass  # decided: it stops taking (late) votes and leaves the open index
            elif m.status == "passed" and m.action == "params" and m.activation <= ctx.height + 1:
                events.append(self._apply_params(state, ctx, m))
            elif m.status == "passed" and m.action == "upgrade" and m.activation <= ctx.height:
                events.append(self._record_upgrade(state, ctx, m))
            else:
                still.append(mid)
        keeper.set_open_motion_ids(state, still)

    def _apply_params(self, state: State, ctx: BlockContext, m: Motion) -> dict[str, Any]:
        params = m.params or ()
        try:
            merged = _merged(state, params)
        except BadParams as exc:  # a change applied meanwhile made this one inconsistent
            keeper.put_motion(state, dataclasses.replace(m, status="failed"))
            return {"type": "params_change_skipped", "proposal": m.id, "reason": exc.detail}
        store_params(state, merged)
        keeper.put_motion(state, dataclasses.replace(m, status="applied"))
        keeper.log_change(state, Change(0, ctx.height, "params", m.proposer, m.id,
                                        params=params))
        return {"type": "params_changed", "proposal": m.id, "activation": ctx.height + 1,
                "params": [list(kv) for kv in params]}

    def _record_upgrade(self, state: State, ctx: BlockContext, m: Motion) -> dict[str, Any]:
        running = upgrades.active_versions(state, self.versions)
        applied = m.module is not None and running.get(m.module) == m.version
        keeper.put_motion(state, dataclasses.replace(m, status="applied" if applied else "failed"))
        if applied:
            keeper.log_change(state, Change(0, m.activation, "upgrade", m.proposer, m.id,
                                            module=m.module, version=m.version))
        return {"type": "upgrade_applied" if applied else "upgrade_failed", "proposal": m.id,
                "module": m.module, "version": m.version, "height": m.activation}


def _merged(state: State, changes: tuple[tuple[str, Any], ...]) -> Any:
    """The chain's parameters with ``changes`` applied; ``bad-params`` naming the rule."""
    current = load_params(state).to_obj()
    try:
        return parse_params({**current, **dict(changes)})
    except ConfigError as exc:
        raise BadParams(str(exc)) from exc
