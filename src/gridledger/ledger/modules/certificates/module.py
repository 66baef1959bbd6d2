"""The certificates module: ``build(registry, market, metering) -> Module`` (wired in
``ledger/modules/catalog.py`` after the market, so issuance sees the block's settlement)."""

from __future__ import annotations

from gridledger.ledger.module import Module, MsgKind
from gridledger.ledger.modules.certificates.devices import DeviceBook
from gridledger.ledger.modules.certificates.errors import RULES
from gridledger.ledger.modules.certificates.expected import Market, Metering, Registry
from gridledger.ledger.modules.certificates.handlers import Handlers, init_genesis
from gridledger.ledger.modules.certificates.invariants import (
    Invariants,
    archive_accounted,
    storage_backed,
)
from gridledger.ledger.modules.certificates.issuance import Issuer
from gridledger.ledger.modules.certificates.types import (
    CANCEL,
    PSEUDONYM_CLASS,
    REGISTER_DEVICES,
    STORAGE_READING,
    STORE,
    TRANSFER,
    parse_cancel,
    parse_pseudonym_class,
    parse_register_devices,
    parse_storage_reading,
    parse_store,
    parse_transfer,
)
from gridledger.ledger.modules.certificates.views import HISTORY_VIEWS, VIEWS

NAME = "certificates"
VERSION = 1
HOLDERS = frozenset({"prosumer", "consumer", "dso"})
"""Who may hold, transfer and cancel GCs (trading identities, pseudonyms included, and the
DSO's grid account)."""


def build(registry: Registry, market: Market, metering: Metering) -> Module:
    """Certificates wired to ``registry`` (cp holders, meters), ``market`` (settled trades)
    and ``metering`` (readings, flags)."""
    book = DeviceBook(registry, metering)
    h = Handlers(registry, book)
    issuer = Issuer(registry, market, metering, book)
    inv = Invariants(metering)
    return Module(
        name=NAME,
        version=VERSION,
        messages=(MsgKind(REGISTER_DEVICES, parse_register_devices, h.register_devices,
                          frozenset({"dso"})),
                  MsgKind(PSEUDONYM_CLASS, parse_pseudonym_class, h.pseudonym_class,
                          frozenset({"dso"})),
                  MsgKind(STORAGE_READING, parse_storage_reading, h.storage_reading,
                          frozenset({"meter"})),
                  MsgKind(TRANSFER, parse_transfer, h.transfer, HOLDERS),
                  MsgKind(CANCEL, parse_cancel, h.cancel, HOLDERS),
                  MsgKind(STORE, parse_store, h.store, HOLDERS)),
        rules=RULES,
        init_genesis=init_genesis,
        end_block=issuer.end_block,
        invariants=(inv.open_hours, storage_backed, archive_accounted),
        views=VIEWS,
        history_views=HISTORY_VIEWS,
    )
