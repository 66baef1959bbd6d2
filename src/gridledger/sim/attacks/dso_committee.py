"""``dso-crash`` (docs/threat-model.md row 7, single point of failure): one DSO node crashes mid-run
and another DSO node's key is stolen.

The DSO is a 2-of-3 committee (``sim/community.py``; ledger side
``gridledger.ledger.committee``): its envelopes, false-data flags and fee changes need the
signatures of two of its three nodes. In the window the scenario

* stops DSO node 0 (a crash) and starts it again at the window's end — once per run, in
  the first day's window (a multi-day run does not crash it again);
* with DSO node 2's stolen key alone, forges the DSO's ``market/envelope`` transactions for
  the slot just opened (every member's limits 0, which would stop the slot's trading),
  split and keyed as the DSO's own (``sim.features.dso.envelope_bodies``: one transaction
  per ENVELOPES_PER_TX members, so each forgery passes every check but the signatures' at
  any community size) — each once with the one signature, once with that signature listed
  twice — submitted right after the slot's honest transactions, so they would replace the
  DSO's real envelopes. Injected = 1 (the crash) + 2 per envelope transaction.

Read from what the ledger and the nodes did: detected = the outage bridged (the duties of
the window carry no signature of the stopped node, yet executed) plus every forgery refused
with a committee rule; mitigated = every DSO duty of the window executed, every trading slot
of the window got its envelope, no forgery admitted and the restarted node signs again;
loss = what honest members paid beyond their no-market bill in the window's slots (micro).
Defences removed in ``tests/sim/test_governance.py``: a 1-of-1 DSO (the crash stops every
duty) and a 1-of-3 DSO (one stolen key forges the envelopes).
"""

from __future__ import annotations

import itertools
from typing import Any, ClassVar

from gridledger.committee import CommitteeNode, assemble, member_signature, unsigned_tx
from gridledger.errors import RejectedTx
from gridledger.ledger.tx import TX_CONTEXT, decode_tx
from gridledger.node.embedded import FinalizedBlock
from gridledger.sim.attack_base import Attack
from gridledger.sim.clock import SLOT_S, T_ORDERS
from gridledger.sim.features.dso import envelope_bodies


class DsoCrash(Attack):
    name: ClassVar[str] = "dso-crash"
    threat: ClassVar[str] = "7 single point of failure"
    defence: ClassVar[str] = (
        "the DSO's duties are signed by 2 of its 3 nodes (k-of-n ML-DSA signatures checked at "
        "admission and execution): one node's crash does not stop them, one node's key alone "
        "forges nothing (committee-threshold, duplicate-signer)")
    window: ClassVar[tuple[float, float]] = (0.40, 0.55)

    def setup(self) -> None:
        dso = self.eng.community.dso
        self.dso = dso
        self.crashed: CommitteeNode = dso.nodes[0]
        self.stolen: CommitteeNode = dso.nodes[-1]
        self.outage: list[int] = []
        self.restarted = False
        self.signed_at: dict[str, int] = {}
        self._scanned = 0
        self.duties: dict[bytes, tuple[str, Any]] = {}   # tx id -> (kind, slot) in the outage
        self.duties_ok: set[bytes] = set()
        self.duties_failed: dict[str, int] = {}
        self.forged: list[str] = []                     # admission rule per forgery ("" = admitted)
        self.forged_ids: set[bytes] = set()
        self.forged_executed = 0

    # -- the crash ---------------------------------------------------------------------------
    def txs_block_a(self, slot: int, trading: bool) -> list[bytes]:
        # one crash per run, in the first day's window (as the validator ``crash``): the
        # window recurs every day of a longer run, but the outage is the slots the node was
        # really down, the slots whose envelopes only the other two nodes could sign
        inside = trading and self.eng.in_window(slot, *self.window) and not self.restarted
        if inside:
            if self.crashed.running and not self.outage:
                self.signed_at["stop"] = self.crashed.signed
                self.crashed.stop()
            self.outage.append(slot)
        elif self.outage and not self.crashed.running:
            self.signed_at["restart"] = self.crashed.signed
            self.crashed.start()
            self.restarted = True
        return []

    # -- the stolen key ------------------------------------------------------------------------
    def after_submit(self, slot: int, raws: list[bytes]) -> None:
        if not self.outage or slot != self.outage[0] or self.forged:
            return
        eng = self.eng
        # the slot's envelopes as the DSO posts them (``envelope_bodies``: its split into
        # transactions, its cps, at any community size), every limit 0: the forgeries differ
        # from the honest messages only in their signatures, the defence under test (a
        # single body of 1,000 members' envelopes was refused as invalid-body or oversize
        # before any signature was looked at)
        entries = sorted([eng.identities.ledger_cp(m, slot), 0, 0] for m in eng.members)
        nonce = eng.net.mempool.expected_nonce(self.dso.address)
        forged = []
        for k, body in enumerate(envelope_bodies(slot, entries)):
            msg = unsigned_tx(self.dso.committee, eng.sc.chain_id, nonce + k,
                              "market/envelope", body)
            one = member_signature(self.stolen.key, self.dso.committee, msg, TX_CONTEXT)
            forged += [assemble(msg, [one]), assemble(msg, [one, one])]
        # straight to the entry node (not ctx.submit: it would resync the DSO's nonces)
        results = eng.net.submit_many(forged, float(slot * SLOT_S + T_ORDERS))
        for raw, r in zip(forged, results, strict=True):
            self.forged.append(r.rule if isinstance(r, RejectedTx) else "")
            if not isinstance(r, RejectedTx):
                self.forged_ids.add(decode_tx(raw).id)
        eng.data.record_admission([r for r in self.forged if r], len(self.forged_ids))

    def caused(self, tx_id: bytes) -> bool:
        """A failed receipt is this scenario's if it is a forgery (its members are honest)."""
        return tx_id in self.forged_ids

    # -- what the ledger did -------------------------------------------------------------------
    def before_tick(self, time_s: int) -> None:
        info = self.eng.data.tx_info
        if len(info) == self._scanned:
            return
        # only the entries added since the last tick (newest last), not a copy of them all
        new = list(itertools.islice(reversed(info.items()), len(info) - self._scanned))
        for tx_id, ti in reversed(new):
            if ti.sender == self.dso.address and not self.crashed.running:
                self.duties[tx_id] = (ti.kind, ti.body.get("slot"))
        self._scanned = len(info)

    def on_block(self, fb: FinalizedBlock, events: list[dict[str, Any]]) -> None:
        for r in fb.result.receipts:
            if r.tx_hash in self.forged_ids:
                self.forged_executed += int(r.ok)
            elif r.tx_hash in self.duties:
                if r.ok:
                    self.duties_ok.add(r.tx_hash)
                else:
                    self.duties_failed[r.rule] = self.duties_failed.get(r.rule, 0) + 1

    def result(self) -> dict[str, Any]:
        outage_signed = self.signed_at.get("restart", self.crashed.signed) - \
            self.signed_at.get("stop", 0)
        bridged = bool(self.duties) and outage_signed == 0 and \
            len(self.duties_ok) == len(self.duties)
        refused = sum(1 for rule in self.forged if rule in (
            "committee-threshold", "duplicate-signer"))
        enveloped = {slot for tx_id, (kind, slot) in self.duties.items()
                     if kind == "market/envelope" and tx_id in self.duties_ok}
        back = self.restarted and self.crashed.signed > self.signed_at.get("restart", 0)
        mitigated = bridged and refused == len(self.forged) > 0 and not self.forged_ids \
            and enveloped >= set(self.outage) and back
        loss = self.eng.honest_excess(self.outage)
        return self.record(
            1 + len(self.forged), int(bridged) + refused, mitigated, loss,
            outage_slots=len(self.outage), duties_in_outage=len(self.duties),
            duties_executed=len(self.duties_ok), duties_failed=self.duties_failed,
            crashed_node_signatures_in_outage=outage_signed,
            slots_with_envelope=len(enveloped & set(self.outage)),
            restarted_node_signs_again=back, forgeries=len(self.forged),
            forgeries_refused={rule or "admitted": self.forged.count(rule)
                               for rule in sorted(set(self.forged))},
            forged_executed=self.forged_executed)
