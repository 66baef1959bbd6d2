"""Rotating pseudonyms certified by k-of-n trustees, with threshold identity escrow.

docs/threat-model.md row 5: participants trade under pseudonyms that nobody can link to them, yet a
recorded dispute can open exactly one pseudonym's identity with k of the n trustees, and the
opening itself is a ledger event. By role:

* ``trustees``: the trustee set and keys;
* ``escrow``: the identity escrow with verifiable (committed) shares;
* ``certificates``: requests, endorsements, certificates;
* ``batch``: one Merkle-root certificate per epoch;
* ``opening``: releasing shares and opening an identity off the ledger.

A pseudonym is a fresh ML-DSA key (FIPS 204) per slot or epoch (rotation is policy, see
``privacy.attacks.analyse_deanonymization`` for why finer is better). What this does not
give: trustees cannot check at issuance that the escrowed identity is a registered member
(that would need a post-quantum blind signature or zero-knowledge proof, neither
standardised). A bogus escrow is proven at opening (k committed shares open nothing) and
the ledger then attributes the pseudonym through its meter's signed binding
(``privacy.meter_keys``).
"""

from gridledger.privacy.pseudonyms.batch import (
    CTX_BATCH,
    BatchEntry,
    batch_message,
    endorse_batch,
    entry_leaf,
    leaf_hash,
)
from gridledger.privacy.pseudonyms.certificates import (
    CTX_CERT,
    CTX_POP,
    PseudonymCertificate,
    PseudonymRequest,
    Scope,
    assemble_certificate,
    check_request,
    create_pseudonym,
    create_pseudonyms,
    endorse_pseudonym,
    verify_certificate,
)
from gridledger.privacy.pseudonyms.escrow import (
    BLIND_BYTES,
    OPENING_SHARE_BYTES,
    EscrowOpening,
    Identity,
    IdentityEscrow,
    binding,
    open_escrow,
    open_own_share,
    share_commitment,
)
from gridledger.privacy.pseudonyms.opening import (
    OpeningRecord,
    OpeningShare,
    open_identity,
    release_share,
    verify_opening,
)
from gridledger.privacy.pseudonyms.trustees import (
    Endorsement,
    TrusteeInfo,
    TrusteeKeys,
    TrusteeSet,
)

__all__ = [
    "BLIND_BYTES", "CTX_BATCH", "CTX_CERT", "CTX_POP", "OPENING_SHARE_BYTES", "BatchEntry",
    "Endorsement", "EscrowOpening", "Identity", "IdentityEscrow", "OpeningRecord",
    "OpeningShare", "PseudonymCertificate", "PseudonymRequest", "Scope", "TrusteeInfo",
    "TrusteeKeys", "TrusteeSet", "assemble_certificate", "batch_message", "binding",
    "check_request", "create_pseudonym", "create_pseudonyms", "endorse_batch", "endorse_pseudonym",
    "entry_leaf", "leaf_hash", "open_escrow", "open_identity", "open_own_share",
    "release_share", "share_commitment", "verify_certificate", "verify_opening",
]
