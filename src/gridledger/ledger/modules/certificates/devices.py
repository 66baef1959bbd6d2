"""Which device stands behind a connection point, for issuance and the battery sub-meter.

A household's own cp has the device the DSO registered for it (``register_devices``). Under
privacy mode a household meters under per-slot stand-in cps ``ps:<pseudonym>``; registering
its devices per pseudonym would label every pseudonym with its household's equipment (a
linkage channel across slots). Instead every pseudonym's stand-in cp is certified under ONE
class the DSO attests for the whole community (``pseudonym_class``: rated bounds over its
households), so the class says nothing about which household a pseudonym is. The per-device
capacity check then rests with the DSO, which knows its customers' devices and flags a
reading no device could produce; the class bound is the ledger's backstop.
"""

from __future__ import annotations

from gridledger.ledger.modules.certificates import keeper
from gridledger.ledger.modules.certificates.expected import Metering, Registry
from gridledger.ledger.modules.certificates.types import Device
from gridledger.ledger.state import State

PSEUDONYM_ROLE = "pseudonym"


class DeviceBook:
    """Devices by cp: registered ones, and the pseudonym class for pseudonyms' stand-in cps."""

    def __init__(self, registry: Registry, metering: Metering) -> None:
        self.registry = registry
        self.metering = metering

    def is_pseudonym_cp(self, state: State, cp: str) -> bool:
        """Whether ``cp`` is held by a registered pseudonym (its stand-in cp)."""
        holder = self.registry.cp_holder(state, cp)
        p = self.registry.participant(state, holder) if holder is not None else None
        return p is not None and PSEUDONYM_ROLE in p.roles

    def device(self, state: State, cp: str) -> Device | None:
        """The device behind ``cp``: its registration, else the pseudonym class for a
        pseudonym's stand-in cp, else None."""
        d = keeper.device(state, cp)
        if d is not None:
            return d
        cls = keeper.pseudonym_class(state)
        return cls if cls is not None and self.is_pseudonym_cp(state, cp) else None

    def of_slot(self, state: State, slot: int) -> list[tuple[str, Device]]:
        """Every registered device, and every pseudonym cp with a reading in ``slot`` under
        the class, in cp byte order."""
        out = dict(keeper.devices(state))
        cls = keeper.pseudonym_class(state)
        if cls is not None:
            for r in self.metering.readings_for_slot(state, slot):
                if r.cp not in out and self.is_pseudonym_cp(state, r.cp):
                    out[r.cp] = cls
        return sorted(out.items(), key=lambda kv: kv[0].encode())
