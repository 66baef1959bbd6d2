"""Readings under pseudonyms, vouched for by the meter itself.

A pseudonym's readings must come from the household's meter, not from a key the member
holds (a member could otherwise report any reading it likes). So for each pseudonym the
*meter* makes a fresh ML-DSA reading key (FIPS 204; it never leaves the meter) and signs,
with its registered device key, the list of (pseudonym address -> reading key) bindings it
holds for the epoch (``MeterStatement``). The DSO — which holds its customers' meter data by
regulation and receives each connection point's readings anyway — checks every statement
against the meter registered for the connection point and against that member's tickets
in the epoch pool, and attests the epoch's bindings as one Merkle root (``attest_readings``;
ledger ``privacy/attest``). A pseudonym registers only with an attested reading key, which
the ledger then makes the meter of the pseudonym's stand-in connection point: its readings
are ``metering/reading`` transactions signed by that key, like every other meter's.

What this gives (issue 21 item 4):

* readings under a pseudonym are vouched for by the meter's device key;
* a member's pseudonyms are bounded by *its own* tickets: the DSO attests at most that many
  bindings for its meter, and a binding names the pseudonym it was made for, so a pseudonym
  cannot ride on another member's spare ticket;
* the meter's signed statement is standalone evidence of who owns a pseudonym, used when an
  owner dealt an escrow that cannot be opened (``privacy/attribute``).

What it costs: the DSO learns which pseudonyms are its customers' (it could already match
their readings with the ones it receives); nobody else does. The bindings are sorted by
leaf hash in the attested tree, so the tree groups nobody's pseudonyms together.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property

from gridledger.crypto.hashing import tagged_hash
from gridledger.crypto.merkle import inclusion_proof, inclusion_proofs, root_of_hashes
from gridledger.crypto.shamir import RandomBytes
from gridledger.crypto.sig import PublicKey, SigningKey
from gridledger.ledger.modules.firmware.types import image_commitment
from gridledger.privacy.errors import PrivacyError

CTX_METER_BINDINGS = b"gl/privacy/meter-bindings/v1"


def reading_leaf(community: str, epoch: int, pseudonym: bytes, reading_key: PublicKey,
                 firmware: bytes | None = None, *, sealed: bool = False) -> bytes:
    """One binding: the reading key a meter holds for ``pseudonym`` in ``epoch`` and, when
    given, the SHA3 hash of the firmware image the meter runs (the pseudonym's firmware of
    record from registration on; absent: the leaf of a meter that does not attest one) —
    or, ``sealed``, the salted commitment to that image (``image_commitment``)."""
    parts = [community.encode(), epoch.to_bytes(8, "big"), pseudonym,
             reading_key.alg.encode(), reading_key.raw]
    if firmware is not None:
        parts += [b"sealed", firmware] if sealed else [firmware]
    return tagged_hash("gl/privacy/reading-leaf", *parts)


def bindings_message(community: str, epoch: int, cp: str, root: bytes, count: int) -> bytes:
    """What a meter's device key signs over its bindings of one epoch."""
    return tagged_hash("gl/privacy/meter-bindings", community.encode(),
                       epoch.to_bytes(8, "big"), cp.encode(), root, count.to_bytes(4, "big"))


@dataclass(frozen=True)
class MeterStatement:
    """A meter's device-signed list of the reading keys it holds for pseudonyms of an epoch."""

    community: str
    epoch: int
    cp: str
    bindings: tuple[tuple[bytes, PublicKey], ...]  # (pseudonym address, reading key)
    signature: bytes = b""
    firmware: bytes | None = None
    """The image hash the meter attests it runs (bound into every leaf; None: not attested)."""
    salts: tuple[bytes, ...] | None = None
    """Sealed images (privacy mode): one secret 32-byte salt per binding, in order; each
    leaf then binds ``image_commitment(firmware, salt)``, not the image. The statement goes
    to the DSO only (off the ledger), so the DSO knows each pseudonym's image and salt."""

    def attested(self, i: int) -> bytes | None:
        """What binding ``i``'s leaf binds: the image, its salted commitment, or None."""
        if self.firmware is None or self.salts is None:
            return self.firmware
        return image_commitment(self.firmware, self.salts[i])

    def leaves(self) -> list[bytes]:
        """The bindings' leaves, in the statement's order."""
        sealed = self.salts is not None
        return [reading_leaf(self.community, self.epoch, p, k, self.attested(i), sealed=sealed)
                for i, (p, k) in enumerate(self.bindings)]

    def root(self) -> bytes:
        """Merkle root over ``leaves`` (what the device key signs)."""
        return root_of_hashes(self.leaves())

    def signed_message(self) -> bytes:
        """``bindings_message`` of this statement."""
        return bindings_message(self.community, self.epoch, self.cp, self.root(),
                                len(self.bindings))

    def evidence(self, pseudonym: bytes) -> dict[str, object]:
        """The ``privacy/attribute`` evidence that ``pseudonym`` is this meter's household's:
        the signed root, the leaf's position and its Merkle path."""
        for i, (p, _) in enumerate(self.bindings):
            if p == pseudonym:
                return {"cp": self.cp, "count": len(self.bindings), "root": self.root(),
                        "index": i, "path": inclusion_proof(self.leaves(), i),
                        "device_sig": self.signature}
        raise PrivacyError("the statement has no binding for this pseudonym")


def issue_reading_keys(device_key: SigningKey, community: str, cp: str, epoch: int,
                       pseudonyms: Sequence[bytes], *, alg: str = "ml-dsa-44",
                       firmware: bytes | None = None, seal: bool = False,
                       random_bytes: RandomBytes = os.urandom
                       ) -> tuple[dict[bytes, SigningKey], MeterStatement]:
    """Run in the meter: one fresh reading key per pseudonym address (from ``random_bytes``:
    OS randomness, a seeded stream in simulations), and the device-signed statement of the
    bindings (with ``firmware``, the hash of the image it runs, bound into each — or, with
    ``seal``, a salted commitment to it under a fresh secret salt per pseudonym, which only
    the meter and the DSO hold). Returns (pseudonym -> reading key, the statement for the
    DSO)."""
    if len(set(pseudonyms)) != len(pseudonyms) or not pseudonyms:
        raise PrivacyError("one reading key per distinct pseudonym, at least one")
    keys = {p: SigningKey.from_seed(alg, random_bytes(32)) for p in pseudonyms}
    salts = tuple(random_bytes(32) for _ in pseudonyms) if seal and firmware is not None else None
    st = MeterStatement(community, epoch, cp, tuple((p, keys[p].public_key) for p in pseudonyms),
                        firmware=firmware, salts=salts)
    return keys, replace(st, signature=device_key.sign(st.signed_message(), CTX_METER_BINDINGS))


def verify_statement(st: MeterStatement, device_key: PublicKey) -> bool:
    """Whether ``st`` is signed by ``device_key`` (the meter registered for ``st.cp``)."""
    return device_key.verify(st.signed_message(), st.signature, CTX_METER_BINDINGS)


@dataclass(frozen=True)
class Attestation:
    """The DSO's attested reading keys of one epoch: leaves sorted by hash, and the root."""

    community: str
    epoch: int
    leaves: tuple[bytes, ...]

    @cached_property
    def root(self) -> bytes:
        return root_of_hashes(list(self.leaves))

    @property
    def count(self) -> int:
        return len(self.leaves)

    def index_of(self, pseudonym: bytes, reading_key: PublicKey,
                 firmware: bytes | None = None, *, sealed: bool = False) -> int:
        """Position of a binding's leaf (``KeyError`` if the DSO did not attest it)."""
        return self._positions[reading_leaf(self.community, self.epoch, pseudonym,
                                            reading_key, firmware, sealed=sealed)]

    @cached_property
    def _positions(self) -> dict[bytes, int]:
        return {leaf: i for i, leaf in enumerate(self.leaves)}

    def proof(self, pseudonym: bytes, reading_key: PublicKey, firmware: bytes | None = None,
              *, sealed: bool = False) -> tuple[int, list[bytes]]:
        """(index, Merkle path) of a binding, for ``privacy/register``."""
        i = self.index_of(pseudonym, reading_key, firmware, sealed=sealed)
        return i, inclusion_proof(list(self.leaves), i)

    def proofs(self) -> list[tuple[int, list[bytes]]]:
        """(index, Merkle path) of every leaf in order, the tree built once."""
        return list(enumerate(inclusion_proofs(list(self.leaves))))


def attest_readings(community: str, epoch: int, statements: Sequence[MeterStatement],
                    meter_keys: Mapping[str, PublicKey],
                    tickets: Mapping[str, int]) -> Attestation:
    """The DSO's check of its meters' statements for an epoch (pure); raises ``PrivacyError``.

    ``meter_keys``: connection point -> its registered meter key; ``tickets``: connection
    point -> the tickets its member bought in the epoch pool (``pool_joined`` events).
    Each statement must be signed by the meter of its connection point, and a connection
    point's bindings may not exceed its member's tickets; pseudonyms and reading keys must be
    distinct across the whole epoch.
    """
    per_cp: dict[str, int] = {}
    leaves: list[bytes] = []
    seen: set[bytes] = set()
    for st in statements:
        key = meter_keys.get(st.cp)
        if st.community != community or st.epoch != epoch:
            raise PrivacyError(f"statement of {st.cp!r} is for another community or epoch")
        if key is None or not verify_statement(st, key):
            raise PrivacyError(f"statement of {st.cp!r} is not signed by its registered meter")
        per_cp[st.cp] = per_cp.get(st.cp, 0) + len(st.bindings)
        if per_cp[st.cp] > tickets.get(st.cp, 0):
            raise PrivacyError(f"{st.cp!r} holds {tickets.get(st.cp, 0)} tickets, its meter "
                               f"binds {per_cp[st.cp]} pseudonyms")
        for p, k in st.bindings:
            if p in seen or k.raw in seen:
                raise PrivacyError("a pseudonym or reading key appears twice in the epoch")
            seen.update((p, k.raw))
        leaves += st.leaves()
    return Attestation(community, epoch, tuple(sorted(leaves)))
