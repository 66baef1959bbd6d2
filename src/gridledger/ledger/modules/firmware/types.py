"""Firmware types: vendors, release manifests, advisories, each meter's firmware of record,
the messages and their stateless parsers.

A **manifest** is what a vendor signs with its ML-DSA-87 firmware-signing key (FIPS 204
context ``gl/fw-manifest``): vendor, meter model, version, the SHA3-256 of the image and the
lowest version the image may be installed over. It is not bound to a chain: one release
serves every community that registered the vendor. Versions are ``MAJOR.MINOR.PATCH`` and
compare as integer triples.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from gridledger.crypto.hashing import tagged_hash
from gridledger.errors import InvalidBody
from gridledger.ledger.module import Body
from gridledger.ledger.modules.firmware.errors import PatchHashMismatch
from gridledger.ledger.record import Record, optional
from gridledger.ledger.validate import require_bytes, require_fields, require_sig

RELEASE = "firmware/release"
APPROVE = "firmware/approve"
ADVISORY = "firmware/advisory"
PATCH = "firmware/patch"
VOUCH = "firmware/vouch"

MANIFEST_CONTEXT = b"gl/fw-manifest"
"""FIPS 204 context of a vendor's manifest signature (never valid as a transaction)."""
VENDOR_ALG = "ml-dsa-87"
"""Firmware-signing keys are long-lived roots: ML-DSA-87 (DESIGN.md, principle 1)."""
IMAGE_HASH_LEN = 32
SALT_LEN = 32
MAX_OPEN = 32
"""Releases (and, separately, advisories) waiting for the quorum at once."""
MAX_ADVISORY_VERSIONS = 16
MAX_VENDORS = 16
MAX_MODELS = 16

Severity = Literal["low", "medium", "high", "critical"]
SEVERITIES: tuple[Severity, ...] = ("low", "medium", "high", "critical")
ReleaseStatus = Literal["pending", "approved"]
AdvisoryStatus = Literal["pending", "in-force"]
AdvisorySource = Literal["vendor", "quorum"]
Reason = Literal["unknown-firmware", "unapproved-firmware", "advised-firmware",
                 "firmware-mismatch"]
"""Why a meter is quarantined (``keeper.reason_of``)."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
_ADVISORY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_VERSION = re.compile(r"(\d{1,4})\.(\d{1,4})\.(\d{1,4})")

Version = tuple[int, int, int]


def parse_version(text: str) -> Version:
    """``"2.3.1"`` -> ``(2, 3, 1)``; raises ``InvalidBody`` for anything else."""
    m = _VERSION.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise InvalidBody(f"version {str(text)[:16]!r} is not MAJOR.MINOR.PATCH (0..9999 each)")
    return int(m[1]), int(m[2]), int(m[3])


def is_name(v: object) -> bool:
    """Whether ``v`` is a vendor or model name: ``[A-Za-z0-9][A-Za-z0-9._-]{0,31}``."""
    return isinstance(v, str) and _NAME.fullmatch(v) is not None


def _require_name(obj: dict[str, Any], name: str, pattern: re.Pattern[str] = _NAME) -> str:
    v = obj.get(name)
    if not isinstance(v, str) or pattern.fullmatch(v) is None:
        raise InvalidBody(f"field {name!r} must match {pattern.pattern}")
    return v


# -- state records ---------------------------------------------------------------------

@dataclass(frozen=True)
class Manifest(Record):
    """What a vendor signs for one firmware image (canonical CBOR of this map)."""

    vendor: str
    model: str
    version: str
    image_sha3: bytes
    min_version: str

    def release_id(self) -> bytes:
        """The release's id on every chain: ``tagged_hash("gl/fw-release", manifest)``."""
        return tagged_hash("gl/fw-release", self.encode())

    @property
    def version_key(self) -> Version:
        return parse_version(self.version)

    @property
    def min_version_key(self) -> Version:
        return parse_version(self.min_version)


@dataclass(frozen=True)
class Vendor(Record):
    """``fw/v/<name>``: a vendor registered at genesis: its firmware-signing key (ML-DSA-87),
    the ledger account that publishes for it, and its meter models."""

    name: str
    alg: str
    pk: bytes
    account: bytes
    models: tuple[str, ...]


@dataclass(frozen=True)
class Config(Record):
    """``fw/cfg``: present iff genesis has a ``firmware`` section (the policy is in force)."""

    vendors: tuple[str, ...]


@dataclass(frozen=True)
class Release(Record):
    """``fw/r/<release id>``: a published manifest and its approvals (the signature stays in
    the release transaction: hedged ML-DSA signatures differ per signing).

    ``approved`` is the height it was approved at (0: in genesis, by the founding parties).
    """

    manifest: Manifest
    status: ReleaseStatus
    published: int
    dso: tuple[bytes, ...]
    validators: tuple[bytes, ...]
    approved: int | None = optional()


@dataclass(frozen=True)
class Advisory(Record):
    """``fw/a/<id>``: versions of a model known to be vulnerable. In force at once from the
    vendor; from the DSO or a validator once the quorum approves."""

    id: str
    vendor: str
    model: str
    versions: tuple[str, ...]
    severity: Severity
    source: AdvisorySource
    proposer: bytes
    status: AdvisoryStatus
    issued: int
    dso: tuple[bytes, ...]
    validators: tuple[bytes, ...]
    in_force: int | None = optional()


@dataclass(frozen=True)
class MeterFirmware(Record):
    """``fw/m/<cp>``: the firmware of record of the cp's meter (its first reading's hash,
    then whatever a patch installs) and, if a later reading attested another hash, that
    hash (``mismatch``: the meter changed without a patch)."""

    meter: bytes
    firmware: bytes
    since: int
    mismatch: bytes | None = optional()
    sealed: bool | None = optional()
    """True: ``firmware`` is a salted commitment ``image_commitment(image, r)`` the DSO
    attested as an approved image (privacy mode, issue 19); the ledger compares readings
    with it and learns no image. Not quarantined unless a reading differs (mismatch)."""
    salt: bytes | None = optional()
    """Set once the record was opened (by the DSO on an advisory, or by a patch):
    ``firmware`` is then the image, and readings attest ``image_commitment(firmware,
    salt)``."""
    slot: int | None = optional()
    """A sealed record's first trading slot (its pseudonym's): the DSO's vouch must cover it
    before the cp takes market exposure (``keeper.unvouched``)."""

    @property
    def attested(self) -> bytes:
        """What the meter's readings attest while this record holds: the image, or the
        salted commitment to it."""
        return self.firmware if self.salt is None else image_commitment(self.firmware, self.salt)

    @property
    def indexed(self) -> bool:
        """Whether the record is in the image -> cps index (``fw/on``): not while sealed and
        unopened — ``firmware`` is then a salted commitment no advisory or release can name
        (the DSO opens an advised one), and the entry would be a state key per privacy-mode
        pseudonym for nothing (issue 19, privacy mode's cost)."""
        return not self.sealed or self.salt is not None


def image_commitment(image: bytes, salt: bytes) -> bytes:
    """H(image ‖ r): a salted commitment to a firmware image hash (``crypto.hashing.
    tagged_hash``, SHA3-256, length-prefixed parts). Hiding while the 32-byte salt ``r`` is
    secret (a fleet of a few images cannot be tried against it), binding by collision
    resistance. The meter and the DSO hold ``r``; the ledger only on an opening."""
    return tagged_hash("gl/fw/image-commitment", image, salt)


@dataclass(frozen=True)
class Vouch(Record):
    """``fw/vouch``: the DSO's latest statement that every sealed firmware of record on the
    ledger at ``height`` whose first slot is at most ``through_slot`` commits to an image
    with no problem — except those it opened or reported (``privacy/meter_image``) before."""

    through_slot: int
    height: int


@dataclass(frozen=True)
class OpenItems(Record):
    """``fw/open``: releases and advisories waiting for the quorum (ascending)."""

    releases: tuple[bytes, ...]
    advisories: tuple[str, ...]


# -- messages --------------------------------------------------------------------------

@dataclass(frozen=True)
class PublishRelease(Record):
    """``firmware/release`` (the vendor's account): a signed manifest."""

    manifest: Manifest
    sig: bytes


@dataclass(frozen=True)
class Approve(Record):
    """``firmware/approve`` (DSO or validator): approve a release or a quorum advisory."""

    release: bytes | None = optional()
    advisory: str | None = optional()


@dataclass(frozen=True)
class IssueAdvisory(Record):
    """``firmware/advisory`` (the vendor's account, the DSO or a validator)."""

    id: str
    vendor: str
    model: str
    versions: tuple[str, ...]
    severity: Severity


@dataclass(frozen=True)
class Patch(Record):
    """``firmware/patch`` (meter): the meter installed the image of a signed, approved
    release; ``firmware`` is the hash it now attests (measured boot)."""

    manifest: Manifest
    sig: bytes
    firmware: bytes
    opens: bytes | None = optional()
    """For a sealed firmware of record (privacy mode): the image it commits to ..."""
    salt: bytes | None = optional()
    """... and its salt: the patch opens the record so the upgrade path can be checked."""


@dataclass(frozen=True)
class VouchSealed(Record):
    """``firmware/vouch`` (the DSO): it reviewed the sealed records of slots up to
    ``through_slot`` against the images their meters report to it (``Vouch``)."""

    through_slot: int


def parse_vouch(body: Body) -> VouchSealed:
    """Exactly ``through_slot``, a slot number (``0 <= n < 2**40``)."""
    require_fields(body, VOUCH, ("through_slot",))
    n = body["through_slot"]
    if type(n) is not int or not 0 <= n < 2 ** 40:
        raise InvalidBody("field 'through_slot' must be a slot number")
    return VouchSealed(n)


def parse_manifest(obj: Any) -> Manifest:
    """Exactly vendor, model (names), version, min_version (``MAJOR.MINOR.PATCH``,
    min_version <= version) and a 32-byte image hash. Raises ``InvalidBody``."""
    if not isinstance(obj, dict):
        raise InvalidBody("field 'manifest' must be a map")
    require_fields(obj, "manifest", ("vendor", "model", "version", "image_sha3", "min_version"))
    vendor, model = _require_name(obj, "vendor"), _require_name(obj, "model")
    version, min_version = parse_version(obj["version"]), parse_version(obj["min_version"])
    if min_version > version:
        raise InvalidBody(f"min_version {obj['min_version']} above version {obj['version']}")
    return Manifest(vendor, model, obj["version"],
                    require_bytes(obj, "image_sha3", exact=IMAGE_HASH_LEN), obj["min_version"])


def parse_release(body: Body) -> PublishRelease:
    require_fields(body, RELEASE, ("manifest", "sig"))
    return PublishRelease(parse_manifest(body["manifest"]), require_sig(body, "sig"))


def parse_approve(body: Body) -> Approve:
    """Exactly one of ``release`` (32-byte id) and ``advisory`` (id)."""
    require_fields(body, APPROVE, (), optional=("release", "advisory"))
    if len(body) != 1:
        raise InvalidBody(f"{APPROVE} names exactly one of release, advisory")
    if "release" in body:
        return Approve(release=require_bytes(body, "release", exact=32))
    return Approve(advisory=_require_name(body, "advisory", _ADVISORY_ID))


def parse_advisory(body: Body) -> IssueAdvisory:
    require_fields(body, ADVISORY, ("id", "vendor", "model", "versions", "severity"))
    versions = body["versions"]
    if (not isinstance(versions, list) or not 1 <= len(versions) <= MAX_ADVISORY_VERSIONS
            or not all(isinstance(v, str) for v in versions)):
        raise InvalidBody(f"field 'versions' must list 1..{MAX_ADVISORY_VERSIONS} versions")
    keys = [parse_version(v) for v in versions]
    if keys != sorted(set(keys)):
        raise InvalidBody("field 'versions' must be ascending without repeats")
    severity = body["severity"]
    if severity not in SEVERITIES:
        raise InvalidBody(f"field 'severity' must be one of {', '.join(SEVERITIES)}")
    return IssueAdvisory(_require_name(body, "id", _ADVISORY_ID), _require_name(body, "vendor"),
                         _require_name(body, "model"), tuple(versions), severity)


def parse_patch(body: Body) -> Patch:
    """The signed manifest and the attested hash; an attested hash that is not the
    manifest's image is ``patch-hash-mismatch`` (no state needed to see it)."""
    require_fields(body, PATCH, ("manifest", "sig", "firmware"), optional=("opens", "salt"))
    manifest = parse_manifest(body["manifest"])
    sig = require_sig(body, "sig")
    firmware = require_bytes(body, "firmware", exact=IMAGE_HASH_LEN)
    if firmware != manifest.image_sha3:
        raise PatchHashMismatch(f"the meter attests {firmware.hex()[:16]}…, release "
                                f"{manifest.model} {manifest.version} is "
                                f"{manifest.image_sha3.hex()[:16]}…")
    if ("opens" in body) != ("salt" in body):
        raise InvalidBody("a patch opening a sealed record carries both 'opens' and 'salt'")
    if "opens" not in body:
        return Patch(manifest, sig, firmware)
    return Patch(manifest, sig, firmware, require_bytes(body, "opens", exact=IMAGE_HASH_LEN),
                 require_bytes(body, "salt", exact=SALT_LEN))
