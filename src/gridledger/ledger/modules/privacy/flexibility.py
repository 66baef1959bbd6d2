"""Flexibility non-delivery under pseudonyms (issue 15 x 19; threat rows 6/7): a sanctioned
pseudonym's offer is a recorded dispute that may open the identity escrow.

Flexibility settlement (``ledger/modules/flex``) charges the offer's owner ``non_delivery``
for a shortfall beyond tolerance and for faults (an implausible baseline, a claim its meter
does not show), and forfeits deposit. Under per-slot pseudonyms that owner is a throwaway
identity that starts every slot at neutral: the loss would end with it, and ``flex-suspended``
would never fire. So, in the block that settles the request, flexibility hands each
sanction of a registered pseudonym to ``FlexDisputes.record``, which records a dispute of
kind ``flex`` (``dispute_id_for_flex(request, offer)``) with the evidence: the request, the
offer, its first slot, the shortfall, the forfeited deposit and the faults (the
``opening_requested`` event carries the activated and delivered energy too; the offer's
record stays in state for the dispute window). From there it is the path of every recorded
dispute (``openings.py``): a trustee posts the escrow, k trustees release their committed
shares, the ledger opens the identity, and ``carry_penalty`` takes what the pseudonym lost
from its owner — whose tier then caps the tickets (pseudonyms) it may hold in the epochs it
joins next (``Pool.ticket_cap``). A sanction of a pseudonym whose owner is already on the
ledger reaches the owner in the same block.

The evidence rule: the request's slots lie in the slots the pseudonym was certified for (a
pseudonym offers only there, ``pseudonym-slot``; the check keeps the dispute honest if it
ever did otherwise). A chain without a privacy section, and a member trading under its own
name, record nothing: the sanction already reached the member.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gridledger.ledger.context import BlockContext
from gridledger.ledger.modules.privacy import keeper
from gridledger.ledger.modules.privacy.expected import FlexSanction, Reputation
from gridledger.ledger.modules.privacy.pool import now_slot
from gridledger.ledger.modules.privacy.records import DisputeRecord, dispute_id_for_flex
from gridledger.ledger.state import State


@dataclass
class FlexDisputes:
    """Records the dispute of a pseudonym's flexibility sanction (called by flex's
    settlement, wired in ``catalog.py``)."""

    reputation: Reputation

    def record(self, state: State, ctx: BlockContext, s: FlexSanction,
               events: list[dict[str, Any]]) -> None:
        """The dispute of sanction ``s``, if it charged a registered pseudonym for its own
        slots; nothing otherwise (no privacy section, a clear member, already recorded)."""
        if keeper.config(state) is None:
            return
        ps = keeper.get_pseudonym(state, s.member)
        if ps is None or s.first_slot < ps.first_slot or s.last_slot > ps.last_slot:
            return
        did = dispute_id_for_flex(s.request, s.offer)
        if keeper.get_dispute(state, did) is not None:
            return
        keeper.put_dispute(state, did, DisputeRecord(
            "flex", (s.member,), reason="non_delivery", slot=s.first_slot, request=s.request,
            offer=s.offer, shortfall_wh=s.shortfall_wh, penalty_micro=s.penalty_micro,
            faults=s.faults))
        events.append({"type": "opening_requested", "dispute": did, "kind": "flex",
                       "pseudonyms": [s.member], "slot": s.first_slot,
                       "request": s.request, "offer": s.offer, "cp": s.cp,
                       "activated_wh": s.activated_wh, "delivered_wh": s.delivered_wh,
                       "shortfall_wh": s.shortfall_wh, "penalty_micro": s.penalty_micro,
                       "faults": s.faults})
        opened = keeper.get_opening(state, s.member)
        if opened is not None:  # its owner is known: the sanction reaches it now
            events.append(self.reputation.adjust(state, opened.identity, "non_delivery",
                                                 now_slot(state, ctx.slot_time),
                                                 times=s.causes))
