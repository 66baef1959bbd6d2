"""The modules a chain runs, in execution order, wired to each other — per version.

This is the one place where a module meets another: each ``build`` takes the small
protocols the module declares in its ``expected.py``, and gets here the keeper that
implements them (a keeper module satisfies a ``typing.Protocol`` structurally; Cosmos SDK's
app wiring). Order matters only for hooks: the market's end-of-block clearing and
settlement run after every transaction of the block; surveillance's hook runs just before
the market's, so it sees a slot's final book (and mitigates offers) before it clears;
genesis runs registry, bank, then governance parameters. Flexibility's settlement hands a
pseudonym's sanction to privacy's ``FlexDisputes`` (a recorded dispute) in the same block.

Versions (issue 13.2): ``modules(versions)`` builds the list for a map ``{module:
version}``; which versions a chain runs is chain state (``ledger.upgrades``), so
``Application`` rebuilds the list at an upgrade's activation height. ``BUILTIN`` lists the
versions this build ships; a ``Catalog`` may carry further ``Release``s (a node operator
installs a release before voting for it). ``GENESIS_VERSIONS`` are what a chain whose
genesis names no versions starts with.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gridledger.errors import ConfigError
from gridledger.ledger.module import Module
from gridledger.ledger.modules import (
    bank,
    certificates,
    disputes,
    firmware,
    flex,
    governance,
    market,
    metering,
    privacy,
    registry,
    reputation,
    surveillance,
)
from gridledger.ledger.modules.bank import keeper as bank_keeper
from gridledger.ledger.modules.disputes import keeper as disputes_keeper
from gridledger.ledger.modules.firmware import keeper as firmware_keeper
from gridledger.ledger.modules.market import keeper as market_keeper
from gridledger.ledger.modules.metering import keeper as metering_keeper
from gridledger.ledger.modules.privacy.flexibility import FlexDisputes
from gridledger.ledger.modules.registry import keeper as registry_keeper
from gridledger.ledger.modules.reputation import keeper as reputation_keeper
from gridledger.ledger.modules.surveillance import keeper as surveillance_keeper

GENESIS_VERSIONS: dict[str, int] = {"governance": 2}
"""Versions a chain starts with when its genesis has no ``versions`` section (modules not
listed: the one version this build has). Governance 3 (run-time grid fees) is reached by
an upgrade vote, or named in genesis."""
BUILTIN: dict[str, tuple[int, ...]] = {"governance": (2, 3)}
"""Modules this build ships in more than one version (the others: one each)."""


class VersionUnavailable(ConfigError):
    """A module version the chain asks for is not in this build (install the release)."""


Keepers = dict[str, Any]
"""What each module's dependents are wired with, by module name (a keeper Python module,
or an installed release's keeper)."""


def _keepers(overrides: Mapping[str, Any]) -> Keepers:
    return {"registry": registry_keeper, "bank": bank_keeper, "reputation": reputation_keeper,
            "metering": metering_keeper, "market": market_keeper,
            "disputes": disputes_keeper, "firmware": firmware_keeper,
            "surveillance": surveillance_keeper, **overrides}


def _builtin(versions: Mapping[str, int], k: Keepers) -> list[Module]:
    """Every module of this build, in execution order, wired with the keepers ``k`` (a
    versioned module at the version asked for when this build has it, else its newest)."""
    gov = versions.get("governance", 2)
    return [
        registry.build(reputation=k["reputation"]),
        bank.build(registry=k["registry"]),
        governance.build(valset=k["registry"], version=gov if gov in BUILTIN["governance"]
                         else max(BUILTIN["governance"]), versions=dict(versions)),
        reputation.build(registry=k["registry"]),
        firmware.build(authorities=k["registry"]),
        metering.build(registry=k["registry"], reputation=k["reputation"],
                       firmware=k["firmware"]),
        surveillance.build(market=k["market"], reputation=k["reputation"],
                           metering=k["metering"], registry=k["registry"], bank=k["bank"]),
        market.build(bank=k["bank"], registry=k["registry"], reputation=k["reputation"],
                     metering=k["metering"], firmware=k["firmware"]),
        disputes.build(market=k["market"], metering=k["metering"], registry=k["registry"],
                       bank=k["bank"], reputation=k["reputation"]),
        privacy.build(bank=k["bank"], registry=k["registry"], reputation=k["reputation"],
                      metering=k["metering"], market=k["market"], disputes=k["disputes"],
                      surveillance=k["surveillance"], firmware=k["firmware"]),
        certificates.build(registry=k["registry"], market=k["market"], metering=k["metering"]),
        flex.build(bank=k["bank"], registry=k["registry"], reputation=k["reputation"],
                   metering=k["metering"], firmware=k["firmware"],
                   disputes=FlexDisputes(k["reputation"])),
    ]


@dataclass(frozen=True)
class Release:
    """A module version outside this build's own list (e.g. a vendor's release a node
    operator installed to review and vote on it): ``build(keepers)`` returns the module
    wired with ``keepers``; ``keeper`` (if any) is what the modules depending on it are
    wired with instead of this build's keeper — a release changes its dependents' view of
    it too (e.g. a bank release changes how the market's settlement moves money)."""

    module: str
    version: int
    build: Callable[[Keepers], Module]
    keeper: Any = None


class Catalog:
    """The module versions a node can run: this build's, plus installed ``Release``s."""

    def __init__(self, releases: Sequence[Release] = ()) -> None:
        self.releases = {(r.module, r.version): r for r in releases}

    def with_release(self, release: Release) -> Catalog:
        """This catalog plus ``release`` (replacing one of the same module and version)."""
        return Catalog([*self.releases.values(), release])

    @staticmethod
    def genesis_defaults() -> dict[str, int]:
        """The versions a chain starts with when its genesis names none."""
        return dict(_defaults())

    def has(self, module: str, version: int) -> bool:
        """Whether this catalog can build ``module`` at ``version``."""
        if (module, version) in self.releases:
            return True
        if module in BUILTIN:
            return version in BUILTIN[module]
        return _defaults().get(module) == version

    def declaration_digest(self, versions: Mapping[str, int], module: str, version: int) -> bytes:
        """What an upgrade proposal of ``module`` to ``version`` carries: the digest of
        that version's declaration, as this catalog builds it on top of ``versions``.
        Raises ``VersionUnavailable``."""
        built = self.build({**versions, module: version})
        return next(m for m in built if m.name == module).declares.digest(module, version)

    def build(self, versions: Mapping[str, int],
              wrap_keeper: Callable[[str, Any], Any] | None = None) -> list[Module]:
        """The modules at ``versions`` (a module not named: as in ``genesis_defaults``).
        ``wrap_keeper(module, keeper)``: what the modules are wired with instead of an
        installed release's keeper (a dry run counts the calls of what it replaces).

        Raises ``VersionUnavailable`` naming the first module version neither this build
        nor an installed release has."""
        full = {**_defaults(), **versions}
        chosen = [r for (name, v), r in sorted(self.releases.items())
                  if full.get(name) == v]
        wrap = wrap_keeper if wrap_keeper is not None else (lambda _m, k: k)
        keepers = _keepers({r.module: wrap(r.module, r.keeper)
                            for r in chosen if r.keeper is not None})
        out = []
        for m in _builtin(full, keepers):
            want = full[m.name]
            if m.version == want:
                out.append(m)
            elif (m.name, want) in self.releases:
                out.append(self.releases[(m.name, want)].build(keepers))
            else:
                raise VersionUnavailable(f"module {m.name} version {want} is not in this "
                                         f"build (it has version {m.version})")
        return out


def builtin_keeper(module: str) -> Any | None:
    """This build's keeper of ``module`` (what its dependents are wired with), or None."""
    return _keepers({}).get(module)


@functools.cache
def _defaults() -> dict[str, int]:
    return {m.name: m.version for m in _builtin(GENESIS_VERSIONS, _keepers({}))} | GENESIS_VERSIONS


DEFAULT = Catalog()


def modules(versions: Mapping[str, int] | None = None) -> list[Module]:
    """The modules of this build at ``versions`` (default: the genesis versions)."""
    return DEFAULT.build(versions if versions is not None else GENESIS_VERSIONS)

