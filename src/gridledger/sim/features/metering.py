"""Members' smart meters: at block C of step L each meter signs its reading of slot L-1.

A reading is what the meter measured (``ctx.data.delivered``, after any attack on the
device) as import/export Wh, with the firmware hash the meter attests. The meter signs with
the member's meter key for the slot (``ctx.identities``).
"""

from __future__ import annotations

from typing import ClassVar

from gridledger.crypto.hashing import tagged_hash
from gridledger.sim.clock import Step
from gridledger.sim.feature import Feature

FIRMWARE = tagged_hash("gl/sim-firmware", b"meter-fw-2.4.1")
"""The firmware hash honest meters attest."""


class Metering(Feature):
    name: ClassVar[str] = "metering"

    def txs_c(self, step: Step) -> list[bytes]:
        ctx, slot = self.ctx, step.slot - 1
        d = ctx.data.delivered.get(slot)
        if d is None:
            return []
        raws = []
        for m in ctx.members:
            x = int(d.measurements.reported_wh_by_cp[m.cp])
            raws.append(ctx.tx(ctx.identities.meter_key(m, slot), "metering/reading", {
                "slot": slot, "import_wh": max(0, -x), "export_wh": max(0, x),
                "firmware": FIRMWARE}))
        return raws
