"""Simulated time: slots, the three blocks of a step, and windows of the day.

Slot L is the ledger's slot number (counted from 1 Jan of SimBench's profile year) and
its delivery interval starts at block time ``900 L``. One engine *step* per slot closes
three blocks:

====================  =====================================================================
``Step.t_a``          ``900 L - 450``: orders and envelopes for slot L (gate still open)
``Step.t_b``          ``900 L - 150``: the reveal deadline; slot L clears in this block
``Step.t_c``          ``900 L + 10``: readings of slot L-1; settlement of older slots
====================  =====================================================================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridledger.grid import SLOTS_PER_DAY

SLOT_S = 900
T_ORDERS = -450
T_CLEAR = -150
T_READ = 10
TAIL_STEPS = 4
"""Steps without orders after the last slot: read, check, settle and dispute the tail."""


@dataclass(frozen=True)
class Step:
    """One engine step: slot ``slot`` and whether orders are placed for it."""

    slot: int
    trading: bool

    @property
    def t_a(self) -> int:
        return SLOT_S * self.slot + T_ORDERS

    @property
    def t_b(self) -> int:
        return SLOT_S * self.slot + T_CLEAR

    @property
    def t_c(self) -> int:
        return SLOT_S * self.slot + T_READ


def step_slot(time_s: int) -> int:
    """The slot of the step whose blocks close at ``time_s`` (``t_a``, ``t_b`` and ``t_c``
    of step L all map to L), for attacks that act at a tick."""
    return (time_s - T_ORDERS) // SLOT_S


@dataclass(frozen=True)
class RunClock:
    """The run's slots: ``slots`` trading slots from ``first``."""

    first: int
    slots: int

    def label(self, slot: int) -> str:
        """``"MM-DD hh:mm"`` of the slot's start."""
        day, sod = divmod(slot, SLOTS_PER_DAY)
        date = np.datetime64("2016-01-01") + np.timedelta64(day, "D")
        return f"{str(date)[5:]} {sod // 4:02d}:{sod % 4 * 15:02d}"

    def trading_slots(self) -> range:
        return range(self.first, self.first + self.slots)

    def steps(self) -> list[Step]:
        """Every step of the run: the trading slots, then ``TAIL_STEPS`` without orders."""
        return [Step(self.first + k, k < self.slots) for k in range(self.slots + TAIL_STEPS)]

    def in_window(self, slot: int, start: float, end: float) -> bool:
        """``slot`` lies in [start, end) of its day, as fractions of the day; runs shorter than
        a day scale the window to the run instead."""
        k = slot - self.first
        if not 0 <= k < self.slots:
            return False
        day_len = min(self.slots, SLOTS_PER_DAY)
        pos = k % day_len
        return int(start * day_len) <= pos < max(int(end * day_len), int(start * day_len) + 1)
