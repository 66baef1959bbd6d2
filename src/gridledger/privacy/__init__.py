"""Privacy: secure aggregation, differential privacy, pseudonyms with identity escrow, EV roaming.

Pure algorithms (DESIGN.md principle 3): nothing here reads a clock, a file or a socket.
Randomness that must stay secret (shares, masks, DP noise, fresh keys) is drawn at the
meter / aggregator / participant, outside the ledger, from an injected ``RandomBytes``
(``os.urandom`` by default). Verification functions a validator calls are deterministic.
"""

from gridledger.privacy.aggregation import (
    AggregateResult,
    Aggregator,
    AggregatorKeys,
    Committee,
    Inclusion,
    MeterSubmission,
    PartialSum,
    ShareCheck,
    accept_grants,
    check_shares,
    combine_partials,
    establish_session,
    resolve_share_dispute,
    seal_noise,
    seal_reading,
    select_included,
    sum_shares,
)
from gridledger.privacy.dp import ClipBound, DpParams, PrivacyAccountant, release_total
from gridledger.privacy.errors import PrivacyError
from gridledger.privacy.pseudonyms import (
    OpeningRecord,
    PseudonymCertificate,
    TrusteeSet,
    assemble_certificate,
    create_pseudonym,
    endorse_pseudonym,
    open_identity,
    release_share,
    verify_certificate,
    verify_opening,
)
from gridledger.privacy.roaming import (
    HomeBilling,
    RoamingClaim,
    admit_roaming_ev,
    make_claim,
    request_charging,
    seal_billing_token,
    settle_roaming_claim,
    sign_receipt,
)

# The attack analyses (numpy/scipy) are imported from gridledger.privacy.attacks directly,
# so validators that only verify do not load them.
__all__ = [
    "AggregateResult", "Aggregator", "AggregatorKeys", "ClipBound", "Committee", "DpParams", "HomeBilling",
    "Inclusion", "MeterSubmission", "OpeningRecord", "PartialSum", "PrivacyAccountant",
    "PrivacyError", "PseudonymCertificate", "RoamingClaim", "ShareCheck", "TrusteeSet",
    "accept_grants", "admit_roaming_ev", "assemble_certificate", "check_shares",
    "combine_partials", "create_pseudonym", "endorse_pseudonym", "establish_session",
    "make_claim", "open_identity", "release_share", "release_total", "request_charging",
    "resolve_share_dispute", "seal_billing_token", "seal_noise", "seal_reading",
    "select_included", "settle_roaming_claim", "sign_receipt", "sum_shares",
    "verify_certificate", "verify_opening",
]
