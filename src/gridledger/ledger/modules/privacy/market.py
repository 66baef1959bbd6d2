"""Surveillance findings against pseudonyms (issue 14.1; threat row 6): a finding is a
recorded dispute that may open the identity escrow.

Surveillance (``ledger/modules/surveillance``) sanctions every address a finding names.
Under per-slot pseudonyms that address is a throwaway identity: the sanction would end with
it. So, in the block that makes a finding, this step records a dispute of kind ``market``
naming the registered pseudonyms among its subjects (``dispute_id_for_finding``), with the
finding's id and slot; clear subjects were sanctioned by surveillance already. From there
it is the path of every recorded dispute (``openings.py``): a trustee posts the escrow, k
trustees release their committed shares, the ledger opens exactly those identities and
logs each opening. At the opening the owner takes what its pseudonym lost
(``carry_penalty``: the findings' ``market_abuse`` and anything else), so its tier — and
with it the tickets, hence the pseudonyms, it may hold in the epochs it joins from then on
(``Pool.ticket_cap``: half on watch, none restricted or suspended, who then trade under
their own name) — follows the conduct. A finding naming a pseudonym whose owner is already
on the ledger sanctions that owner at once.

The evidence rule: the finding is about the pseudonym's own conduct — a withholding or
layering finding's slot, or one of a wash trade's slots, lies in the slots the pseudonym
was certified for. A finding that does not meet it records nothing (it cannot occur on a
ledger that only lets a pseudonym trade in its slots; the check keeps the dispute honest if
it ever did).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gridledger.ledger.context import BlockContext
from gridledger.ledger.modules.privacy import keeper
from gridledger.ledger.modules.privacy.expected import Finding, Reputation, Surveillance
from gridledger.ledger.modules.privacy.pool import now_slot
from gridledger.ledger.modules.privacy.records import (
    DisputeRecord,
    PseudonymRecord,
    dispute_id_for_finding,
)
from gridledger.ledger.state import State


def about_pseudonym(f: Finding, ps: PseudonymRecord) -> bool:
    """The evidence rule: the finding concerns a slot the pseudonym was certified for."""
    slots = f.slots if f.slots else (f.slot,)
    return any(ps.first_slot <= s <= ps.last_slot for s in slots)


@dataclass
class MarketDisputes:
    """The end-of-block step that turns this block's findings into recorded disputes."""

    surveillance: Surveillance
    reputation: Reputation

    def findings_of_block(self, state: State, height: int) -> list[Finding]:
        """The findings surveillance made at ``height`` (its hook runs earlier in the same
        block), by id: the newest ids, read back until one is older."""
        out: list[Finding] = []
        fid = self.surveillance.count(state) - 1
        while fid >= 0:
            f = self.surveillance.finding(state, fid)
            if f is None or f.height != height:
                break
            out.append(f)
            fid -= 1
        return out[::-1]

    def step(self, state: State, ctx: BlockContext, events: list[dict[str, Any]]) -> None:
        for f in self.findings_of_block(state, ctx.height):
            self.record(state, ctx, f, events)

    def record(self, state: State, ctx: BlockContext, f: Finding,
               events: list[dict[str, Any]]) -> None:
        """Record the dispute of finding ``f`` (if it names a pseudonym by the rule)."""
        targets = []
        for addr in sorted(f.subjects):
            ps = keeper.get_pseudonym(state, addr)
            if ps is not None and about_pseudonym(f, ps):
                targets.append(addr)
        did = dispute_id_for_finding(f.id)
        if not targets or keeper.get_dispute(state, did) is not None:
            return
        keeper.put_dispute(state, did, DisputeRecord("market", tuple(targets),
                                                     reason="market_abuse", slot=f.slot,
                                                     finding=f.id))
        events.append({"type": "opening_requested", "dispute": did, "kind": "market",
                       "pseudonyms": targets, "slot": f.slot, "finding": f.id,
                       "finding_kind": f.kind})
        now = now_slot(state, ctx.slot_time)
        for addr in targets:
            opened = keeper.get_opening(state, addr)
            if opened is not None:  # its owner is known: the sanction reaches it now
                events.append(self.reputation.adjust(state, opened.identity, "market_abuse",
                                                     now))
