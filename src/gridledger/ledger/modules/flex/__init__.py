"""Flexibility and demand response (USEF request → offer → order → settlement); see README."""

from gridledger.ledger.modules.flex.module import build

__all__ = ["build"]
