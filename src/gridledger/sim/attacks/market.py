"""Market attacks (threat-model row 6): fake bids, non-delivery, false non-receipt claims.

Each is measured on settled bills and the ledger's events: the cheater's gain, the honest
members' loss against their no-market bill, and the sanctions the ledger recorded.
"""

from __future__ import annotations

from typing import Any, ClassVar

from gridledger.node.embedded import FinalizedBlock
from gridledger.sim.agents import Intent
from gridledger.sim.attack_base import Attack
from gridledger.sim.community import Member


class FakeBids(Attack):
    name: ClassVar[str] = "fake-bids"
    threat: ClassVar[str] = "6 market attacks"
    defence: ClassVar[str] = ("escrow: a buy order locks its full cost plus fees, or is "
                              "rejected (insufficient-funds)")
    window = (0.45, 0.55)
    FAKE_WH = 50_000_000     # 50 MWh at the retail price: far beyond any member's means

    def setup(self) -> None:
        self.attacker = self.pick(lambda m: m.role == "consumer")
        self.placed: list[int] = []
        self.rejected = 0
        self.accepted = 0

    def orders(self, m: Member, slot: int, intents: list[Intent]) -> list[Intent]:
        if m is not self.attacker or not self.eng.in_window(slot, *self.window):
            return intents
        self.placed.append(slot)
        v = self.eng.data.views[slot]
        return [i for i in intents if i.side == "buy"] + [Intent("buy", self.FAKE_WH, v.retail)]

    def on_block(self, fb: FinalizedBlock, events: list[dict[str, Any]]) -> None:
        for r in fb.result.receipts:
            info = self.eng.data.tx_info.get(r.tx_hash)
            if info and self.eng.identities.owner(info.sender) is self.attacker \
                    and info.kind == "market/order" \
                    and info.body.get("energy_wh") == self.FAKE_WH:
                if r.ok:
                    self.accepted += 1
                elif r.rule == "insufficient-funds":
                    self.rejected += 1

    def result(self) -> dict[str, Any]:
        loss = self.eng.honest_excess(self.placed)
        return self.record(len(self.placed), self.rejected, self.accepted == 0, loss,
                           attacker=self.attacker.name, entered_book=self.accepted,
                           note="loss = what honest members paid beyond their no-market bill "
                                "in the attacked slots")


class NonDelivery(Attack):
    name: ClassVar[str] = "non-delivery"
    threat: ClassVar[str] = "6 market attacks"
    defence: ClassVar[str] = (
        "settlement on meter evidence: the seller pays the imbalance price on the "
        "shortfall out of its deposit, the buyer is compensated; reputation sanctions")
    window = (0.75, 0.85)    # 18:00-20:24: PV is gone, the attacker sells energy it lacks
    FAKE_WH = 2_000

    def setup(self) -> None:
        self.attacker = self.pick(lambda m: "pv" in m.der and m.battery is None)
        self.slots: list[int] = []

    def orders(self, m: Member, slot: int, intents: list[Intent]) -> list[Intent]:
        if m is not self.attacker or not self.eng.in_window(slot, *self.window):
            return intents
        self.slots.append(slot)
        return [Intent("sell", self.FAKE_WH, self.eng.data.views[slot].feed_in)]

    def result(self) -> dict[str, Any]:
        eng, data = self.eng, self.eng.data

        def mine(addr: bytes) -> bool:  # its own address or one of its pseudonyms
            return eng.identities.owner(addr) is self.attacker

        nd = [e for e in data.events_of("non_delivery") if mine(e["seller"])]
        caught = {e["slot"] for e in nd}
        traded = {s for s in self.slots if any(mine(t["seller"]) for t in data.trades.get(s, []))}
        victims = {e["buyer"] for e in nd}
        loss = eng.honest_excess(self.slots, victims)
        gain = sum(b["baseline_total_micro"] - b["total_micro"]
                   for s in self.slots for a, b in data.bills.get(s, {}).items() if mine(a))
        rep = eng.reputation(self.attacker.address)
        penalties = sum(1 for e in data.events_of("reputation")
                        if mine(e["addr"]) and e["reason"] == "non_delivery")
        sanctioned = penalties >= len(caught)  # every caught slot cost reputation (graduated)
        ok = loss == 0 and gain <= 0 and (sanctioned or not traded)
        return self.record(len(traded), len(caught & traded), ok,
                           loss, attacker=self.attacker.name,
                           shortfall_wh=sum(e["shortfall_wh"] for e in nd),
                           compensation_micro=sum(e["compensation_micro"] for e in nd),
                           cheater_gain_micro=gain, cheater_reputation=rep,
                           reputation_penalties=penalties, victims=len(victims))


class FalseNonReceipt(Attack):
    name: ClassVar[str] = "false-non-receipt"
    threat: ClassVar[str] = "6 market attacks"
    defence: ClassVar[str] = (
        "disputes decided from the buyer's own signed meter: a false claim costs the "
        "claimant the dispute fee (paid to the seller) and reputation")
    window = (0.45, 0.65)
    MAX_CLAIMS = 6

    def setup(self) -> None:
        self.attacker = self.pick(lambda m: m.role == "consumer")
        self.claimed: set[tuple[int, int]] = set()
        self.scanned: set[int] = set()
        self.decisions: list[dict[str, Any]] = []

    def txs_block_a(self, slot: int, trading: bool) -> list[bytes]:
        eng, ids = self.eng, self.eng.identities
        out = []
        for s in sorted(eng.data.bills):
            if s in self.scanned or not eng.in_window(s, *self.window):
                continue
            # a settled slot's trades are final: scanned once, it never yields a claim again
            # (each step read every window slot's trades of the run, spilled after a day)
            self.scanned.add(s)
            for t in eng.data.trades.get(s, []):
                if ids.owner(t["buyer"]) is self.attacker and (s, t["index"]) not in self.claimed \
                        and len(self.claimed) < self.MAX_CLAIMS:
                    self.claimed.add((s, t["index"]))
                    # the buyer claims under the identity it bought with (its pseudonym)
                    out.append(eng.tx(ids.trading_key(self.attacker, s), "disputes/claim",
                                      {"slot": s, "trade": t["index"], "claim": "non-receipt"}))
        return out

    def on_block(self, fb: FinalizedBlock, events: list[dict[str, Any]]) -> None:
        self.decisions += [e for e in events if e["type"] == "dispute_decided"
                           and self.eng.identities.owner(e["claimant"]) is self.attacker]

    def result(self) -> dict[str, Any]:
        rejected = [d for d in self.decisions if d["outcome"] == "rejected"]
        remedy = sum(d["remedy_micro"] for d in self.decisions)
        return self.record(len(self.claimed), len(rejected),
                           remedy == 0 and len(rejected) == len(self.claimed),
                           remedy, attacker=self.attacker.name,
                           cheater_gain_micro=-sum(d["fee_micro"] for d in rejected),
                           cheater_reputation=self.eng.reputation(self.attacker.address))
