"""The chain-wide rule registry: every rule a transaction can break, with its class.

A rule is a kebab-case name (``gate-closed``) carried by exactly one exception class; the
receipt of a failed transaction and every admission rejection name it. ``chain_rules``
lists the core (envelope and admission) rules and each module's declared rules, and refuses
a name claimed by two classes. The API maps each rule's ``category`` (the envelope class
itself, or the body category a module rule derives from) to one HTTP status.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gridledger.errors import (
    BadSignature,
    ClassicalKey,
    CommitteeSignature,
    CommitteeThreshold,
    DuplicateSigner,
    InsufficientFunds,
    InternalError,
    InvalidBody,
    MalformedEncoding,
    MempoolFull,
    NonceGap,
    Oversize,
    QuotaExceeded,
    RejectedTx,
    ReplayedNonce,
    Unauthorized,
    UnknownAlgorithm,
    UnknownKind,
    UnknownMember,
    UnknownSender,
    WrongChain,
)
from gridledger.ledger.module import Module

ENVELOPE_RULES: tuple[type[RejectedTx], ...] = (
    Oversize, MalformedEncoding, WrongChain, ClassicalKey, UnknownAlgorithm, UnknownSender,
    BadSignature, CommitteeSignature, UnknownMember, DuplicateSigner, CommitteeThreshold,
    ReplayedNonce, NonceGap, UnknownKind)
"""Checked before a body runs, at admission and in execution alike; they change nothing."""
ADMISSION_RULES: tuple[type[RejectedTx], ...] = (QuotaExceeded, MempoolFull)
"""Only the node's admission raises these (per-node resource limits, not consensus)."""
CATEGORIES: tuple[type[RejectedTx], ...] = (InvalidBody, Unauthorized, InsufficientFunds)
"""The body categories every module rule derives from."""
CORE_RULES: tuple[type[RejectedTx], ...] = (
    ENVELOPE_RULES + ADMISSION_RULES + CATEGORIES + (InternalError,))


@dataclass(frozen=True)
class Rule:
    """One rule: its name, its exception class, its category, who declares it."""

    name: str
    error: type[RejectedTx]
    category: type[RejectedTx]
    module: str
    doc: str


def category_of(cls: type[RejectedTx]) -> type[RejectedTx]:
    """The body category ``cls`` derives from, or ``cls`` itself for a core rule."""
    for cat in CATEGORIES:
        if issubclass(cls, cat):
            return cat
    return cls


def chain_rules(modules: Sequence[Module]) -> list[Rule]:
    """Every rule of a chain built from ``modules``, sorted by name.

    Raises:
        ValueError: a rule name is claimed by two different classes, or a class a module
            declares is not a ``RejectedTx`` with its own rule name.
    """
    found: dict[str, Rule] = {}

    def add(cls: type[RejectedTx], module: str) -> None:
        if not (isinstance(cls, type) and issubclass(cls, RejectedTx)) or not cls.rule:
            raise ValueError(f"{module}: {cls!r} is not a rule class")
        if "rule" not in cls.__dict__:
            raise ValueError(f"{module}: {cls.__name__} inherits rule {cls.rule!r}; name its own")
        have = found.get(cls.rule)
        if have is not None and have.error is not cls:
            raise ValueError(f"rule {cls.rule!r} is claimed by {have.module}.{have.error.__name__} "
                             f"and {module}.{cls.__name__}")
        doc = (cls.__doc__ or "").strip().split("\n")[0]
        found[cls.rule] = Rule(cls.rule, cls, category_of(cls), module, doc)

    for cls in CORE_RULES:
        add(cls, "core")
    for m in modules:
        for cls in m.rules:
            add(cls, m.name)
    return [found[k] for k in sorted(found)]
