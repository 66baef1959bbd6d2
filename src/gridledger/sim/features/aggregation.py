"""Secure aggregation of the members' readings (``sim.secagg``): at block C of step L the
meters Shamir-share their reading of slot L-1 to the feeder's aggregators, and each
aggregator posts its partial sum (``privacy/partial``); the validators decode the feeder
total at the settlement deadline. Attacks may alter a partial before it is posted
(``Attack.partials``). The off-ledger round (true total, each aggregator's view) is kept in
``ctx.data.rounds`` for the privacy scenarios to measure against.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from gridledger.sim.clock import Step
from gridledger.sim.context import SimContext
from gridledger.sim.feature import Feature
from gridledger.sim.secagg import FeederAggregation


class SecureAggregation(Feature):
    name: ClassVar[str] = "aggregation"
    threat_rows: ClassVar[tuple[str, ...]] = ("3", "8")

    def __init__(self, ctx: SimContext) -> None:
        super().__init__(ctx)
        keys = ctx.community.privacy_keys
        if keys is None:
            raise ValueError("secure aggregation needs the community's privacy keys")
        self.secagg = FeederAggregation(keys, ctx.members)

    def txs_c(self, step: Step) -> Sequence[bytes]:
        ctx, slot = self.ctx, step.slot - 1
        d = ctx.data.delivered.get(slot)
        if d is None:
            return []
        with ctx.timed("privacy_s"):
            rnd = self.secagg.run_round(slot, {m.cp: -int(d.measurements.reported_wh_by_cp[m.cp])
                                               for m in ctx.members})
            if rnd is None:                              # too few meters: nobody signs
                return []
            ctx.data.rounds[slot] = rnd
            values = [p.value for p in rnd.partials]
            for a in ctx.attacks:
                values = a.partials(slot, values)
            posts = self.secagg.partial_txs(rnd, values)
        return ctx.txs_ahead([(key, "privacy/partial", body) for key, body in posts])
