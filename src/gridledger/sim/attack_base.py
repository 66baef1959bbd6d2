"""The attack lab's base class (kept apart so scenario modules can import it without a cycle)."""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from gridledger.grid import SlotMeasurements
from gridledger.sim.agents import Intent

if TYPE_CHECKING:
    from gridledger.node.embedded import FinalizedBlock
    from gridledger.sim.community import Member
    from gridledger.sim.engine import Engine


class Attack(ABC):
    name = ""
    threat = ""
    defence = ""

    def __init__(self, eng: Engine, options: dict[str, Any]) -> None:
        self.eng = eng
        self.options = options
        self.rng = random.Random(f"attack/{self.name}/{eng.sc.seed}")

    # hooks (no-ops by default) --------------------------------------------------------------
    def setup(self) -> None: ...

    def orders(self, m: Member, slot: int, intents: list[Intent]) -> list[Intent]:
        return intents

    def physical(self, slot: int, injection_wh: dict[str, int]) -> None: ...

    def measurements(self, slot: int, meas: SlotMeasurements, honest: SlotMeasurements) -> SlotMeasurements:
        return meas

    def txs_block_a(self, slot: int, trading: bool) -> list[bytes]:
        return []

    def partials(self, slot: int, values: list[int]) -> list[int]:
        """The aggregators' partial sums for ``slot`` (by position) before they are posted."""
        return values

    def after_submit(self, slot: int, raws: list[bytes]) -> None:
        """The slot's honest transactions were just submitted (they are public now)."""

    def before_tick(self, time_s: int) -> None: ...

    def on_block(self, fb: FinalizedBlock, events: list[dict[str, Any]]) -> None: ...

    @abstractmethod
    def result(self) -> dict[str, Any]:
        """``{injected, detected, mitigated, loss, ...}`` read from what the ledger did."""

    # helpers ---------------------------------------------------------------------------
    def pick(self, ok: Any, key: Any = None) -> Member:
        """Recruit an honest member satisfying ``ok`` (by ``key`` descending, else seeded)."""
        pool = [m for m in self.eng.members if m.honest and ok(m)]
        if not pool:
            pool = [m for m in self.eng.members if m.honest] or list(self.eng.members)
        m = max(pool, key=key) if key is not None else self.rng.choice(pool)
        m.honest = False
        m.attack = self.name
        return m

    def record(self, injected: int, detected: int, mitigated: bool, loss: int, **more: Any) -> dict[str, Any]:
        return {"injected": injected, "detected": detected, "mitigated": bool(mitigated),
                "loss": int(loss), "loss_unit": "micro", "threat": self.threat,
                "defence": self.defence, **more}

    def load_in(self, m: Member, start: float, end: float) -> int:
        eng = self.eng
        i = eng.model.cp_index(m.cp)
        return sum(int(eng.model.load_wh[i, s]) for s in eng.trading_slots() if eng.in_window(s, start, end))
