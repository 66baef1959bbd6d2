"""Surveillance rules.

The module has no messages: every finding comes from block execution itself (the same
detectors on every validator), so no sender can be refused here. The one rule is a
genesis-time configuration error, raised as ``ConfigError`` (not a transaction rule)."""

from __future__ import annotations

from gridledger.errors import RejectedTx

RULES: tuple[type[RejectedTx], ...] = ()
