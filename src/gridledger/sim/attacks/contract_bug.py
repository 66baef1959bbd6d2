"""``contract-bug`` (docs/threat-model.md row 12, smart contracts): a module upgrade that breaks money
conservation is proposed.

The release is a plausible vendor update — "bank v2: batched settlement payouts" — whose
payout from escrow credits the payee in full but takes a thousandth less from the
payer's lock (a rounding slip in the batching): every settlement creates money. The node
operators install the release so that they can review it, and a validator proposes the
upgrade with the release's own declaration (no migration; balances may differ while
payouts are batched; receipts may differ). The release itself is ``sim/releases.py``
(validator processes import it by name, without the simulator).

Defence: every validator dry-runs a proposed version over the last committed blocks of its
own store before voting (``sim/features/governance.py``, ``ledger.dryrun``); the first
replayed settlement breaks the ``total-supply`` invariant, so each votes no with that
finding, the motion is rejected and the release never activates. Read from the ledger:
detected = the motion rejected by the validators' no votes (with their reasons);
mitigated = the bank never ran version 2 and money still equals supply; loss = money
created or destroyed (micro-units). With the defence removed the release activates and the
first block that settles a slot is refused by every validator (``tests/sim``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from gridledger.node.embedded import FinalizedBlock
from gridledger.sim.attack_base import Attack
from gridledger.sim.releases import FAULTY_BANK


class ContractBug(Attack):
    name: ClassVar[str] = "contract-bug"
    threat: ClassVar[str] = "12 smart contracts"
    defence: ClassVar[str] = (
        "module upgrades by validator vote; before voting yes each validator dry-runs the new "
        "version over its last committed blocks (invariants every block, declared changes "
        "only); a refused upgrade never activates")
    AT: ClassVar[float] = 0.55
    """When the upgrade is proposed, as a fraction of the trading slots."""

    def setup(self) -> None:
        for v in self.eng.net.validators:
            v.app.install_release(FAULTY_BANK)
        self.proposal: int | None = None
        self.sent = False
        self.status = "not proposed"
        self.no_votes = self.yes_votes = 0
        self.reasons: list[str] = []
        self.activated_at: int | None = None
        self.supply0 = self.eng.ledger.supply()

    def txs_block_a(self, slot: int, trading: bool) -> list[bytes]:
        eng = self.eng
        if self.sent or not trading or slot - eng.first < int(eng.sc.slots * self.AT):
            return []
        app = eng.net.entry.app
        if any(a for a in app.query("governance/versions")["scheduled"]):
            return []  # another upgrade is on its way: propose after it
        self.sent = True
        for v in eng.net.validators:  # every operator has it to review (a restarted node too)
            v.app.install_release(FAULTY_BANK)
        digest = app.catalog.declaration_digest(app.versions(), "bank", 2)
        at = eng.net.height + 1 + app.query("governance/params")["upgrade_notice_blocks"] + 3
        return [eng.tx(eng.community.validators[0], "governance/propose_upgrade", {
            "module": "bank", "version": 2, "activation_height": at, "digest": digest})]

    def on_block(self, fb: FinalizedBlock, events: list[dict[str, Any]]) -> None:
        for e in events:
            t = e.get("type")
            if t == "upgrade_proposed" and e["module"] == "bank" and self.proposal is None:
                self.proposal = e["proposal"]
                self.status = "proposed"
            elif e.get("proposal") != self.proposal or self.proposal is None:
                continue
            elif t == "motion_vote":
                self.yes_votes, self.no_votes = e["yes"], e["no"]
                if not e["approve"]:
                    self.reasons.append(e["reason"])
            elif t in ("motion_rejected", "motion_expired", "upgrade_passed"):
                self.status = t.split("_", 1)[1]
            elif t == "module_upgraded":
                self.activated_at = e["height"]
                self.status = "activated"

    def result(self) -> dict[str, Any]:
        eng = self.eng
        money = eng.final.money if eng.final is not None else eng.ledger.money()
        supply = eng.final.supply if eng.final is not None else eng.ledger.supply()
        created = sum(money.values()) - supply
        injected = int(self.proposal is not None)
        refused = self.status in ("rejected", "expired") and self.no_votes > 0
        mitigated = injected == 1 and refused and self.activated_at is None and created == 0
        return self.record(injected, int(injected == 1 and refused), mitigated, abs(created),
                           proposal=self.proposal, status=self.status,
                           validators_refusing=self.no_votes, validators_approving=self.yes_votes,
                           finding=sorted(set(self.reasons))[0] if self.reasons else "",
                           money_created_micro=created, supply_unchanged=supply == self.supply0)
