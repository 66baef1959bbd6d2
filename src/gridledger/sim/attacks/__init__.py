"""The attack lab's registry: docs/threat-model.md scenarios by name.

Every attack is an ``Attack`` subclass (``sim.attack_base``) in a module of this package (or
of its owner's area: the privacy scenarios live in ``sim.privacy_attacks`` and
``sim.roaming``) and is listed once in ``ATTACK_CLASSES`` below; ``--attacks`` names resolve
through ``parse_attacks``. *Detected* and *mitigated* are read from what the ledger and the
nodes did (receipts, events, offenders, admission rejections), never from an attack's own
intentions; *loss* is money (micro-units) wrongly moved away from honest participants (or
the DSO's grid account for metering fraud). Attackers are community members chosen from the
seed and marked dishonest, so ``honest_not_worse`` is checked on everyone else.

To add an attack: write its class (hooks in ``sim.hooks.AttackHooks``), add it to
``ATTACK_CLASSES`` (its position is its place in ``--attacks all`` and in the summary), to
``DEFAULT_ATTACKS`` if the default run should carry it, and remove its name from
``PLANNED``. See docs/demo.md, "Extending the demo".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gridledger.errors import ConfigError, NotApplicable
from gridledger.sim.attack_base import Attack
from gridledger.sim.attacks.audit import AuditExport
from gridledger.sim.attacks.contract_bug import ContractBug
from gridledger.sim.attacks.crash import Crash
from gridledger.sim.attacks.credit import BalanceEscape, ReputationWash
from gridledger.sim.attacks.double_claim import DoubleClaim
from gridledger.sim.attacks.dso_committee import DsoCrash
from gridledger.sim.attacks.firmware import FakePatch, VulnerableFirmware
from gridledger.sim.attacks.flex import FakeFlexibility
from gridledger.sim.attacks.manipulation import PriceManipulation
from gridledger.sim.attacks.market import FakeBids, FalseNonReceipt, NonDelivery
from gridledger.sim.attacks.metering import FdiMeter, FdiStealthy
from gridledger.sim.attacks.network import (
    ByzantineValidator,
    ClassicalKey,
    DosFlood,
    Replay,
    Tamper,
)
from gridledger.sim.attacks.phantom_generation import PhantomGeneration
from gridledger.sim.attacks.sybil import Sybil
from gridledger.sim.context import SimContext
from gridledger.sim.privacy_attacks import BadAggregator, Deanonymize, UsageInference
from gridledger.sim.roaming import EvRoaming

ATTACK_CLASSES: dict[str, type[Attack]] = {c.name: c for c in (
    FdiMeter, FdiStealthy, DosFlood, ByzantineValidator, FakeBids, NonDelivery, FalseNonReceipt,
    BalanceEscape, ReputationWash, PriceManipulation, Sybil, Crash, Replay, Tamper,
    ClassicalKey, BadAggregator, UsageInference, Deanonymize, EvRoaming, DoubleClaim,
    PhantomGeneration, AuditExport, VulnerableFirmware, FakePatch, FakeFlexibility, ContractBug, DsoCrash)}
ATTACKS: tuple[str, ...] = tuple(ATTACK_CLASSES)
DEFAULT_ATTACKS: tuple[str, ...] = (
    "fdi-meter", "fake-bids", "non-delivery", "false-non-receipt", "balance-escape",
    "reputation-wash", "price-manipulation", "sybil", "crash", "dos-flood",
    "byzantine-validator", "replay", "bad-aggregator", "usage-inference", "deanonymize",
    "ev-roaming", "double-claim", "phantom-generation", "audit-export", "vulnerable-firmware",
    "fake-patch", "fake-flexibility", "contract-bug", "dso-crash", "fdi-stealthy", "tamper",
    "classical-key")
PLANNED: tuple[str, ...] = ()
MIN_VALIDATORS: dict[str, int] = {"byzantine-validator": 4, "crash": 4}
"""Attacks that need a minimum number of validators (f = 1 needs n >= 3f + 1)."""
CLEAR_MODE_ONLY: dict[str, str] = {}
CLEAR_MODE_ONLY["balance-escape"] = (
    "the retail hold secures a household's own registered account; under privacy mode each "
    "slot's import is paid from that slot's pseudonym's allowance, which the household "
    "prepaid into the epoch pool when it joined (5 units, 20 kWh at retail, a slot), and a "
    "pseudonym cannot move money (bank rule pseudonym-transfer): there is no unsettled "
    "import to escape from (--privacy off runs it)")
"""Attacks that privacy mode leaves nothing to act on, with the reason."""
PRIVACY_MODE_MEASURES: frozenset[str] = frozenset({"usage-inference", "deanonymize"})
"""Passive scenarios that measure privacy mode's defence: in clear mode (``--privacy off``)
a validator's store names every household, so they report the leak (mitigated False) —
the expected outcome there, not a failed defence."""


def must_hold(name: str, privacy: bool) -> bool:
    """Whether scenario ``name`` must be mitigated in a run with privacy mode ``privacy``."""
    return privacy or name not in PRIVACY_MODE_MEASURES


def parse_attacks(spec: str, validators: int,
                  privacy: bool = False) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``spec`` = ``default`` | ``all`` | ``none`` | comma-separated names.

    Returns (attacks in registry order, notes). Raises ``ConfigError`` for an unknown or
    not yet implemented name, an attack the validator count cannot carry, or one privacy
    mode leaves nothing to act on (``CLEAR_MODE_ONLY``); ``default``/``all`` leave those out
    with a note.
    """
    spec = spec.strip()
    notes: list[str] = []
    if spec in ("", "none"):
        return (), ()
    if spec in ("default", "all"):
        names = list(DEFAULT_ATTACKS if spec == "default" else ATTACKS)
        for n in list(names):
            if validators < MIN_VALIDATORS.get(n, 0):
                names.remove(n)
                notes.append(f"{n} left out: it needs at least {MIN_VALIDATORS[n]} validators")
            elif privacy and n in CLEAR_MODE_ONLY:
                names.remove(n)
                notes.append(f"{n} left out under privacy mode: {CLEAR_MODE_ONLY[n]}")
    else:
        names = [n.strip() for n in spec.split(",") if n.strip()]
        for n in names:
            if n in PLANNED:
                raise ConfigError(f"attack {n!r} is a threat-model scenario the simulator does not "
                                  f"implement yet; available: {', '.join(ATTACKS)}")
            if n not in ATTACK_CLASSES:
                raise ConfigError(f"unknown attack {n!r}; available: {', '.join(ATTACKS)} "
                                  "(or 'default', 'all', 'none')")
            if validators < MIN_VALIDATORS.get(n, 0):
                raise ConfigError(f"attack {n} needs --validators >= {MIN_VALIDATORS[n]} "
                                  "(f = 1 faulty validator is tolerated only with n >= 3f + 1)")
            if privacy and n in CLEAR_MODE_ONLY:
                raise ConfigError(f"attack {n} needs --privacy off: {CLEAR_MODE_ONLY[n]}")
    order = {n: i for i, n in enumerate(ATTACKS)}
    return tuple(sorted(dict.fromkeys(names), key=order.__getitem__)), tuple(notes)


def make_attacks(names: Sequence[str], ctx: SimContext,
                 options: dict[str, dict[str, Any]]) -> list[Attack]:
    """Instantiate and set up the named attacks (``options[name]`` is passed to each).
    An attack whose setup finds nothing to act on in this community (``NotApplicable``) is
    left out and its reason kept in ``ctx.left_out`` (the summary's notes say so).
    Raises ``ConfigError`` for an attack privacy mode leaves nothing to act on."""
    for n in names:
        if ctx.sc.privacy and n in CLEAR_MODE_ONLY:
            raise ConfigError(f"attack {n} needs --privacy off: {CLEAR_MODE_ONLY[n]}")
    out = []
    for n in names:
        a = ATTACK_CLASSES[n](ctx, options.get(n, {}))
        try:
            a.setup()
        except NotApplicable as exc:  # e.g. a community with no meter on the advised firmware
            ctx.left_out[n] = str(exc)
            continue
        out.append(a)
    return out


__all__ = ["ATTACKS", "ATTACK_CLASSES", "CLEAR_MODE_ONLY", "DEFAULT_ATTACKS", "PLANNED",
           "PRIVACY_MODE_MEASURES", "Attack", "AuditExport", "BalanceEscape", "ByzantineValidator",
           "ClassicalKey", "ContractBug", "Crash", "DosFlood", "DoubleClaim", "DsoCrash",
           "FakeBids", "FakeFlexibility", "FakePatch", "FalseNonReceipt", "FdiMeter",
           "FdiStealthy", "NonDelivery", "PhantomGeneration", "PriceManipulation", "Replay",
           "ReputationWash", "Sybil", "Tamper", "VulnerableFirmware", "make_attacks", "must_hold",
           "parse_attacks"]
