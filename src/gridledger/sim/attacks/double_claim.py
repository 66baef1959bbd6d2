"""``double-claim`` (docs/threat-model.md row 6, market attacks): a member claims the same green
energy twice.

A consumer that bought PV energy holds the granular certificates the trades transferred to
it and cancels them against its consumption (the certificates feature does that for
everyone). The attacker is recruited from what the run really has: in the midday window,
the honest consumer without a battery (largest load in the window first) that holds a
cancelled consumption bundle, so a short run whose largest consumer happens to buy no PV
energy still has its attack. Then, for one of its cancelled bundles per step, it
tries to count the energy again: it cancels the bundle a second time, transfers it to
another member (who could then claim it), and sends a cancellation that lists the bundle
twice.

Detected = the ledger's refusals: receipts ``certificate-not-active`` and admission
rejections ``certificate-listed-twice``. Loss (Wh) = energy counted twice, read from the
ledger: the attacker's claims beyond the cancelled certificates it holds, plus any Wh of
the attacked bundles that left its hands or its cancelled state.
"""

from __future__ import annotations

from typing import Any, ClassVar

from gridledger.ledger.modules.certificates.types import slots_of_hour
from gridledger.ledger.tx import decode_tx, sign_tx
from gridledger.node.embedded import FinalizedBlock
from gridledger.sim.attack_base import Attack
from gridledger.sim.community import Member

LOOKBACK_SLOTS = 12
"""How far back the attacker looks for bundles it cancelled."""


class DoubleClaim(Attack):
    name: ClassVar[str] = "double-claim"
    threat: ClassVar[str] = "6 market attacks"
    defence: ClassVar[str] = (
        "cancellation is final on the ledger: a cancelled bundle is neither cancelled nor "
        "transferred again (certificate-not-active), a message naming it twice is refused at "
        "admission, and an invariant checks every holder's claims against the cancelled "
        "certificates it holds")
    window = (0.40, 0.75)   # 09:36-18:00 on a day run: PV sold, certificates cancelled

    def setup(self) -> None:
        self.attacker: Member | None = None
        """Recruited at the first window slot where a candidate holds a cancelled bundle."""
        self.accomplice: Member | None = None
        self.targets: dict[tuple[int, int], int] = {}   # (slot, start) -> Wh
        self.sent: dict[bytes, str] = {}                # tx id -> attempt
        self.refused = 0

    def candidate(self, m: Member) -> bool:
        return m.honest and m.role == "consumer" and m.battery is None

    def txs_block_a(self, slot: int, trading: bool) -> list[bytes]:
        eng = self.eng
        if not eng.in_window(slot, *self.window):
            return []
        held: list[tuple[Member, tuple[int, int], int]] = []
        for s in range(slot - LOOKBACK_SLOTS, slot):
            # owners by member (identities.owner maps a pseudonym of slot s back to it)
            for b in eng.ledger.certificates(f"bundles/{s}"):
                key = (int(b["slot"]), int(b["start"]))
                if (b["status"] != "cancelled" or b.get("purpose") != "consumption"
                        or key in self.targets):
                    continue
                m = eng.identities.owner(bytes(b["owner"]))
                if m is not None and (m is self.attacker
                                      or (self.attacker is None and self.candidate(m))):
                    held.append((m, key, int(b["energy_wh"])))
        if not held:
            return []
        if self.attacker is None:
            self.attacker = max({m.cp: m for m, _, _ in held}.values(),
                                key=lambda m: (self.load_in(m, *self.window), m.cp))
            self.attacker.honest, self.attacker.attack = False, self.name
            self.accomplice = next(m for m in eng.members if m is not self.attacker)
        _, key, wh = next(h for h in held if h[0] is self.attacker)
        return self._attempts(self.attacker, self.accomplice, key, wh)

    def _attempts(self, attacker: Member, accomplice: Member | None, key: tuple[int, int],
                  wh: int) -> list[bytes]:
        eng = self.eng
        self.targets[key] = wh
        k = eng.identities.trading_key(attacker, key[0])
        item = [key[0], key[1], wh]
        # the message naming the bundle twice fails at admission, before its nonce is looked
        # at, so it does not take one from the attacker's sequence
        twice = sign_tx(k, eng.sc.chain_id, eng.net.mempool.expected_nonce(k.address),
                        "certificates/cancel", {"items": [item, item]})
        raws = [
            ("cancel-again", eng.tx(k, "certificates/cancel", {"items": [item]})),
            ("transfer-after-cancel", eng.tx(k, "certificates/transfer", {
                "to": eng.identities.trading_key(accomplice or attacker, key[0]).address,
                "items": [item]})),
            ("listed-twice", twice),
        ]
        for what, raw in raws:
            self.sent[decode_tx(raw).id] = what
        return [raw for _, raw in raws]

    def on_block(self, fb: FinalizedBlock, events: list[dict[str, Any]]) -> None:
        for r in fb.result.receipts:
            if r.tx_hash in self.sent and not r.ok and r.rule == "certificate-not-active":
                self.refused += 1

    def result(self) -> dict[str, Any]:
        eng = self.eng
        at_admission = eng.data.stats.admission_rejected.get("certificate-listed-twice", 0)
        owners: set[bytes] = set()
        if self.attacker is not None:
            owners = {eng.identities.trading_key(self.attacker, s).address
                      for s, _ in self.targets}
            owners.add(self.attacker.address)
        claimed = sum(int(r["cancelled_wh"]) for a in sorted(owners)
                      for r in eng.ledger.certificates(f"matching/{a.hex()}"))
        held = 0
        for s in sorted({s for _, _, s in self._hours_slots(owners)}):
            held += sum(int(b["energy_wh"]) for b in eng.ledger.certificates(f"bundles/{s}")
                        if bytes(b["owner"]) in owners and b["status"] == "cancelled"
                        and b.get("purpose") == "consumption")
        moved = 0
        for (s, start), wh in sorted(self.targets.items()):
            b = eng.ledger.certificates(f"bundle/{s}:{start}")
            if (b is None or bytes(b["owner"]) not in owners or b["status"] != "cancelled"
                    or int(b["energy_wh"]) != wh):
                moved += wh
        loss = max(0, claimed - held) + moved
        injected = len(self.sent)
        detected = self.refused + at_admission
        if not self.targets:    # e.g. a night run: no certificate was issued to attack
            return self.record(0, 0, True, 0, loss_unit="Wh", attacker=None,
                               bundles_attacked=0, claimed_wh=claimed,
                               note="nothing to attack: no consumer without a battery held a "
                                    "cancelled certificate in the window")
        return self.record(injected, detected, injected > 0 and detected == injected and loss == 0,
                           loss, loss_unit="Wh",
                           attacker=None if self.attacker is None else self.attacker.name,
                           bundles_attacked=len(self.targets),
                           refused_in_execution=self.refused, refused_at_admission=at_admission,
                           claimed_wh=claimed, cancelled_held_wh=held,
                           note="loss = Wh counted twice (claims beyond cancelled certificates "
                                "held, or attacked certificates that moved)")

    def _hours_slots(self, owners: set[bytes]) -> list[tuple[bytes, int, int]]:
        """(owner, hour, slot) for every hour the owners claimed in."""
        s = int(self.eng.ledger.certificates("config")["slot_seconds"])
        out = []
        for a in sorted(owners):
            for r in self.eng.ledger.certificates(f"matching/{a.hex()}"):
                h = int(r["hour"])
                out += [(a, h, slot) for slot in slots_of_hour(h, s)]
        return out
