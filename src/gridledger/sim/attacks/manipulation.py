"""Market manipulation (docs/threat-model.md row 6): a coalition withholds and spoofs; the ledger's
surveillance module (``ledger/modules/surveillance``) stands against it.

The coalition: a *withholder* (the community's largest PV household) asks ``WITHHOLD_PCT`` %
of the retail tariff for whatever it would have sold (economic withholding: the supply that
sets the price is kept off the market), a *partner* (the next largest) sells as usual at the
price the coalition means to raise, and a *spoofer* (a consumer) keeps a large buy order
for the next slot on the book, visible for a step, and cancels it before the gate
(layering/spoofing: a false signal of demand). In this community the sellers are PV
households in daylight (the evening is short but nobody sells), so that is where the
withholding bites.

Measured from what the ledger did: findings naming the coalition (``market_abuse``
events), the reputation they cost, and the slot prices. The *competitive* price of each
attacked slot is the slot's accepted orders cleared again off-ledger by the same library
(``gridledger.market``), with the DSO's envelopes, and the withholder's orders at the
prices its own agent chose. Honest loss = what honest buyers paid above that price;
coalition gain = what the coalition's sales fetched above it (the manipulation premium).

The sanction must not cost the honest buyers either: in each slot the withholder's
suspension touched (its orders refused ``reputation-suspended``, or admitted mitigated to
the feed-in tariff under the ledger's must-offer rule: ``offer_mitigated``), the slot is
cleared again with those orders at its own agent's prices, and what honest buyers paid
above that clearing (P2P payments and grid fees, and the retail tariff for what they no
longer got P2P) is ``honest_loss_after_sanction``, counted in ``loss`` (in place of the
price premium for those slots).
"""

from __future__ import annotations

from typing import Any, ClassVar

from gridledger.ledger.tx import decode_tx
from gridledger.market import ClearingResult, GridFees, clear_slot
from gridledger.market import Order as LibOrder
from gridledger.node.embedded import FinalizedBlock
from gridledger.sim.agents import Intent
from gridledger.sim.attack_base import Attack
from gridledger.sim.community import Member


class PriceManipulation(Attack):
    name: ClassVar[str] = "price-manipulation"
    threat: ClassVar[str] = "6 market attacks"
    defence: ClassVar[str] = (
        "market surveillance in block execution: the conduct-and-impact test mitigates "
        "withheld offers to the feed-in tariff before the slot clears, layering is found "
        "from the book at block boundaries; every finding costs reputation (graduated "
        "tiers, appeal); under pseudonyms each finding is a recorded dispute whose escrow "
        "k trustees open, so the sanction reaches the owner and the pseudonyms it may hold "
        "next")
    window = (0.0, 0.90)     # of each day (of the run if shorter: RunClock.in_window)
    WITHHOLD_PCT = 300       # the withholder asks 3 x the retail tariff
    SPOOF_WH = 30_000        # the spoofer's visible buy order for the next slot

    def setup(self) -> None:
        # the members with the most PV surplus (beyond their own load) in the window, among
        # those no other scenario recruited first: whoever other scenarios take, the
        # withholder has supply to keep off the market (a single slot's PV peak, the old
        # ranking, says nothing about what a household's own load leaves to sell)
        def surplus(m: Member) -> int:
            return self.export_in(m, *self.window)

        self.withholder = self.pick(lambda m: "pv" in m.der and surplus(m) > 0, key=surplus)
        self.partner = self.pick(lambda m: "pv" in m.der and surplus(m) > 0, key=surplus)
        self.spoofer = self.pick(lambda m: m.role == "consumer")
        self.honest_intents: dict[int, list[Intent]] = {}   # the withholder's own choice
        self.withheld: list[int] = []
        self.spoofs: dict[int, bytes] = {}                 # slot -> spoof order id
        self.spoof_rejected = 0
        self.suspended_refusals: set[bytes] = set()        # tx ids refused for suspension
        self.suspended_offers: set[bytes] = set()          # ... admitted, mitigated (must-offer)

    @property
    def coalition(self) -> tuple[Member, ...]:
        return (self.withholder, self.partner, self.spoofer)

    # -- injection -----------------------------------------------------------------------
    def orders(self, m: Member, slot: int, intents: list[Intent]) -> list[Intent]:
        if m is not self.withholder or not self.eng.in_window(slot, *self.window) \
                or slot not in self.eng.data.views:
            return intents
        sells = [i for i in intents if i.side == "sell"]
        if not sells:
            return intents
        self.honest_intents[slot] = list(intents)
        self.withheld.append(slot)
        ask = self.eng.data.views[slot].retail * self.WITHHOLD_PCT // 100
        return [Intent(i.side, i.energy_wh, ask) if i.side == "sell" else i for i in intents]

    def txs_block_a(self, slot: int, trading: bool) -> list[bytes]:
        """Cancel the spoof for ``slot`` (before its gate), place one for ``slot + 1``."""
        eng, out = self.eng, []
        key = eng.identities.trading_key(self.spoofer, slot)
        oid = self.spoofs.get(slot)
        if oid is not None and eng.data.placed_ok(oid):
            out.append(eng.tx(key, "market/cancel", {"slot": slot, "order_id": oid}))
        nxt = slot + 1
        # once the ledger refuses its orders (suspended) the spoofer gives up
        if trading and nxt in eng.trading_slots() and eng.in_window(nxt, *self.window) \
                and not self.spoof_rejected:
            v = eng.data.views.get(slot)
            price = (v.retail - v.fee) if v is not None else 200_000
            raw = eng.tx(eng.identities.trading_key(self.spoofer, nxt), "market/order",
                         {"slot": nxt, "side": "buy", "energy_wh": self.SPOOF_WH,
                          "price_micro_per_kwh": price})
            self.spoofs[nxt] = decode_tx(raw).id
            out.append(raw)
        return out

    def on_block(self, fb: FinalizedBlock, events: list[dict[str, Any]]) -> None:
        ids = set(self.spoofs.values())
        self.spoof_rejected += sum(1 for r in fb.result.receipts
                                   if r.tx_hash in ids and not r.ok)
        self.suspended_refusals.update(r.tx_hash for r in fb.result.receipts
                                       if not r.ok and r.rule == "reputation-suspended")
        # must-offer: the ledger admitted a suspended seller's offer at the reference level
        self.suspended_offers.update(bytes(e["order_id"]) for e in events
                                     if e.get("type") == "offer_mitigated"
                                     and e["reason"] == "reputation-suspended")

    # -- measurement ---------------------------------------------------------------------
    def _own_orders(self, slot: int) -> tuple[dict[bytes, int], bool]:
        """The withholder's orders in ``slot`` that were placed or refused for its
        suspension, each with the price its own agent chose; and whether its suspension
        touched any (refused, or admitted mitigated under the must-offer rule)."""
        data = self.eng.data
        me = self.eng.identities.trading_key(self.withholder, slot).address
        mine = [tx_id for tx_id, info in data.orders(slot) if info.sender == me]
        # the scenario's order transactions follow the agent's intents one for one
        prices = {tx_id: i.price for tx_id, i in zip(mine, self.honest_intents.get(slot, []),
                                                     strict=False)}
        sanctioned = any(tx_id in self.suspended_refusals or tx_id in self.suspended_offers
                         for tx_id in mine)
        return ({i: p for i, p in prices.items()
                 if data.placed_ok(i) or i in self.suspended_refusals}, sanctioned)

    def _reclear(self, slot: int, asked: bool = False) -> tuple[ClearingResult, bool]:
        """The slot's accepted orders cleared again by the market library the ledger clears
        with (``gridledger.market.clear_slot``: the chain's mechanism, the DSO's envelopes
        and the slot's grid fee), with the withholder's orders — also those refused for its
        suspension — at its own agent's prices (``asked``: at the withheld asks it placed,
        the market without surveillance); and whether its suspension touched any."""
        eng, data = self.eng, self.eng.data
        own, sanctioned = self._own_orders(slot)
        orders: list[LibOrder] = []
        for tx_id, info in data.orders(slot):
            if not (data.placed_ok(tx_id) or tx_id in own):
                continue
            b = info.body
            price = int(b["price_micro_per_kwh"])
            if not asked:
                price = own.get(tx_id, price)
            orders.append(LibOrder(tx_id, info.sender, b["side"], int(b["energy_wh"]), price))
        envelopes = {}
        for m in eng.members:
            env = data.envelopes.get(slot, {}).get(m.cp)
            if env is not None:
                envelopes[eng.identities.trading_key(m, slot).address] = env
        fee = data.views[slot].fee
        return clear_slot(orders, eng.params.mechanism, envelopes=envelopes,
                          fees=GridFees(flat_micro_per_kwh=fee)), sanctioned

    def _bites(self, slot: int, competitive: ClearingResult) -> bool:
        """Whether withholding in ``slot`` moved the market at all: the slot cleared with the
        withheld asks trades another volume or at another volume-weighted price than with
        the withholder's own prices. One that moves nothing secures no artificial price
        (REMIT Art. 2(2)(a)(ii)), and the ledger's conduct-and-impact test rightly finds
        nothing to mitigate (at night, say, when the withholder's surplus finds no buyer
        either way)."""
        asked, _ = self._reclear(slot, asked=True)

        def outcome(r: ClearingResult) -> tuple[int, int | None]:
            return sum(t.energy_wh for t in r.trades), self._competitive_price(r)
        return outcome(asked) != outcome(competitive)

    def _competitive_price(self, result: ClearingResult) -> int | None:
        volume = sum(t.energy_wh for t in result.trades)
        if not volume:
            return None
        return sum(t.energy_wh * t.price_micro_per_kwh for t in result.trades) // volume

    def _honest_excess(self, slot: int, result: ClearingResult) -> int:
        """Micro-units honest buyers paid in ``slot`` above the re-clearing ``result``: each
        buyer's P2P payments and fees over the larger of its two fills, the rest at the
        retail tariff."""
        eng = self.eng
        retail = eng.data.views[slot].retail

        def costs(trades: list[tuple[bytes, int, int]]) -> dict[bytes, tuple[int, int]]:
            out: dict[bytes, tuple[int, int]] = {}
            for buyer, wh, micro in trades:
                if eng.is_honest(buyer):
                    got, paid = out.get(buyer, (0, 0))
                    out[buyer] = (got + wh, paid + micro)
            return out

        actual = costs([(bytes(t["buyer"]), t["energy_wh"],
                         t["payment_micro"] + t["grid_fee_micro"])
                        for t in eng.data.trades.get(slot, [])])
        fair = costs([(t.buyer, t.energy_wh, t.payment_micro + t.grid_fee_micro)
                      for t in result.trades])
        excess = 0
        for buyer in sorted(set(actual) | set(fair)):
            (a_wh, a_paid), (f_wh, f_paid) = actual.get(buyer, (0, 0)), fair.get(buyer, (0, 0))
            wh = max(a_wh, f_wh)
            excess += max(0, (a_paid + (wh - a_wh) * retail // 1000)
                          - (f_paid + (wh - f_wh) * retail // 1000))
        return excess

    def result(self) -> dict[str, Any]:
        eng, data = self.eng, self.eng.data
        ours = {eng.identities.trading_key(m, s).address
                for m in (self.withholder, self.partner) for s in self.withheld}

        loss = gain = after_sanction = sanctioned_slots = 0
        impacts = []
        biting: list[int] = []      # withheld slots where the withholding moved the market
        covered: set[int] = set()   # ... of those, slots the suspension already touched
        for s in self.withheld:
            cleared, sanctioned = self._reclear(s)
            if self._bites(s, cleared):
                biting.append(s)
                if sanctioned:
                    covered.add(s)
            if sanctioned:   # the excess covers the price paid and the energy not got P2P
                sanctioned_slots += 1
                after_sanction += self._honest_excess(s, cleared)
            comp = self._competitive_price(cleared)
            trades = data.trades.get(s, [])
            if comp is None or not trades:
                continue
            for t in trades:
                premium = t["price_micro_per_kwh"] - comp
                if eng.is_honest(t["buyer"]) and not sanctioned:
                    loss += max(0, premium) * t["energy_wh"] // 1000
                if t["seller"] in ours:
                    gain += premium * t["energy_wh"] // 1000
            vwap = (sum(t["energy_wh"] * t["price_micro_per_kwh"] for t in trades)
                    // max(1, sum(t["energy_wh"] for t in trades)))
            impacts.append(vwap - comp)
        loss += after_sanction
        names = {m.name for m in self.coalition}

        def ours_(addr: Any) -> bool:  # a member's own address or one of its pseudonyms
            m = eng.identities.owner(bytes(addr))
            return m is not None and m.name in names

        findings = [e for e in data.events_of("market_abuse")
                    if any(ours_(x) for x in e["subjects"])]
        kinds: dict[str, int] = {}
        for f in findings:
            kinds[f["kind"]] = kinds.get(f["kind"], 0) + 1
        subjects = {bytes(x) for f in findings for x in f["subjects"] if ours_(x)}
        sanctions = sum(1 for e in data.events_of("reputation")
                        if e["reason"] == "market_abuse" and bytes(e["addr"]) in subjects)
        named = sum(1 for f in findings for x in f["subjects"] if ours_(x))
        # under pseudonyms: each pseudonym a finding names must reach its owner (the finding
        # is a recorded dispute, the trustees open it: ledger/modules/privacy/market.py)
        members = {m.address for m in self.coalition}
        pseudonyms = subjects - members
        opened = {bytes(e["pseudonym"]) for e in data.events_of("identity_opened")
                  if e["kind"] == "market" and bytes(e["identity"]) in members}
        # reputation the members themselves lost for it: as named (clear), when opened
        # (the pseudonym's loss carried over) or named after their opening
        owner_sanctions = sum(1 for e in data.events_of("reputation")
                              if bytes(e["addr"]) in members
                              and (e["reason"] == "market_abuse"
                                   or (e["reason"] == "pseudonym_penalty"
                                       and bytes(e["pseudonym"]) in pseudonyms)))
        injected = len(self.withheld) + len(self.spoofs)
        # the defence must also have caught it: every withheld slot where the withholding
        # moved the market needs a withholding finding (or the suspension took the offers
        # off first), and a spoof on the book a finding at all (a spoof the ledger refused —
        # under privacy mode a pseudonym's allowance cannot back it — never reached the
        # book: nothing to find). Withholding that moved nothing is no abuse to find.
        found = {int(f["slot"]) for f in findings if f["kind"] == "withholding"}
        unfound = sorted(set(biting) - found - covered)
        spoofs_on_book = len(self.spoofs) - self.spoof_rejected
        mitigated = (loss == 0 and gain <= 0 and sanctions == named and not unfound
                     and (spoofs_on_book <= 0 or bool(findings)) and pseudonyms <= opened)
        return self.record(injected, len(findings), mitigated, loss,
                           coalition=[m.name for m in self.coalition],
                           withheld_slots=len(self.withheld),
                           withheld_slots_with_impact=len(biting),
                           withheld_slots_with_impact_unfound=unfound,
                           spoof_orders=len(self.spoofs),
                           spoofs_refused=self.spoof_rejected, findings_by_kind=kinds,
                           cheater_gain_micro=gain, sanctions=sanctions,
                           sanctioned_slots=sanctioned_slots,
                           honest_loss_after_sanction=after_sanction,
                           pseudonyms_found=len(pseudonyms),
                           pseudonyms_opened=len(pseudonyms & opened),
                           owner_sanctions=owner_sanctions,
                           price_impact_micro_per_kwh=impacts,
                           coalition_reputation={m.name: eng.reputation(m.address)
                                                 for m in self.coalition},
                           note="loss / gain = price paid / fetched above the slot's "
                                "competitive price (its orders cleared again with the "
                                "withholder's own asks); loss includes "
                                "honest_loss_after_sanction: what honest buyers paid above "
                                "the re-clearing of each slot the withholder's suspension "
                                "touched (refused, or must-offer mitigated), supply the "
                                "sanction might take off the market")
