"""Secure aggregation of the members' readings (``sim.secagg``): at block C of step L the
meters Shamir-share their reading of slot L-1 to the feeder's aggregators, and each
aggregator posts its partial sum (``privacy/partial``); the validators decode the feeder
total at the settlement deadline. Attacks may alter a partial before it is posted
(``Attack.partials``). The off-ledger round (true total, each aggregator's view) is kept in
``ctx.data.rounds`` for the privacy scenarios to measure against.

The round itself (the meters' sealing, the aggregators' checks and signed partials) runs in
the committee's worker process as soon as the slot's readings exist (``after_delivery`` of
step L-1), beside block C of L-1 and blocks A and B of L; block C of L takes its result if
the readings it would share are still the same, else runs the round here (issue 17: the
main core's own work). The worker holds the committee as this process does (forked); its
aggregators are the ones that sign, each once per round, as here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from gridledger.sim.beside import Ahead
from gridledger.sim.clock import Step
from gridledger.sim.context import SimContext
from gridledger.sim.feature import Feature
from gridledger.sim.records import Delivered
from gridledger.sim.secagg import FeederAggregation, Round

_BESIDE_COMMITTEE: list[FeederAggregation] = []
"""The committee a secure-aggregation worker holds (set in the worker as it starts)."""


def _hold_committee(secagg: FeederAggregation) -> None:
    _BESIDE_COMMITTEE.append(secagg)


def _round_beside(slot: int, net_import_wh: dict[str, int]) -> Round | None:
    """``FeederAggregation.run_round`` by the worker's committee."""
    return _BESIDE_COMMITTEE[-1].run_round(slot, net_import_wh)


class SecureAggregation(Feature):
    name: ClassVar[str] = "aggregation"
    threat_rows: ClassVar[tuple[str, ...]] = ("3", "8")

    def __init__(self, ctx: SimContext) -> None:
        super().__init__(ctx)
        keys = ctx.community.privacy_keys
        if keys is None:
            raise ValueError("secure aggregation needs the community's privacy keys")
        self.secagg = FeederAggregation(keys, ctx.members)
        self.ahead: Ahead[Round | None] = Ahead(_hold_committee, (self.secagg,), ctx.timings,
                                                "privacy_beside_s")
        """Rounds started in the committee's worker at their slot's delivery."""

    def readings(self, slot: int) -> dict[str, int] | None:
        """What each member's meter shares for ``slot`` (net import, Wh), from the slot's
        delivery as the run holds it (the DSO's view under privacy mode: the same readings);
        None before the slot is delivered."""
        d = self.ctx.data.delivered.get(slot)
        if d is None:
            return None
        return {m.cp: -int(d.measurements.reported_wh_by_cp[m.cp]) for m in self.ctx.members}

    def after_delivery(self, step: Step, delivered: Delivered) -> None:
        # the round of the slot just delivered starts in the worker now; block C of the next
        # step takes it if the readings are still these
        readings = self.readings(step.slot) if self.ahead.available() else None
        if readings is not None:
            self.ahead.start(step.slot, readings, _round_beside, step.slot, readings)

    def txs_c(self, step: Step) -> Sequence[bytes]:
        ctx, slot = self.ctx, step.slot - 1
        readings = self.readings(slot)
        if readings is None:
            return []
        with ctx.timed("privacy_s"):
            done, rnd = self.ahead.take(slot, readings)
            if not done:
                rnd = self.secagg.run_round(slot, readings)
            if rnd is None:                              # too few meters: nobody signs
                return []
            ctx.data.rounds[slot] = rnd
            values = [p.value for p in rnd.partials]
            for a in ctx.attacks:
                values = a.partials(slot, values)
            posts = self.secagg.partial_txs(rnd, values)
        return ctx.txs_ahead([(key, "privacy/partial", body) for key, body in posts])

    def finish(self) -> None:
        self.ahead.close()

    def run_ended(self, summary: dict[str, Any] | None) -> None:
        self.ahead.close()
