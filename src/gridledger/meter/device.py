"""A smart meter: device key, measured firmware, signed readings, verified updates."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gridledger.crypto.sig import PublicKey, SigningKey
from gridledger.errors import GridLedgerError
from gridledger.ledger.modules.firmware.types import MANIFEST_CONTEXT, Manifest
from gridledger.meter.vendor import SignedRelease


class UpdateRefused(GridLedgerError):
    """The meter's bootloader refuses an update (bad signature, other model, not an upgrade)."""


@dataclass
class Meter:
    """One meter at connection point ``cp``.

    ``vendor_key`` is the vendor's firmware-signing key burned in at manufacture; ``running``
    the manifest of the image it booted (its ``image_sha3`` is what it attests). A meter on
    an image nobody published has ``running`` with that image's hash.
    """

    key: SigningKey
    cp: str
    vendor_key: PublicKey
    running: Manifest
    history: list[bytes] = field(default_factory=list)
    """Images it ran before, oldest first."""

    @property
    def address(self) -> bytes:
        return self.key.address

    @property
    def firmware(self) -> bytes:
        """The attested firmware hash (SHA3-256 of the booted image)."""
        return self.running.image_sha3

    def reading(self, slot: int, import_wh: int, export_wh: int) -> dict[str, Any]:
        """A ``metering/reading`` body for ``slot``: energy through the cp and the firmware
        the meter runs. The caller signs it with ``key`` (the device key)."""
        return {"slot": slot, "import_wh": import_wh, "export_wh": export_wh,
                "firmware": self.firmware}

    def check_update(self, release: SignedRelease) -> None:
        """What the bootloader checks before flashing; raises ``UpdateRefused``."""
        m, cur = release.manifest, self.running
        if not self.vendor_key.verify(m.encode(), release.sig, MANIFEST_CONTEXT):
            raise UpdateRefused(f"{m.model} {m.version}: not signed by the meter's vendor")
        if (m.vendor, m.model) != (cur.vendor, cur.model):
            raise UpdateRefused(f"{m.vendor} {m.model} is not this meter's model "
                                f"({cur.vendor} {cur.model})")
        if cur.version_key < m.min_version_key or m.version_key <= cur.version_key:
            raise UpdateRefused(f"{m.version} (from {m.min_version}) is no upgrade from "
                                f"{cur.version}")

    def install(self, release: SignedRelease) -> dict[str, Any]:
        """Verify and flash ``release``; returns the ``firmware/patch`` body (signed
        manifest + the newly attested hash) for the caller to sign with ``key``."""
        self.check_update(release)
        self.history.append(self.running.image_sha3)
        self.running = release.manifest
        return patch_body(release, self.firmware)


def patch_body(release: SignedRelease, firmware: bytes) -> dict[str, Any]:
    """A ``firmware/patch`` body: the signed manifest and the hash the meter attests."""
    return {"manifest": release.manifest.to_obj(), "sig": release.sig, "firmware": firmware}
