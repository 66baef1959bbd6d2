"""Which key a member trades and meters with: the seam for pseudonymous trading.

Every place in the simulator that signs for a member or maps a ledger address back to a
member goes through an ``Identities``: the trading feature signs orders with
``trading_key``, the metering feature signs readings with ``meter_key``, and accounting
(fills, bills, honest totals) resolves addresses with ``owner``. Today's members act under
their own registered keys (``OwnKeys``); a privacy feature that trades and meters under
per-slot pseudonyms provides another implementation and installs it with
``SimContext.use_identities`` — nothing else in the engine changes. Connection points go
through it too: the DSO's envelopes and flags name ``ledger_cp(m, slot)``, and whatever the
ledger reports by cp is mapped back with ``owner_of_cp``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from gridledger.crypto.sig import SigningKey
from gridledger.ledger.modules.firmware.types import image_commitment
from gridledger.sim.community import Member


class Identities(Protocol):
    def trading_key(self, m: Member, slot: int) -> SigningKey:
        """The key ``m``'s orders (and claims) for ``slot`` are signed with."""
        ...

    def meter_key(self, m: Member, slot: int) -> SigningKey:
        """The key ``m``'s meter signs its reading of ``slot`` with."""
        ...

    def owner(self, addr: bytes) -> Member | None:
        """The member behind a ledger address (its own or one of its pseudonyms)."""
        ...

    def ledger_cp(self, m: Member, slot: int) -> str:
        """The connection point the ledger knows ``m``'s reading, envelope and flags of
        ``slot`` by (its own cp, or the stand-in cp of the slot's pseudonym)."""
        ...

    def owner_of_cp(self, cp: str) -> Member | None:
        """The member behind a connection point the ledger names (its own or a stand-in)."""
        ...

    def image_opening(self, m: Member, slot: int) -> tuple[bytes, bytes] | None:
        """(image, salt) of the sealed firmware image ``m``'s meter bound for the slot's
        pseudonym (what opens its commitment), or None: the image is in clear."""
        ...


class OwnKeys:
    """Members trade and meter under their own registered identities."""

    def __init__(self, members: Sequence[Member]) -> None:
        self._by_addr = {m.address: m for m in members}
        self._by_cp = {m.cp: m for m in members}

    def trading_key(self, m: Member, slot: int) -> SigningKey:
        return m.key

    def meter_key(self, m: Member, slot: int) -> SigningKey:
        return m.meter

    def owner(self, addr: bytes) -> Member | None:
        return self._by_addr.get(addr)

    def ledger_cp(self, m: Member, slot: int) -> str:
        return m.cp

    def owner_of_cp(self, cp: str) -> Member | None:
        return self._by_cp.get(cp)

    def image_opening(self, m: Member, slot: int) -> tuple[bytes, bytes] | None:
        return None


def attested_image(ids: Identities, m: Member, slot: int, image: bytes) -> bytes:
    """What ``m``'s meter attests in its reading of ``slot`` while running ``image``: the
    image, or under privacy mode's sealed images the salted commitment to it with the salt
    of the slot's pseudonym."""
    opening = ids.image_opening(m, slot)
    return image if opening is None else image_commitment(image, opening[1])
