"""Attacks on the market's credit and standing (threat-model row 6): escaping the retail bill
by moving money away, and washing a reputation score with trades of no substance.

Both are measured on what the ledger did: bills, ``unpaid`` and ``retail_hold_short``
events, and ``reputation`` events of the settlements that covered the attacked slots.
"""

from __future__ import annotations

from typing import Any, ClassVar

from gridledger.node.embedded import FinalizedBlock
from gridledger.sim.agents import Intent
from gridledger.sim.attack_base import Attack
from gridledger.sim.community import Member


class BalanceEscape(Attack):
    """A member moves its whole spendable balance to its other identity right after each
    settlement, hoping its retail import of the slots not yet settled goes unpaid."""

    name: ClassVar[str] = "balance-escape"
    threat: ClassVar[str] = "6 market attacks"
    defence: ClassVar[str] = (
        "retail hold: 3 slots of the member's recent peak import at the retail price stay "
        "locked, so the slots not yet settled are paid from it; when it cannot be topped up "
        "the ledger tells the DSO (retail_hold_short), which opens the meter's remote breaker "
        "as a prepayment meter does")
    window = (0.70, 1.0)     # from 16:48: evening import, no PV to earn from

    def setup(self) -> None:
        eng = self.eng
        start = next((s for s in eng.trading_slots() if eng.in_window(s, *self.window)), eng.first)
        # a steady household consumer: no PV/battery income, no EV or heat pump surge
        self.attacker = self.pick(lambda m: m.role == "consumer" and not m.der,
                                  key=lambda m: -self.load_from(m, start))
        self.accomplice = self.pick(lambda m: m.role == "consumer")
        self.escaped_after: set[int] = set()
        self.billed: set[int] = set()  # slots the attacker was billed in (``bill`` events)
        """Settled slots after which the balance was moved away."""
        self.moved_micro = 0
        self.moves = 0
        self.told: list[dict[str, Any]] = []
        """``retail_hold_short`` and ``unpaid`` events naming the attacker."""
        self.disconnected_from: int | None = None

    def load_from(self, m: Member, start: int) -> int:
        eng = self.eng
        load_wh = eng.model.load_wh[eng.model.cp_index(m.cp)]
        return sum(int(load_wh[eng.model.column(s)]) for s in eng.trading_slots() if s >= start)

    def escaping(self, slot: int) -> bool:
        return self.eng.in_window(slot, *self.window)

    def orders(self, m: Member, slot: int, intents: list[Intent]) -> list[Intent]:
        # a member on the run buys nothing it would have to pay for through the market
        return [] if m is self.attacker and self.moves else intents

    def txs_block_a(self, slot: int, trading: bool) -> list[bytes]:
        eng, me = self.eng, self.attacker.address
        # kept from the events as they come (a scan of every slot's bills each step read the
        # whole run's bills, spilled to disk after a day: issue 17)
        settled = self.billed
        if not settled or not (trading and self.escaping(slot)):
            return []
        last = max(settled)
        if last in self.escaped_after:
            return []
        self.escaped_after.add(last)
        spendable, _locked = eng.ledger.balance(me)
        if spendable <= 0:
            return []
        self.moves += 1
        self.moved_micro += spendable
        return [eng.tx(self.attacker.key, "bank/transfer",
                       {"to": self.accomplice.address, "amount_micro": spendable})]

    def on_block(self, fb: FinalizedBlock, events: list[dict[str, Any]]) -> None:
        me = self.attacker.address
        self.billed.update(e["slot"] for e in events if e.get("type") == "bill" and e["addr"] == me)
        told = [e for e in events if e.get("type") in ("retail_hold_short", "unpaid")
                and e.get("addr") == me]
        if told and self.disconnected_from is None:
            # the DSO acts on the ledger's word from the next slot it delivers
            self.disconnected_from = max(self.eng.data.delivered_slots, default=self.eng.first) + 1
        self.told += told

    def physical(self, slot: int, injection_wh: dict[str, int]) -> None:
        if self.disconnected_from is not None and slot >= self.disconnected_from:
            injection_wh[self.attacker.cp] = 0

    def result(self) -> dict[str, Any]:
        me = self.attacker.address
        bills = [b[me] for s, b in sorted(self.eng.data.bills.items()) if me in b]
        unpaid = sum(b.get("unpaid_micro", 0) for b in bills)
        collected = sum(b.get("debt_paid_micro", 0) for b in bills)
        shorts = sum(1 for e in self.told if e["type"] == "retail_hold_short")
        label = (self.eng.label(self.disconnected_from)
                 if self.disconnected_from is not None else None)
        loss = max(0, unpaid - collected)
        return self.record(self.moves, len(self.told), self.moves > 0 and loss == 0, loss,
                           attacker=self.attacker.name, accomplice=self.accomplice.name,
                           moved_micro=self.moved_micro, unpaid_retail_micro=unpaid,
                           debt_collected_micro=collected, hold_short_events=shorts,
                           unpaid_events=len(self.told) - shorts, disconnected_at=label,
                           note="loss = retail import the grid could not collect from the "
                                "attacker (unpaid, less debt collected later)")


class ReputationWash(Attack):
    """Two colluders trade 1 Wh, four times a slot, the seller asking 0 and the buyer bidding
    the retail price, hoping each settled trade lifts both scores."""

    name: ClassVar[str] = "reputation-wash"
    threat: ClassVar[str] = "6 market attacks"
    defence: ClassVar[str] = (
        "reputation by economic substance: a settlement earns per 500 Wh delivered AND "
        "25 000 micro paid, per participant and slot, capped at +15 (1 Wh or price-0 "
        "trades earn nothing)")
    window = (0.40, 0.60)    # 09:36-14:24: the seller's PV covers the 4 Wh it sells
    TRADES_PER_SLOT = 4

    def setup(self) -> None:
        self.seller = self.pick(lambda m: "pv" in m.der and m.battery is None,
                                key=lambda m: self.export_in(m, *self.window))
        self.buyer = self.pick(lambda m: m.role == "consumer")
        self.colluders = {self.seller.address: self.seller, self.buyer.address: self.buyer}
        self.wash_slots: list[int] = []
        self.settled_slot: dict[bytes, int] = {}
        self.gains: dict[bytes, int] = dict.fromkeys(self.colluders, 0)
        """Reputation each colluder earned from settlements of wash slots."""
        self.paid: set[int] = set()

    def orders(self, m: Member, slot: int, intents: list[Intent]) -> list[Intent]:
        if m not in (self.seller, self.buyer):
            return intents
        if not self.eng.in_window(slot, *self.window):
            return []        # the colluders' accounts exist to wash: no other trading
        if m is self.seller:
            self.wash_slots.append(slot)
            return [Intent("sell", 1, 0)] * self.TRADES_PER_SLOT
        return [Intent("buy", 1, self.eng.data.views[slot].retail)] * self.TRADES_PER_SLOT

    def colluder(self, addr: object) -> bytes | None:
        """The colluder (by its member address) behind a ledger address, under any identity."""
        m = self.eng.identities.owner(addr) if isinstance(addr, bytes) else None
        return m.address if m is not None and m.address in self.colluders else None

    def on_block(self, fb: FinalizedBlock, events: list[dict[str, Any]]) -> None:
        # a settlement's bill names the slot; the reputation events after it in the same
        # block are that settlement's
        for e in events:
            addr = self.colluder(e.get("addr"))
            if addr is None:
                continue
            if e.get("type") == "bill":
                self.settled_slot[addr] = e["slot"]
            elif e.get("type") == "reputation" and e.get("reason") == "trade_settled" \
                    and self.settled_slot.get(addr) in self.wash_slots:
                self.gains[addr] += e["delta"]
                self.paid.add(self.settled_slot[addr])

    def result(self) -> dict[str, Any]:
        data = self.eng.data
        wash = set(self.wash_slots)
        trades = [t for s in sorted(wash) for t in data.trades.get(s, [])
                  if self.colluder(t["seller"]) or self.colluder(t["buyer"])]
        settled = {s for s in wash if any(self.colluder(a) for a in data.bills.get(s, {}))}
        gain = sum(self.gains.values())
        return self.record(
            len(trades), len(settled - self.paid), bool(trades) and gain == 0, gain,
            loss_unit="reputation points", seller=self.seller.name, buyer=self.buyer.name,
            wash_slots=len(wash), settled_wash_slots=len(settled),
            seller_reputation=self.eng.reputation(self.seller.address),
            buyer_reputation=self.eng.reputation(self.buyer.address),
            note="detected = settled wash slots the ledger granted no reputation for; "
                 "loss = reputation points the colluders gained from them")
