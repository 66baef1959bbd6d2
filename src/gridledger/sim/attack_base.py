"""The attack lab's base class: lifecycle and interceptor hooks (``sim.hooks.AttackHooks``).

An attack subclasses ``Attack``, sets ``name``/``threat``/``defence``, overrides the hooks it
needs (every default does nothing) and ``result``, and is added to the registry in
``sim/attacks/__init__.py``. ``self.eng`` is the run's ``SimContext``.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from gridledger.grid import SlotMeasurements
from gridledger.node.embedded import FinalizedBlock
from gridledger.node.verify import VerifyReport
from gridledger.sim.agents import Intent
from gridledger.sim.community import Member, household_net_wh
from gridledger.sim.context import SimContext


class Attack(ABC):
    name: ClassVar[str] = ""
    threat: ClassVar[str] = ""
    """``"<threat-model row> <title>"``, e.g. ``"1 false data injection"``."""
    defence: ClassVar[str] = ""
    drives_meter: ClassVar[bool] = False
    """The scenario drives its attacker's meter firmware and client through a quarantine
    (they keep lying and ordering); every other attacker's meter and client follow the
    firmware registry as an honest one's do (``SimContext.keeps_meter_rules``)."""
    measured_at_end: ClassVar[bool] = False
    """True for a scenario whose result exists only once the run is over (an analysis of
    the finished chain or store): the live dashboard does not call its ``result`` during
    the run. Every other ``result`` must be cheap and free of side effects, so that it can
    be read after any step (figures so far)."""

    def __init__(self, eng: SimContext, options: dict[str, Any]) -> None:
        self.eng = eng
        self.options = options
        self.rng = random.Random(f"attack/{self.name}/{eng.sc.seed}")

    # hooks (no-ops by default) --------------------------------------------------------------
    def setup(self) -> None:
        """Choose attackers and targets (after every feature exists)."""
        return None

    def orders(self, m: Member, slot: int, intents: list[Intent]) -> list[Intent]:
        return intents

    def physical(self, slot: int, injection_wh: dict[str, int]) -> None:
        """Change what cps really inject in ``slot`` (Wh by cp, > 0 export), in place."""
        return None

    def measurements(self, slot: int, meas: SlotMeasurements,
                     honest: SlotMeasurements) -> SlotMeasurements:
        return meas

    def txs_block_a(self, slot: int, trading: bool) -> list[bytes]:
        return []

    def flex_offer(self, m: Member, body: dict[str, Any]) -> dict[str, Any]:
        """A member's flexibility offer body (``flex/offer``) before it is signed."""
        return body

    def partials(self, slot: int, values: list[int]) -> list[int]:
        """The aggregators' partial sums for ``slot`` (by position) before they are posted."""
        return values

    def after_submit(self, slot: int, raws: list[bytes]) -> None:
        """The slot's honest transactions were just submitted (they are public now)."""
        return None

    def before_tick(self, time_s: int) -> None:
        """A block is about to close at ``time_s`` (act on the nodes or the log)."""
        return None

    def on_block(self, fb: FinalizedBlock, events: list[dict[str, Any]]) -> None:
        """Every finalized block, with its events (measure what the ledger did)."""
        return None

    def after_run(self) -> None:
        """The run is over and its stores are closed: work that needs only the stores may
        start here (it overlaps verify-chain's last replay on the other core); ``result``
        must still work if this was never called."""
        return None

    def after_verify(self, reports: Sequence[VerifyReport]) -> None:
        """verify-chain's report of every store (after ``after_run``): a scenario whose own
        check would re-execute blocks verify-chain already re-executed may take that verdict
        (``AuditExport``); ``result`` must still work if this was never called."""
        return None

    @abstractmethod
    def result(self) -> dict[str, Any]:
        """``{injected, detected, mitigated, loss, ...}`` read from what the ledger did."""

    def caused(self, tx_id: bytes) -> bool:
        """Whether the transaction ``tx_id`` (one that failed) is this attack's doing: by
        default, one its attacker members signed. Attacks that forge or copy others'
        transactions also claim those."""
        info = self.eng.data.tx_info.get(tx_id)
        owner = self.eng.identities.owner(info.sender) if info is not None else None
        return owner is not None and owner.attack == self.name

    def timings(self) -> dict[str, Any]:
        """Wall-clock figures for ``summary.timings`` (kept out of the deterministic part)."""
        return {}

    @classmethod
    def threat_row(cls) -> str:
        """The threat-model row this scenario measures (``"1"`` ... ``"14"``, ``"Q"``)."""
        return cls.threat.split(" ", 1)[0]

    # helpers ---------------------------------------------------------------------------
    def pick(self, ok: Callable[[Member], bool],
             key: Callable[[Member], Any] | None = None) -> Member:
        """Recruit an honest member satisfying ``ok`` (by ``key`` descending, else seeded)."""
        pool = [m for m in self.eng.members if m.honest and ok(m)]
        if not pool:
            pool = [m for m in self.eng.members if m.honest] or list(self.eng.members)
        m = max(pool, key=key) if key is not None else self.rng.choice(pool)
        m.honest = False
        m.attack = self.name
        return m

    def record(self, injected: int, detected: int, mitigated: bool, loss: int,
               **more: Any) -> dict[str, Any]:
        return {"injected": injected, "detected": detected, "mitigated": bool(mitigated),
                "loss": int(loss), "loss_unit": "micro", "threat": self.threat,
                "defence": self.defence, **more}

    def export_in(self, m: Member, start: float, end: float) -> int:
        """Wh ``m`` would export beyond its own use in the window [start, end) of the run's
        days (``household_net_wh``: the surplus it has to sell, before any battery)."""
        eng = self.eng
        return sum(max(0, household_net_wh(eng.model, m.cp, s))
                   for s in eng.trading_slots() if eng.in_window(s, start, end))

    def load_in(self, m: Member, start: float, end: float) -> int:
        eng = self.eng
        load_wh = eng.model.load_wh[eng.model.cp_index(m.cp)]
        return sum(int(load_wh[eng.model.column(s)])
                   for s in eng.trading_slots() if eng.in_window(s, start, end))
