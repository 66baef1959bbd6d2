"""The community's meter fleet: one vendor, two meter models, the firmware they run.

A realistic installed base for a European LV feeder: single-phase meters (``MW-1P``) for
households without DER, three-phase meters (``MW-3P``) wherever there is PV, a battery, an
EV charger or a heat pump. A rollout of single-phase 4.2.0 is under way, so a seeded
``OLD_SHARE`` of single-phase meters still runs 4.1.2. Every release the fleet runs is
vendor-signed and listed in genesis (approved by the founding parties); the vendor's
ML-DSA-87 firmware key is the key of its ledger account.

``Fleet.disclose`` is how a scenario makes a vulnerability known to the vendor; the
firmware feature (``sim/features/firmware.py``) plays the vendor, the quorum and the meters.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gridledger.crypto.sig import SigningKey
from gridledger.ledger.modules.firmware.types import Severity
from gridledger.meter import Meter, SignedRelease, VendorSigner
from gridledger.sim.keys import sim_key

VENDOR = "meterwerk"
SINGLE_PHASE, THREE_PHASE = "MW-1P", "MW-3P"
INSTALLED: dict[str, tuple[tuple[str, str], ...]] = {
    SINGLE_PHASE: (("4.1.2", "4.0.0"), ("4.2.0", "4.1.0")),
    THREE_PHASE: (("2.7.1", "2.5.0"),),
}
"""model -> (version, min_version) of the releases the installed meters run."""
OLD_SHARE = 0.4
"""Single-phase meters still on 4.1.2 (at least two when the community has three or more)."""
THREE_PHASE_DER = frozenset({"pv", "battery", "ev", "heat-pump"})


def image_of(model: str, version: str) -> bytes:
    """The bytes of a (simulated) firmware image: deterministic per model and version."""
    return f"{VENDOR} {model} {version} firmware image".encode() * 64


@dataclass(frozen=True)
class Disclosure:
    """A vulnerability the vendor learns of at ``slot``: it publishes advisory
    ``advisory_id`` on ``versions`` of ``model`` and the fixed release ``fix`` (version,
    min_version) in the same step."""

    slot: int
    advisory_id: str
    model: str
    versions: tuple[str, ...]
    severity: Severity
    fix: tuple[str, str]


@dataclass
class Fleet:
    """The vendor, its signed releases, and each member's meter (by cp)."""

    vendor: VendorSigner
    releases: dict[tuple[str, str], SignedRelease]
    meters: dict[str, Meter]
    disclosures: list[Disclosure] = field(default_factory=list)

    @staticmethod
    def make(seed: int, members: Sequence[tuple[str, SigningKey, tuple[str, ...]]]) -> Fleet:
        """``members``: (cp, meter key, DER tags) of each member, in member order."""
        vendor = VendorSigner(VENDOR, sim_key(seed, "vendor", 0, alg="ml-dsa-87"),
                              (SINGLE_PHASE, THREE_PHASE))
        releases = {(model, v): vendor.sign(model, v, image_of(model, v), mv)
                    for model, versions in INSTALLED.items() for v, mv in versions}
        single = [cp for cp, _, der in members if not THREE_PHASE_DER & set(der)]
        random.Random(f"fleet/{seed}").shuffle(single)
        n_old = max(round(OLD_SHARE * len(single)), min(2, len(single)))
        old = set(single[:n_old])
        meters = {}
        for cp, key, der in members:
            if THREE_PHASE_DER & set(der):
                rel = releases[THREE_PHASE, "2.7.1"]
            else:
                rel = releases[SINGLE_PHASE, "4.1.2" if cp in old else "4.2.0"]
            meters[cp] = Meter(key, cp, vendor.key.public_key, rel.manifest)
        return Fleet(vendor, releases, meters)

    @property
    def account(self) -> SigningKey:
        """The vendor's ledger account (its firmware key doubles as its account key)."""
        return self.vendor.key

    def genesis_participants(self) -> list[dict[str, Any]]:
        k = self.vendor.key
        return [{"alg": k.alg, "pk": k.public_key.raw, "roles": ["vendor"], "name": VENDOR}]

    def genesis_section(self) -> dict[str, Any]:
        return {"vendors": [self.vendor.genesis_entry()],
                "releases": [r.genesis_entry() for _, r in sorted(self.releases.items())]}

    def population(self) -> dict[str, int]:
        """``"model version"`` -> meters running it now."""
        out: dict[str, int] = {}
        for m in self.meters.values():
            label = f"{m.running.model} {m.running.version}"
            out[label] = out.get(label, 0) + 1
        return dict(sorted(out.items()))

    def cps_on(self, model: str, versions: Sequence[str]) -> list[str]:
        """The cps whose meter runs ``model`` at one of ``versions``, sorted."""
        return sorted(cp for cp, m in self.meters.items()
                      if m.running.model == model and m.running.version in versions)

    def disclose(self, d: Disclosure) -> None:
        self.disclosures.append(d)
