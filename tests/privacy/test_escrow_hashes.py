"""An escrow's binding and record hash are hashed once (issue 17, fifteenth session: ~9
bindings and 6 record hashes a pseudonym in an epoch's issuance): the values kept are
those of the escrow's own fields, for one made by ``make_escrow``, one built or replaced
field by field, and one that travelled through pickle; the trustees' checks still refuse
an escrow whose record or pseudonym was swapped."""

from __future__ import annotations

import pickle
from dataclasses import replace

import pytest

from gridledger.crypto.hashing import tagged_hash
from gridledger.crypto.sig import SigningKey
from gridledger.privacy.errors import EndorsementRefused
from gridledger.privacy.pseudonyms import TrusteeKeys, TrusteeSet, create_pseudonyms
from gridledger.privacy.pseudonyms.certificates import PseudonymRequest, check_request
from gridledger.privacy.pseudonyms.escrow import IdentityEscrow, binding
from gridledger.privacy.rng import DeterministicRandom

EPOCH = 3


def _fresh(e: IdentityEscrow) -> tuple[bytes, bytes, list[bytes]]:
    """(digest, binding, share aads) computed from the fields, nothing kept."""
    bind = binding(e.community, e.epoch, e.scope, e.pseudonym_key)
    record = tagged_hash("gl/pseudonym/record", e.record_ciphertext)
    digest = tagged_hash("gl/pseudonym/escrow/v2", bind, e.record_ciphertext,
                         *e.sealed_shares, *e.share_commitments)
    aads = [tagged_hash("gl/pseudonym/share-aad", bind, record, j.to_bytes(2, "big"))
            for j in range(len(e.sealed_shares))]
    return digest, bind, aads


def test_kept_hashes_are_the_fields_own(identity: SigningKey, trustees: TrusteeSet,
                                        trustee_keys: list[TrusteeKeys]) -> None:
    (key, req), (key2, req2) = create_pseudonyms(identity, trustees, EPOCH, 2,
                                                 random_bytes=DeterministicRandom(9))
    e, e2 = req.escrow, req2.escrow
    for x in (e, pickle.loads(pickle.dumps(e)),
              IdentityEscrow(e.community, e.epoch, e.scope, e.pseudonym_key,
                             e.record_ciphertext, e.sealed_shares, e.share_commitments)):
        digest, bind, aads = _fresh(x)
        assert x.digest() == digest and x._binding == bind
        assert [x.share_aad(j) for j in range(len(aads))] == aads
    for t in trustee_keys:
        check_request(t, trustees, req, EPOCH)
    # another pseudonym's key, or another record: other hashes, and the trustees refuse
    swapped = replace(e, pseudonym_key=e2.pseudonym_key)
    other = replace(e, record_ciphertext=e2.record_ciphertext)
    for x in (swapped, other):
        digest, bind, aads = _fresh(x)
        assert x.digest() == digest != e.digest() and x.share_aad(0) == aads[0]
        with pytest.raises(EndorsementRefused):
            check_request(trustee_keys[0], trustees, PseudonymRequest(x, req.pop_signature),
                          EPOCH)
