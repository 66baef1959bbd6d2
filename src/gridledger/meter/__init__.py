"""The smart-meter client: device keys, signed readings, firmware attestation and patches,
and the vendor's side of a firmware release (signing manifests).

A meter is a ledger identity of its own (role ``meter``, ML-DSA-44 allowed): its device key
signs its readings and its patch transactions. It attests the SHA3-256 of the firmware image
it booted (measured boot) in every reading, and installs only images whose manifest its
vendor signed (the vendor's ML-DSA-87 key is burned in at manufacture) for its model, on
the upgrade path. The ledger's firmware registry checks the same things again and adds the
quorum's approval and advisories (``ledger/modules/firmware``).
"""

from gridledger.meter.device import Meter, UpdateRefused
from gridledger.meter.vendor import SignedRelease, VendorSigner, image_hash

__all__ = ["Meter", "SignedRelease", "UpdateRefused", "VendorSigner", "image_hash"]
