"""The DSO's part in onboarding: attest a connection point for an applicant.

A ``registry/apply`` on the ledger (``applied`` event) asks the DSO to attest the applicant's
connection point. The DSO knows its grid: it attests only a connection point that exists
in the network model, that no member holds, and that it has not attested before (one
physical connection point, one identity), installing — and registering with the
attestation — that point's meter. Everything else is refused off-ledger (the application
stays pending on the ledger: without the attestation no endorsement admits it). The ledger
enforces the same rule on its side (``cp-taken``, ``cp-already-attested``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from gridledger.ledger.modules.registry.types import METER_CONTEXT, meter_pop_message
from gridledger.node.embedded import FinalizedBlock
from gridledger.sim.clock import Step
from gridledger.sim.context import SimContext
from gridledger.sim.feature import Feature
from gridledger.sim.keys import sim_key


class Onboarding(Feature):
    name: ClassVar[str] = "onboarding"
    threat_rows: ClassVar[tuple[str, ...]] = ("11",)

    def __init__(self, ctx: SimContext) -> None:
        super().__init__(ctx)
        self.pending: list[tuple[bytes, str]] = []
        self.attested: dict[str, bytes] = {}      # cp -> the applicant it was attested for
        self.refused: list[tuple[bytes, str, str]] = []
        self.applications = 0
        self.admitted: list[bytes] = []

    def on_block(self, fb: FinalizedBlock, events: list[dict[str, Any]]) -> None:
        for ev in events:
            if ev["type"] == "applied":
                self.applications += 1
                self.pending.append((bytes(ev["addr"]), str(ev["cp"])))
            elif ev["type"] == "admitted":
                self.admitted.append(bytes(ev["addr"]))

    def _why_not(self, cp: str) -> str | None:
        ctx = self.ctx
        if cp not in ctx.model.cp_ids:
            return "no such connection point in the network"
        if cp in {m.cp for m in ctx.members}:
            return "held by a member"
        if cp in self.attested:
            return "already attested"
        return None

    def txs_a(self, step: Step) -> list[bytes]:
        ctx, out = self.ctx, []
        for applicant, cp in self.pending:
            why = self._why_not(cp)
            if why is not None:
                self.refused.append((applicant, cp, why))
                continue
            self.attested[cp] = applicant
            meter = sim_key(ctx.sc.seed, f"installed-meter/{cp}", 0, alg="ml-dsa-44")
            pop = meter.sign(meter_pop_message(ctx.sc.chain_id, cp, applicant), METER_CONTEXT)
            out.append(ctx.tx(ctx.community.dso, "registry/attest_cp", {
                "cp": cp, "applicant": applicant, "meter_alg": meter.alg,
                "meter_pk": meter.public_key.raw, "meter_pop": pop}))
        self.pending = []
        return out

    def summary(self) -> dict[str, Any]:
        reasons: dict[str, int] = {}
        for _a, _cp, why in self.refused:
            reasons[why] = reasons.get(why, 0) + 1
        return {"onboarding": {"applications": self.applications,
                               "attested": len(self.attested), "refused": len(self.refused),
                               "refused_by_reason": dict(sorted(reasons.items())),
                               "admitted": len(self.admitted)}}

    def detections(self) -> dict[str, int]:
        return {"onboarding_refused": len(self.refused)}
