"""Flexibility outside block execution and the integer rules inside it.

``merit`` (pure, integer: the selection validators recompute for ``flex/order``) and
``baselines`` (standard customer baselines, "high X of Y" with a day-of adjustment). Only
``merit`` is imported here, so the ledger can use it without loading anything else.
"""

from gridledger.flex.merit import PPM, MeritOffer, cost_nano, effective_wh, merit_order, select

__all__ = ["PPM", "MeritOffer", "cost_nano", "effective_wh", "merit_order", "select"]
