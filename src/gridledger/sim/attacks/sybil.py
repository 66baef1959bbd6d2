"""Sybil onboarding (docs/threat-model.md row 11): one attacker tries to put 20 identities on the
ledger through the real onboarding path.

The attacker controls one physical connection point (a house outside the community) and
has two members in on it: the *sponsor* submits 20 ``registry/apply`` (each a fresh ML-DSA
key with its proof of possession; half name the attacker's real connection point, half
invent one) and the *endorser* endorses every one — so each application has its two
endorsements. What stands in the way is the DSO's attestation (``sim.features.onboarding``)
and the registry's one-identity-per-connection-point rule. Measured from the ledger's
``admitted`` events.
"""

from __future__ import annotations

from typing import Any, ClassVar

from gridledger.ledger.modules.registry.types import APPLY_CONTEXT, apply_pop_message
from gridledger.node.embedded import FinalizedBlock
from gridledger.sim.attack_base import Attack
from gridledger.sim.keys import sim_key


class Sybil(Attack):
    name: ClassVar[str] = "sybil"
    threat: ClassVar[str] = "11 authenticating new prosumers"
    defence: ClassVar[str] = (
        "admission needs the DSO's attestation of a physical connection point (one identity "
        "per connection point, its meter registered with it) and k endorsements from "
        "members in good standing")
    IDENTITIES = 20
    window = (0.1, 0.2)

    def setup(self) -> None:
        self.sponsor = self.pick(lambda m: True)
        self.endorser = self.pick(lambda m: True)
        outsiders = sorted(self.eng.community.outsiders)
        self.cp = outsiders[0] if outsiders else "cp-attacker"
        self.keys = [sim_key(self.eng.sc.seed, "sybil", i) for i in range(self.IDENTITIES)]
        self.sent_at: int | None = None
        self.admitted: list[bytes] = []
        self.refused_receipts = 0

    def txs_block_a(self, slot: int, trading: bool) -> list[bytes]:
        eng = self.eng
        if self.sent_at is not None or not trading or not eng.in_window(slot, *self.window):
            return []
        self.sent_at = slot
        out = []
        for i, k in enumerate(self.keys):
            cp = self.cp if i % 2 == 0 else f"cp-sybil-{i}"
            name, roles = f"sybil-{i}", ["prosumer"]
            pop = k.sign(apply_pop_message(eng.sc.chain_id, cp, roles, name), APPLY_CONTEXT)
            out.append(eng.tx(self.sponsor.key, "registry/apply", {
                "alg": k.alg, "pk": k.public_key.raw, "pop": pop, "cp": cp, "roles": roles,
                "name": name}))
            out.append(eng.tx(self.endorser.key, "registry/endorse", {"applicant": k.address}))
        return out

    def on_block(self, fb: FinalizedBlock, events: list[dict[str, Any]]) -> None:
        mine = {k.address for k in self.keys}
        self.admitted += [bytes(e["addr"]) for e in events
                          if e["type"] == "admitted" and bytes(e["addr"]) in mine]

    def result(self) -> dict[str, Any]:
        n = len(self.keys) if self.sent_at is not None else 0
        admitted = len(self.admitted)
        return self.record(n, n - admitted, admitted <= 1, max(0, admitted - 1),
                           loss_unit="identities", attacker_cp=self.cp,
                           sponsor=self.sponsor.name, endorser=self.endorser.name,
                           admitted=admitted,
                           note="loss = identities admitted beyond the one the attacker's "
                                "physical connection point entitles it to")
