"""Certificate rules: one exception class per rule (the receipt names ``rule``)."""

from __future__ import annotations

from gridledger.errors import InvalidBody, Unauthorized


class CertificateListedTwice(InvalidBody):
    """One message names the same certificate bundle twice (a double claim in one go)."""

    rule = "certificate-listed-twice"


class CertificateUnknown(InvalidBody):
    """No certificate bundle starts at that id in that slot (never issued, or split)."""

    rule = "certificate-unknown"


class CertificateNotOwner(Unauthorized):
    """The sender does not hold the certificate bundle."""

    rule = "certificate-not-owner"


class CertificateNotActive(InvalidBody):
    """The bundle was cancelled (final) or has expired: it can be neither transferred nor
    cancelled again."""

    rule = "certificate-not-active"


class CertificateExceeded(InvalidBody):
    """An action names more Wh than the bundle holds."""

    rule = "certificate-exceeded"


class CertificateToSelf(InvalidBody):
    """A transfer names its sender as recipient."""

    rule = "certificate-to-self"


class CertificateRecipientUnknown(InvalidBody):
    """The transfer's recipient is not a registered participant."""

    rule = "certificate-recipient-unknown"


class ClaimExceedsConsumption(InvalidBody):
    """Cancelling (or storing) this much would cover more than the sender's metered import
    in the certificate's hour."""

    rule = "claim-exceeds-consumption"


class ClaimWindowClosed(InvalidBody):
    """The certificate's hour is closed: its certificates expired, nothing more is claimed."""

    rule = "claim-window-closed"


class StorageDeviceMissing(InvalidBody):
    """The sender's connection point has no registered storage device."""

    rule = "storage-device-missing"


class StoreExceedsCharge(InvalidBody):
    """Storing this much would exceed what the battery's sub-meter says it charged in the
    certificate's slot."""

    rule = "store-exceeds-charge"


class StorageOverCapacity(InvalidBody):
    """A storage reading beyond the device's registered power for one slot (+10 %)."""

    rule = "storage-over-capacity"


class StorageReadingEarly(InvalidBody):
    """A storage reading for a slot that has not ended yet (retry later)."""

    rule = "storage-reading-early"


class StorageReadingLate(InvalidBody):
    """A storage reading at or after its slot's settlement deadline (give up)."""

    rule = "storage-reading-late"


class OneStorageReadingPerSlot(InvalidBody):
    """The storage device already reported the slot."""

    rule = "one-storage-reading-per-slot"


class NotAMeter(Unauthorized):
    """A storage reading must come from the meter bound to the device's connection point."""

    rule = "storage-reading-not-meter"


class DeviceCpUnknown(InvalidBody):
    """A device is registered for a connection point nobody holds."""

    rule = "device-cp-unknown"


RULES = (CertificateListedTwice, CertificateUnknown, CertificateNotOwner, CertificateNotActive,
         CertificateExceeded, CertificateToSelf, CertificateRecipientUnknown,
         ClaimExceedsConsumption, ClaimWindowClosed, StorageDeviceMissing, StoreExceedsCharge,
         StorageOverCapacity, StorageReadingEarly, StorageReadingLate, OneStorageReadingPerSlot,
         NotAMeter, DeviceCpUnknown)
