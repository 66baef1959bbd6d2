"""The vendor's side of a firmware release: sign a manifest, publish it, issue advisories.

The firmware-signing key is ML-DSA-87 (a long-lived root; it lives in the vendor's HSM,
never on a ledger node). The same key is registered in the chain's genesis ``firmware``
section and burned into the vendor's meters, so the meter and the ledger check one
signature over one encoding: ``Manifest.encode()`` under FIPS 204 context
``gl/fw-manifest``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gridledger.crypto.hashing import sha3_256
from gridledger.crypto.sig import SigningKey
from gridledger.errors import ConfigError
from gridledger.ledger.modules.firmware.types import (
    MANIFEST_CONTEXT,
    VENDOR_ALG,
    Manifest,
    Severity,
    parse_manifest,
)


def image_hash(image: bytes) -> bytes:
    """SHA3-256 of a firmware image: what the manifest names and a meter attests."""
    return sha3_256(image)


@dataclass(frozen=True)
class SignedRelease:
    """A manifest and its vendor signature, as published and as meters receive it."""

    manifest: Manifest
    sig: bytes

    @property
    def release_id(self) -> bytes:
        return self.manifest.release_id()

    def body(self) -> dict[str, Any]:
        """The ``firmware/release`` body."""
        return {"manifest": self.manifest.to_obj(), "sig": self.sig}

    def genesis_entry(self) -> dict[str, Any]:
        """An entry of the genesis ``firmware.releases`` list (the installed base)."""
        return self.body()


@dataclass(frozen=True)
class VendorSigner:
    """A meter vendor: its name, ML-DSA-87 firmware-signing key and meter models.

    Raises ``ConfigError`` if the key is not ML-DSA-87 or a name is not a registry name.
    """

    name: str
    key: SigningKey
    models: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.key.alg != VENDOR_ALG:
            raise ConfigError(f"vendor {self.name!r}: firmware-signing key must be {VENDOR_ALG}")
        for model in self.models:
            parse_manifest({"vendor": self.name, "model": model, "version": "0.0.0",
                            "image_sha3": bytes(32), "min_version": "0.0.0"})

    def sign(self, model: str, version: str, image: bytes, min_version: str) -> SignedRelease:
        """Sign the manifest of ``image`` (bytes of the firmware) for ``model``."""
        if model not in self.models:
            raise ConfigError(f"vendor {self.name!r} makes no model {model!r}")
        manifest = parse_manifest({"vendor": self.name, "model": model, "version": version,
                                   "image_sha3": image_hash(image), "min_version": min_version})
        return SignedRelease(manifest, self.key.sign(manifest.encode(), MANIFEST_CONTEXT))

    def genesis_entry(self, account: bytes | None = None) -> dict[str, Any]:
        """This vendor's entry of the genesis ``firmware.vendors`` list; ``account`` is the
        ledger identity that publishes for it (default: the signing key's own address)."""
        entry: dict[str, Any] = {"name": self.name, "alg": self.key.alg,
                                 "pk": self.key.public_key.raw, "models": list(self.models)}
        if account is not None:
            entry["account"] = account
        return entry

    def advisory_body(self, advisory_id: str, model: str, versions: list[str],
                      severity: Severity) -> dict[str, Any]:
        """A ``firmware/advisory`` body about this vendor's ``model``."""
        return {"id": advisory_id, "vendor": self.name, "model": model, "versions": versions,
                "severity": severity}
