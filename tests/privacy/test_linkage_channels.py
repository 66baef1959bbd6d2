"""The curious validator's chaining (``privacy.attacks.chain_pseudonyms``) uses every channel a
ledger shows: two households whose readings, envelopes and orders look alike are told apart
by the firmware image their meters attest, or by a battery's discharge reported under the
certificates' sub-meter reading — and not without those channels."""

from __future__ import annotations

import numpy as np

from gridledger.privacy.attacks import SlotView, chain_pseudonyms

NAN = np.nan


def _view(slot: int, names: tuple[bytes, bytes], image: tuple[float, float] | None,
          storage: tuple[float, float] | None) -> SlotView:
    k = len(names)
    return SlotView(slot, names, np.array([100.0, 100.0]), np.full((k, 2), NAN),
                    np.full((k, 3), NAN),
                    None if storage is None else np.array(storage),
                    None if image is None else np.array(image))


def _linked(chains: list[list[bytes]]) -> bool:
    """Whether each chain is one household's (a0 with a1, b0 with b1)."""
    return sorted(sorted(c) for c in chains) == [[b"a0", b"a1"], [b"b0", b"b1"]]


def test_the_image_channel_links_alike_pseudonyms() -> None:
    # slot 2 lists b's pseudonym first: without a channel the assignment is a coin toss
    # that keeps the order, so it pairs a0 with b1
    with_image = chain_pseudonyms([_view(1, (b"a0", b"b0"), (0.0, 1.0), None),
                                   _view(2, (b"b1", b"a1"), (1.0, 0.0), None)])
    blind = chain_pseudonyms([_view(1, (b"a0", b"b0"), None, None),
                              _view(2, (b"b1", b"a1"), None, None)])
    assert _linked(with_image) and not _linked(blind)


def test_the_battery_discharge_channel_links_alike_pseudonyms() -> None:
    with_storage = chain_pseudonyms([_view(1, (b"a0", b"b0"), None, (300.0, 0.0)),
                                     _view(2, (b"b1", b"a1"), None, (0.0, 250.0))])
    assert _linked(with_storage)
