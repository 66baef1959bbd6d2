"""Flexibility outside block execution and the integer rules inside it.

``merit`` (pure, integer: what validators recompute), ``baselines`` (standard customer
baselines), ``planner`` (the DSO's forecast power flow: predicted violations, requests,
selection checked by AC power flow). Only ``merit`` is imported here, so the ledger can use
it without loading the grid stack.
"""

from gridledger.flex.merit import PPM, MeritOffer, cost_nano, effective_wh, merit_order, select

__all__ = ["PPM", "MeritOffer", "cost_nano", "effective_wh", "merit_order", "select"]
