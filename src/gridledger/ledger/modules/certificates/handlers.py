"""Certificate handlers: typed message -> keeper calls + events."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from gridledger.ledger.context import TxContext
from gridledger.ledger.modules.certificates import keeper
from gridledger.ledger.modules.certificates.devices import DeviceBook
from gridledger.ledger.modules.certificates.errors import (
    CertificateExceeded,
    CertificateNotActive,
    CertificateNotOwner,
    CertificateRecipientUnknown,
    CertificateToSelf,
    CertificateUnknown,
    ClaimExceedsConsumption,
    ClaimWindowClosed,
    DeviceCpUnknown,
    NotAMeter,
    OneStorageReadingPerSlot,
    StorageDeviceMissing,
    StorageOverCapacity,
    StorageReadingEarly,
    StorageReadingLate,
    StoreExceedsCharge,
)
from gridledger.ledger.modules.certificates.expected import Registry
from gridledger.ledger.modules.certificates.issuance import add_charge, add_matching
from gridledger.ledger.modules.certificates.types import (
    Bundle,
    Cancel,
    Device,
    Item,
    PseudonymClass,
    RegisterDevices,
    StorageReading,
    StorageReadingMsg,
    Store,
    Transfer,
    capacity_wh,
    hour_of,
    parse_config,
)
from gridledger.ledger.params import Params, load_params
from gridledger.ledger.state import State


class Handlers:
    """The certificates module's message handlers; ``registry`` is wired by the catalog."""

    def __init__(self, registry: Registry, book: DeviceBook) -> None:
        self.registry = registry
        self.book = book

    def register_devices(self, state: State, ctx: TxContext, msg: RegisterDevices) -> None:
        """``certificates/register_devices`` (dso): rule ``device-cp-unknown``."""
        for d in msg.devices:
            if self.registry.cp_holder(state, d.cp) is None:
                raise DeviceCpUnknown(f"no participant holds connection point {d.cp!r}")
            keeper.put_device(state, d.cp, Device(d.solar_w, d.storage_w, d.storage_wh,
                                                  d.efficiency_pct, ctx.block.slot_time))
        keeper.enable(state)
        ctx.emit("devices_registered", cps=[d.cp for d in msg.devices])

    def pseudonym_class(self, state: State, ctx: TxContext, msg: PseudonymClass) -> None:
        """``certificates/pseudonym_class`` (dso): the one device class every pseudonym's
        stand-in cp is certified under (replaces an earlier one; ``devices.DeviceBook``)."""
        keeper.put_pseudonym_class(state, Device(msg.solar_w, msg.storage_w, msg.storage_wh,
                                                 msg.efficiency_pct, ctx.block.slot_time))
        keeper.enable(state)
        ctx.emit("pseudonym_class_set", **msg.to_obj())

    def storage_reading(self, state: State, ctx: TxContext, msg: StorageReadingMsg) -> None:
        """``certificates/storage_reading`` (meter): rules ``storage-reading-not-meter``,
        ``storage-device-missing``, ``storage-reading-early``, ``storage-reading-late``,
        ``one-storage-reading-per-slot``, ``storage-over-capacity``."""
        meter = self.registry.participant(state, ctx.sender)
        cp = meter.meter_of if meter is not None else None
        if not cp:
            raise NotAMeter("the sender is not bound to a connection point")
        dev = self.book.device(state, cp)
        if dev is None or not dev.storage_w:
            raise StorageDeviceMissing(f"connection point {cp!r} has no registered storage")
        p = load_params(state)
        first = (msg.slot + 1) * p.slot_seconds
        last = first + p.settle_window_s
        now = ctx.block.slot_time
        if now < first:
            raise StorageReadingEarly(f"slot {msg.slot} ends at {first}, block time is {now}")
        if now >= last:
            raise StorageReadingLate(f"storage readings for slot {msg.slot} closed at {last}")
        if keeper.storage_reading(state, msg.slot, cp) is not None:
            raise OneStorageReadingPerSlot(f"cp {cp!r} already reported slot {msg.slot}")
        bound = capacity_wh(dev.storage_w, p.slot_seconds)
        if max(msg.charged_wh, msg.discharged_wh) > bound:
            raise StorageOverCapacity(f"{max(msg.charged_wh, msg.discharged_wh)} Wh in one slot "
                                      f"> {bound} Wh for {dev.storage_w} W")
        keeper.put_storage_reading(state, msg.slot, cp, StorageReading(
            msg.charged_wh, msg.discharged_wh, ctx.sender, 0))
        ctx.emit("storage_reading", slot=msg.slot, cp=cp, charged_wh=msg.charged_wh,
                 discharged_wh=msg.discharged_wh)

    def transfer(self, state: State, ctx: TxContext, msg: Transfer) -> None:
        """``certificates/transfer``: rules ``certificate-to-self``,
        ``certificate-recipient-unknown`` and those of ``_take``."""
        if msg.to == ctx.sender:
            raise CertificateToSelf("transfer to self")
        if self.registry.participant(state, msg.to) is None:
            raise CertificateRecipientUnknown(f"{msg.to.hex()[:16]}… is not a registered "
                                              "participant")
        p = load_params(state)
        moved = 0
        for item in msg.items:
            head = _take(state, ctx.sender, item, p)
            keeper.put_bundle(state, item.slot, item.start, replace(head, owner=msg.to))
            moved += item.energy_wh
        keeper.add_totals(state, transferred_wh=moved)
        ctx.emit("certificates_transferred", **{"from": ctx.sender, "to": msg.to,
                                                "energy_wh": moved,
                                                "items": _items_event(msg.items)})

    def cancel(self, state: State, ctx: TxContext, msg: Cancel) -> None:
        """``certificates/cancel``: rules of ``_take`` and ``claim-exceeds-consumption``.
        Cancellation is final: the bundle is ``cancelled`` for good, its GCs counted once."""
        p = load_params(state)
        total = 0
        for item in msg.items:
            head = _take(state, ctx.sender, item, p)
            hour = hour_of(item.slot, p.slot_seconds)
            m = keeper.matching(state, hour, ctx.sender)
            room = m.consumption_wh - m.cancelled_wh - m.stored_wh
            if item.energy_wh > room:
                raise ClaimExceedsConsumption(
                    f"hour {hour}: {item.energy_wh} Wh > {room} Wh of metered import unclaimed")
            keeper.put_matching(state, hour, ctx.sender, add_matching(m, cancelled_wh=item.energy_wh))
            keeper.put_bundle(state, item.slot, item.start, replace(
                head, status="cancelled", cancelled_at=ctx.block.slot_time, purpose="consumption"))
            total += item.energy_wh
        keeper.add_totals(state, cancelled_wh=total)
        ctx.emit("certificates_cancelled", owner=ctx.sender, purpose="consumption",
                 energy_wh=total, items=_items_event(msg.items))

    def store(self, state: State, ctx: TxContext, msg: Store) -> None:
        """``certificates/store``: rules of ``_take``, ``storage-device-missing``,
        ``store-exceeds-charge`` and ``claim-exceeds-consumption`` (the battery charged from
        the sender's metered import in the GCs' slot)."""
        holder = self.registry.participant(state, ctx.sender)
        cp = holder.cp if holder is not None else None
        dev = self.book.device(state, cp) if cp else None
        if cp is None or dev is None or not dev.storage_w:
            raise StorageDeviceMissing("the sender's connection point has no registered storage")
        p = load_params(state)
        acc = keeper.storage_account(state, cp)
        total = 0
        for item in msg.items:
            head = _take(state, ctx.sender, item, p)
            sr = keeper.storage_reading(state, item.slot, cp)
            if sr is None:
                raise StoreExceedsCharge(f"slot {item.slot}: no storage reading, nothing charged")
            room = sr.charged_wh - sr.stored_wh
            if item.energy_wh > room:
                raise StoreExceedsCharge(f"slot {item.slot}: {item.energy_wh} Wh > {room} Wh "
                                         "charged and not yet stored")
            hour = hour_of(item.slot, p.slot_seconds)
            m = keeper.matching(state, hour, ctx.sender)
            free = m.consumption_wh - m.cancelled_wh - m.stored_wh
            if item.energy_wh > free:
                raise ClaimExceedsConsumption(
                    f"hour {hour}: {item.energy_wh} Wh > {free} Wh of metered import unclaimed")
            keeper.put_storage_reading(state, item.slot, cp,
                                       replace(sr, stored_wh=sr.stored_wh + item.energy_wh))
            keeper.put_matching(state, hour, ctx.sender, add_matching(m, stored_wh=item.energy_wh))
            keeper.put_bundle(state, item.slot, item.start, replace(
                head, status="cancelled", cancelled_at=ctx.block.slot_time, purpose="storage"))
            acc = add_charge(acc, item.slot, item.start, head.energy_source, item.energy_wh,
                             dev.efficiency_pct)
            total += item.energy_wh
        keeper.put_storage_account(state, cp, acc)
        keeper.add_totals(state, stored_wh=total)
        ctx.emit("certificates_cancelled", owner=ctx.sender, purpose="storage", energy_wh=total,
                 items=_items_event(msg.items))


def _take(state: State, sender: bytes, item: Item, p: Params) -> Bundle:
    """The first ``item.energy_wh`` GCs of the sender's active bundle ``item``, split off as
    their own bundle at ``item.start``. Rules ``certificate-unknown``,
    ``certificate-not-owner``, ``certificate-not-active``, ``certificate-exceeded``,
    ``claim-window-closed`` (also for a bundle of an archived hour)."""
    b = keeper.bundle(state, item.slot, item.start)
    if b is None:
        hour = hour_of(item.slot, p.slot_seconds)
        if keeper.archive(state, hour) is not None:
            # its records left live state with the hour's archive: closed long ago
            raise ClaimWindowClosed(f"the hour of slot {item.slot} is closed and archived")
        raise CertificateUnknown(f"no bundle {item.slot}:{item.start}")
    if b.owner != sender:
        raise CertificateNotOwner(f"bundle {item.slot}:{item.start} is not the sender's")
    if b.status != "active":
        raise CertificateNotActive(f"bundle {item.slot}:{item.start} is {b.status}")
    if item.energy_wh > b.size(item.start):
        raise CertificateExceeded(f"bundle {item.slot}:{item.start} holds "
                                  f"{b.size(item.start)} Wh, not {item.energy_wh}")
    if not keeper.is_open(state, hour_of(item.slot, p.slot_seconds)):
        raise ClaimWindowClosed(f"the hour of slot {item.slot} is closed")
    return keeper.split(state, item.slot, item.start, b, item.energy_wh)


def _items_event(items: tuple[Item, ...]) -> list[list[int]]:
    return [[i.slot, i.start, i.energy_wh] for i in items]


def init_genesis(state: State, genesis: dict[str, Any]) -> None:
    """Store the genesis section ``certificates`` (issuing-body metadata, claim window);
    nothing is written without one, so chains that do not use certificates keep their roots."""
    section = genesis.get("certificates")
    if section is None:
        return
    keeper.put_config(state, parse_config(dict(section)))
    keeper.enable(state)
