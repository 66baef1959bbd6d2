"""Members' smart meters: at block C of step L each meter signs its reading of slot L-1.

A reading is what the meter measured (``ctx.data.delivered``, after any attack on the
device) as import/export Wh, with the firmware hash the meter attests: the image its
device in the fleet runs now (``sim/fleet.py``; patches and tampering change it). The
meter signs with the member's meter key for the slot (``ctx.identities``); under privacy
mode it attests the salted commitment to its image bound for the slot's pseudonym
(``sim.identity.attested_image``), not the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from gridledger.sim.clock import Step
from gridledger.sim.feature import Feature
from gridledger.sim.identity import attested_image


class Metering(Feature):
    name: ClassVar[str] = "metering"

    def txs_c(self, step: Step) -> Sequence[bytes]:
        ctx, slot = self.ctx, step.slot - 1
        d = ctx.data.delivered.get(slot)
        if d is None:
            return []
        fleet = ctx.community.fleet
        if fleet is None:
            raise ValueError("the community has no meter fleet (sim/fleet.py)")
        readings = []
        for m in ctx.members:
            x = int(d.measurements.reported_wh_by_cp[m.cp])
            body = fleet.meters[m.cp].reading(slot, max(0, -x), max(0, x))
            # under privacy mode the meter attests a salted commitment to its image
            body["firmware"] = attested_image(ctx.identities, m, slot, body["firmware"])
            readings.append((ctx.identities.meter_key(m, slot), "metering/reading", body))
        # each meter signs its own: on the signing pool, while the phase goes on
        return ctx.txs_ahead(readings)
