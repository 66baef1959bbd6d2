"""Firmware rules: one exception class per rule (the receipt names ``rule``)."""

from __future__ import annotations

from gridledger.errors import InvalidBody, Unauthorized


class UnknownVendor(InvalidBody):
    """The manifest or advisory names a vendor that genesis did not register."""

    rule = "unknown-vendor"


class UnknownModel(InvalidBody):
    """The vendor did not register this meter model at genesis."""

    rule = "unknown-model"


class NotVendor(Unauthorized):
    """Only the vendor's own ledger account publishes its releases."""

    rule = "not-vendor"


class VendorSignature(InvalidBody):
    """The manifest carries no valid signature of its vendor's firmware-signing key."""

    rule = "vendor-signature"


class ReleaseExists(InvalidBody):
    """A release with this manifest, this version of the model, or this image is on the ledger."""

    rule = "release-exists"


class TooManyOpen(InvalidBody):
    """At most ``MAX_OPEN`` releases and ``MAX_OPEN`` advisories wait for approval at once."""

    rule = "too-many-open"


class NotApprover(Unauthorized):
    """Only the DSO and members of the active validator set approve (or propose advisories)."""

    rule = "not-approver"


class UnknownRelease(InvalidBody):
    """No release on the ledger has this id."""

    rule = "unknown-release"


class UnknownAdvisory(InvalidBody):
    """No advisory on the ledger has this id."""

    rule = "unknown-advisory"


class AlreadyApproved(InvalidBody):
    """The release is approved (or the advisory in force) already."""

    rule = "already-approved"


class ApprovalExists(InvalidBody):
    """One approval per approver and release or advisory."""

    rule = "approval-exists"


class AdvisoryExists(InvalidBody):
    """An advisory with this id is on the ledger."""

    rule = "advisory-exists"


class UnknownMeter(Unauthorized):
    """The sender is not a meter bound to a connection point."""

    rule = "unknown-meter"


class ReleaseUnapproved(InvalidBody):
    """A patch names a release the quorum (DSO and validators) has not approved."""

    rule = "release-unapproved"


class PatchHashMismatch(InvalidBody):
    """The firmware hash a patching meter attests is not the release's image hash."""

    rule = "patch-hash-mismatch"


class ReleaseAdvised(InvalidBody):
    """A patch to a release that an advisory in force marks vulnerable."""

    rule = "release-advised"


class PatchWrongModel(InvalidBody):
    """A patch to a release of another vendor or meter model than the meter runs."""

    rule = "patch-wrong-model"


class PatchUpgradePath(InvalidBody):
    """The meter's version is below the release's minimum, or the patch is not an upgrade."""

    rule = "patch-upgrade-path"


class ImageOpening(InvalidBody):
    """An opening of a sealed firmware record that does not open it: no sealed record at
    the cp, or the image and salt do not hash to its commitment (``image_commitment``)."""

    rule = "image-opening"


class VouchBackwards(InvalidBody):
    """A DSO vouch for fewer slots than its last one (a vouch only moves forward)."""

    rule = "vouch-backwards"


class MeterQuarantined(Unauthorized):
    """The connection point's meter is quarantined (unknown, unapproved, advised or
    mismatched firmware): no new market exposure until the meter is patched. Also a
    sealed record no DSO vouch covers yet (``keeper.unvouched``): its image is unknown to
    the ledger, so it takes no exposure on it until the DSO reviewed it."""

    rule = "meter-quarantined"


RULES = (UnknownVendor, UnknownModel, NotVendor, VendorSignature, ReleaseExists, TooManyOpen,
         NotApprover, UnknownRelease, UnknownAdvisory, AlreadyApproved, ApprovalExists,
         AdvisoryExists, UnknownMeter, ReleaseUnapproved, PatchHashMismatch, ReleaseAdvised,
         PatchWrongModel, PatchUpgradePath, ImageOpening, VouchBackwards, MeterQuarantined)
