"""Pseudonym certificates (k-of-n trustees) and threshold identity escrow openings."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gridledger.crypto.sig import SigningKey
from gridledger.privacy.errors import (
    EndorsementRefused,
    InvalidCertificate,
    OpeningRefused,
)
from gridledger.privacy.pseudonyms import (
    Endorsement,
    OpeningShare,
    PseudonymCertificate,
    PseudonymRequest,
    TrusteeKeys,
    TrusteeSet,
    assemble_certificate,
    create_pseudonym,
    endorse_pseudonym,
    open_identity,
    release_share,
    verify_certificate,
    verify_opening,
)
from gridledger.privacy.rng import DeterministicRandom

EPOCH = 20


@pytest.fixture(scope="module")
def issued(identity: SigningKey, trustees: TrusteeSet,
           trustee_keys: list[TrusteeKeys]) -> tuple[SigningKey, PseudonymRequest,
                                                     PseudonymCertificate]:
    key, req = create_pseudonym(identity, trustees, EPOCH, random_bytes=DeterministicRandom(5))
    ends = [endorse_pseudonym(t, trustees, req, EPOCH) for t in trustee_keys[:3]]
    return key, req, assemble_certificate(req, ends)


def test_request_carries_no_identity(identity: SigningKey, issued) -> None:
    _, req, cert = issued
    blob = (req.escrow.record_ciphertext + b"".join(req.escrow.sealed_shares)
            + b"".join(req.escrow.share_commitments) + req.pop_signature)
    assert identity.public_key.raw[:32] not in blob and identity.address not in blob
    assert cert.pseudonym_key != identity.public_key


def test_certificate_verifies(issued, trustees: TrusteeSet) -> None:
    _, _, cert = issued
    verify_certificate(cert, trustees, epoch=EPOCH, scope="trade")
    with pytest.raises(InvalidCertificate):
        verify_certificate(cert, trustees, epoch=EPOCH + 1)
    with pytest.raises(InvalidCertificate):
        verify_certificate(cert, trustees, scope="roaming")


def test_certificate_needs_k_valid_distinct_endorsements(issued, trustees: TrusteeSet,
                                                         trustee_keys: list[TrusteeKeys]) -> None:
    _, _req, cert = issued
    two = replace(cert, endorsements=cert.endorsements[:2])
    with pytest.raises(InvalidCertificate):
        verify_certificate(two, trustees)
    # The same trustee three times counts once.
    dup = replace(cert, endorsements=(cert.endorsements[0],) * 3)
    with pytest.raises(InvalidCertificate):
        verify_certificate(dup, trustees)
    # A signature by trustee 0 relabelled as trustee 4 does not verify.
    relabel = replace(cert, endorsements=(*cert.endorsements[:2],
                                          Endorsement(4, cert.endorsements[0].signature)))
    with pytest.raises(InvalidCertificate):
        verify_certificate(relabel, trustees)
    # An outsider's signature does not count.
    outsider = TrusteeKeys.generate("x")
    fake = Endorsement(4, outsider.signing_key.sign(cert.signed_message(),
                                                    b"gl/pseudonym/cert/v1"))
    with pytest.raises(InvalidCertificate):
        verify_certificate(replace(cert, endorsements=(*cert.endorsements[:2], fake)), trustees)
    # Swapping the pseudonym key invalidates every endorsement.
    other = SigningKey.generate().public_key
    with pytest.raises(InvalidCertificate):
        verify_certificate(replace(cert, pseudonym_key=other), trustees)


def test_trustees_refuse_malformed_requests(identity: SigningKey, trustees: TrusteeSet,
                                            trustee_keys: list[TrusteeKeys], issued) -> None:
    _, req, _ = issued
    with pytest.raises(EndorsementRefused):
        endorse_pseudonym(trustee_keys[0], trustees, replace(req, pop_signature=b"\0" * 3309),
                          EPOCH)
    with pytest.raises(EndorsementRefused):
        endorse_pseudonym(trustee_keys[0], trustees, req, EPOCH + 1)
    # A share sealed for trustee 1 moved into trustee 0's slot does not open for trustee 0
    # (and changing the escrow breaks the proof of possession first).
    shares = req.escrow.sealed_shares
    swapped = replace(req.escrow, sealed_shares=(shares[1], shares[0], *shares[2:]))
    _, fresh = create_pseudonym(identity, trustees, EPOCH)
    with pytest.raises(EndorsementRefused):
        endorse_pseudonym(trustee_keys[0], trustees, replace(req, escrow=swapped), EPOCH)
    key2, req2 = create_pseudonym(identity, trustees, EPOCH)
    bad_escrow = replace(req2.escrow, sealed_shares=(shares[0], *req2.escrow.sealed_shares[1:]))
    forged = PseudonymRequest(bad_escrow, key2.sign(bad_escrow.digest(), b"gl/pseudonym/pop/v1"))
    with pytest.raises(EndorsementRefused):
        endorse_pseudonym(trustee_keys[0], trustees, forged, EPOCH)
    assert fresh.pseudonym_key != req.pseudonym_key  # rotation: fresh key every time


def _open(issued, trustees, trustee_keys, who, dispute=b"dispute-1"):
    _, req, cert = issued
    recorded = {dispute: cert.address}
    return [release_share(trustee_keys[j], trustees, cert, req.escrow, dispute, recorded)
            for j in who]


def test_k_trustees_open_exactly_one_identity(identity: SigningKey, issued,
                                              trustees: TrusteeSet,
                                              trustee_keys: list[TrusteeKeys]) -> None:
    _, req, cert = issued
    shares = _open(issued, trustees, trustee_keys, [4, 1, 2])
    record = open_identity(trustees, cert, req.escrow, b"dispute-1", shares)
    assert record.identity_address == identity.address
    assert record.pseudonym_address == cert.address
    assert record.trustee_ids == ("t1", "t2", "t4") and record.dispute_id == b"dispute-1"
    verify_opening(record, trustees)
    # The record cannot be re-pointed at another identity or dispute.
    with pytest.raises(OpeningRefused):
        verify_opening(replace(record, identity_address=b"\1" * 32), trustees)
    with pytest.raises(OpeningRefused):
        verify_opening(replace(record, dispute_id=b"dispute-2"), trustees)


def test_opening_needs_k_shares(issued, trustees: TrusteeSet,
                                trustee_keys: list[TrusteeKeys]) -> None:
    _, req, cert = issued
    shares = _open(issued, trustees, trustee_keys, [0, 3])
    with pytest.raises(OpeningRefused):
        open_identity(trustees, cert, req.escrow, b"dispute-1", shares)
    with pytest.raises(OpeningRefused):  # one trustee's share twice counts once
        open_identity(trustees, cert, req.escrow, b"dispute-1", shares + shares[:1])


def test_opening_needs_a_recorded_dispute_for_this_pseudonym(
        issued, trustees: TrusteeSet, trustee_keys: list[TrusteeKeys]) -> None:
    _, req, cert = issued
    with pytest.raises(OpeningRefused):
        release_share(trustee_keys[0], trustees, cert, req.escrow, b"made-up", {})
    with pytest.raises(OpeningRefused):
        release_share(trustee_keys[0], trustees, cert, req.escrow, b"d",
                      {b"d": b"\7" * 32})  # the dispute is about someone else
    # Shares released for another dispute do not combine into this one.
    other = _open(issued, trustees, trustee_keys, [0, 1, 2], dispute=b"dispute-9")
    with pytest.raises(OpeningRefused):
        open_identity(trustees, cert, req.escrow, b"dispute-1", other)


def test_a_wrong_released_share_is_its_trustees_own_evidence(
        identity: SigningKey, issued, trustees: TrusteeSet,
        trustee_keys: list[TrusteeKeys]) -> None:
    # A trustee that signs a share other than the one committed in the certified escrow is
    # named by that contradiction alone; the opening goes ahead with the honest shares.
    _, req, cert = issued
    shares = _open(issued, trustees, trustee_keys, [0, 1, 2, 3])
    bad = bytearray(shares[0].share)
    bad[-1] ^= 1
    liar = replace(shares[0], share=bytes(bad), signature=b"")
    liar = replace(liar, signature=trustee_keys[0].signing_key.sign(
        liar.signed_message(trustees.community), b"gl/pseudonym/open/v2"))
    record = open_identity(trustees, cert, req.escrow, b"dispute-1", [liar, *shares[1:]])
    assert record.identity_address == identity.address and record.faulty_trustees == ("t0",)
    verify_opening(record, trustees)


def test_an_honest_trustee_cannot_be_framed_by_an_inconsistent_dealer(
        identity: SigningKey, trustees: TrusteeSet, trustee_keys: list[TrusteeKeys]) -> None:
    # The owner deals trustee 4 a share off the polynomial (committed, so trustee 4 endorses
    # it). At opening trustee 4 releases exactly that share: it matches its commitment, so
    # it is the dealer's doing and nobody names trustee 4; the others open the escrow.
    from gridledger.crypto.kem import seal
    from gridledger.privacy.pseudonyms import OPENING_SHARE_BYTES, share_commitment

    key, req = create_pseudonym(identity, trustees, EPOCH)
    e = req.escrow
    junk, blind = b"\0" * (OPENING_SHARE_BYTES - 1) + b"\5", b"\6" * 32
    sealed = (*e.sealed_shares[:4], seal(trustees.trustees[4].kem_public_key, junk + blind,
                                        e.share_aad(4)))
    commits = (*e.share_commitments[:4], share_commitment(4, junk, blind))
    dealt = replace(e, sealed_shares=sealed, share_commitments=commits)
    req = PseudonymRequest(dealt, key.sign(dealt.digest(), b"gl/pseudonym/pop/v1"))
    cert = assemble_certificate(req, [endorse_pseudonym(t, trustees, req, EPOCH)
                                      for t in trustee_keys[2:5]])
    recorded = {b"d": cert.address}
    shares = [release_share(trustee_keys[j], trustees, cert, dealt, b"d", recorded)
              for j in (4, 0, 1, 2)]
    record = open_identity(trustees, cert, dealt, b"d", shares)
    assert record.identity_address == identity.address and record.faulty_trustees == ()
    assert "t4" not in record.trustee_ids
    verify_opening(record, trustees)


def test_a_trustee_refuses_a_share_that_does_not_match_its_commitment(
        identity: SigningKey, trustees: TrusteeSet, trustee_keys: list[TrusteeKeys]) -> None:
    key, req = create_pseudonym(identity, trustees, EPOCH)
    e = req.escrow
    commits = (b"\0" * 32, *e.share_commitments[1:])
    dealt = replace(e, share_commitments=commits)
    req = PseudonymRequest(dealt, key.sign(dealt.digest(), b"gl/pseudonym/pop/v1"))
    with pytest.raises(EndorsementRefused, match="commitment"):
        endorse_pseudonym(trustee_keys[0], trustees, req, EPOCH)
    endorse_pseudonym(trustee_keys[1], trustees, req, EPOCH)  # its own share is fine


def test_bogus_escrow_is_caught_at_opening(identity: SigningKey, trustees: TrusteeSet,
                                           trustee_keys: list[TrusteeKeys],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # A participant escrowing a record that does not bind its pseudonym (its identity key
    # signed something else) gets certified - trustees cannot see inside - but the opening
    # refuses the record as bogus, the owner's doing: no trustee is named.
    from gridledger.privacy.pseudonyms import escrow

    real = escrow.identity_records
    monkeypatch.setattr(escrow, "identity_records",
                        lambda key, address, binds, rb: real(key, address,
                                                             [b"something else"] * len(binds), rb))
    _key, req = create_pseudonym(identity, trustees, EPOCH)
    monkeypatch.undo()
    cert = assemble_certificate(req, [endorse_pseudonym(t, trustees, req, EPOCH)
                                      for t in trustee_keys[:3]])
    recorded = {b"d": cert.address}
    shares = [release_share(t, trustees, cert, req.escrow, b"d", recorded)
              for t in trustee_keys[:3]]
    with pytest.raises(OpeningRefused, match="bogus"):
        open_identity(trustees, cert, req.escrow, b"d", shares)


def test_the_escrow_names_the_owners_address_even_under_a_rotated_key(
        identity: SigningKey, trustees: TrusteeSet, trustee_keys: list[TrusteeKeys]) -> None:
    rotated = SigningKey.generate()
    _key, req = create_pseudonym(rotated, trustees, EPOCH, address=identity.address)
    cert = assemble_certificate(req, [endorse_pseudonym(t, trustees, req, EPOCH)
                                      for t in trustee_keys[:3]])
    shares = [release_share(t, trustees, cert, req.escrow, b"d", {b"d": cert.address})
              for t in trustee_keys[:3]]
    record = open_identity(trustees, cert, req.escrow, b"d", shares)
    assert record.identity_address == identity.address
    assert record.identity_key == rotated.public_key


def test_escrow_record_cannot_be_swapped(identity: SigningKey, trustees: TrusteeSet,
                                         trustee_keys: list[TrusteeKeys]) -> None:
    # Shares are sealed with the record's hash as associated data: grafting another
    # escrow's record onto them makes every trustee refuse to endorse.
    key, req = create_pseudonym(identity, trustees, EPOCH)
    _, other = create_pseudonym(identity, trustees, EPOCH)
    mixed = replace(req.escrow, record_ciphertext=other.escrow.record_ciphertext)
    forged = PseudonymRequest(mixed, key.sign(mixed.digest(), b"gl/pseudonym/pop/v1"))
    with pytest.raises(EndorsementRefused):
        endorse_pseudonym(trustee_keys[0], trustees, forged, EPOCH)


def test_forged_opening_share_is_ignored(issued, trustees: TrusteeSet,
                                         trustee_keys: list[TrusteeKeys]) -> None:
    _, req, cert = issued
    shares = _open(issued, trustees, trustee_keys, [0, 1])
    forged = OpeningShare(2, b"dispute-1", cert.digest(), shares[0].share, shares[0].blind,
                          shares[0].signature)
    with pytest.raises(OpeningRefused):
        open_identity(trustees, cert, req.escrow, b"dispute-1", [*shares, forged])
