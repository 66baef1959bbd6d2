"""Surveillance types: the detectors' thresholds, what is watched between blocks, findings.

What the detectors follow (REMIT, Regulation (EU) 1227/2011, Art. 2(2) and Art. 5; ACER
guidance, see ``README.md``): an order or trade that gives false or misleading signals
(Art. 2(2)(a)(i): wash trades, layering and spoofing) or secures the price at an artificial
level (Art. 2(2)(a)(ii): economic withholding). The thresholds are chain configuration
(genesis section ``surveillance``), integers like every other parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

from gridledger.errors import ConfigError
from gridledger.ledger.record import Record, optional

SECTION = "surveillance"
"""Genesis section; a chain without it has no surveillance (the module stays idle)."""

Kind = Literal["withholding", "layering", "wash-trade", "physical-withholding"]
KINDS: tuple[Kind, ...] = ("withholding", "layering", "wash-trade", "physical-withholding")
Side = Literal["buy", "sell"]

BASIS: dict[Kind, str] = {
    "withholding": "REMIT Art. 2(2)(a)(ii) securing an artificial price; ACER Guidance "
                   "6.4.1 economic capacity withholding",
    "layering": "REMIT Art. 2(2)(a)(i) false or misleading signals; ACER Guidance Note "
                "1/2019 layering and spoofing",
    "wash-trade": "REMIT Art. 2(2)(a)(i); ACER Guidance Note 2/2017 wash trades (no change "
                  "of beneficial interest or market risk)",
    "physical-withholding": "REMIT Art. 2(2)(a)(ii) securing an artificial price; ACER "
                            "Guidance 6.4.1 physical capacity withholding (metered surplus "
                            "kept off a short market)",
}
"""The rule each kind of finding follows, recorded in the finding."""

MAX_PARAM = 10**9


@dataclass(frozen=True)
class Config(Record):
    """``sv/cfg``: the detectors' thresholds (present iff genesis has the section).

    * withholding (conduct and impact test, as US ISOs mitigate market power, e.g. NYISO
      Market Services Tariff Att. H): an offer fails *conduct* when its limit is above
      ``conduct_pct`` % of the retail tariff (no buyer has a reason to pay more than its
      grid alternative, no seller a reason to ask it); it has *impact* when clearing the
      book with such offers at their reference level (sell: feed-in tariff, buy: retail
      tariff) moves the volume-weighted price by at least ``impact_min_micro_per_kwh``
      (default 1: any price effect — only offers beyond the conduct threshold are tested,
      and no honest offer is there) or lets energy trade that would not. Both: the offers
      are mitigated to their reference level before the slot clears.
    * layering: an owner whose visible volume on one side of a slot's book (seen at a
      block boundary) shrank by at least ``layering_min_wh`` before the gate, at least
      ``layering_share_pct`` % of that side's peak visible volume and at least
      ``layering_own_pct`` % of its own peak.
    * wash trades: a pair of identities whose trades with each other over the last
      ``wash_window_slots`` cleared slots change direction at least ``wash_reversals``
      times and net to at most ``wash_net_pct`` % of their gross volume.
    * physical withholding (after settlement, on the meters' own readings): a holder whose
      meter exported at least ``physical_min_wh`` in a slot where buyers' demand went
      unmet, while it offered at most ``physical_offered_pct`` % of what it could offer
      (its export, within the DSO's export envelope and within what its money could back
      as delivery deposit), and at least ``physical_min_wh`` of the unoffered surplus could
      have served the unmet demand.
    """

    conduct_pct: int = 120
    impact_min_micro_per_kwh: int = 1
    layering_min_wh: int = 1_000
    layering_share_pct: int = 25
    layering_own_pct: int = 80
    wash_window_slots: int = 16
    wash_reversals: int = 2
    wash_net_pct: int = 10
    physical_min_wh: int = 1_000
    physical_offered_pct: int = 20


def parse_config(raw: object) -> Config:
    """The genesis section: a map of (some of) ``Config``'s fields, each an integer in
    [0, 1e9] (``wash_window_slots`` 1..96, percentages 1..1000). Raises ``ConfigError``."""
    if not isinstance(raw, dict):
        raise ConfigError(f"genesis '{SECTION}' must be a map of thresholds")
    names = {f.name for f in fields(Config)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"genesis '{SECTION}' has unknown thresholds {unknown}")
    for name, v in raw.items():
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= MAX_PARAM:
            raise ConfigError(f"genesis '{SECTION}.{name}' must be an integer in [0, 1e9]")
    cfg = Config(**raw)
    if not 1 <= cfg.wash_window_slots <= 96:
        raise ConfigError(f"genesis '{SECTION}.wash_window_slots' must be in 1..96")
    for name in ("conduct_pct", "layering_share_pct", "layering_own_pct", "wash_net_pct",
                 "physical_offered_pct"):
        if not 1 <= getattr(cfg, name) <= 1000:
            raise ConfigError(f"genesis '{SECTION}.{name}' must be a percentage in 1..1000")
    if cfg.wash_reversals < 1:
        raise ConfigError(f"genesis '{SECTION}.wash_reversals' must be at least 1")
    return cfg


@dataclass(frozen=True)
class Visible(Record):
    """One owner's standing on one side of an open slot's book, as of the last block
    boundary: visible volume now, its peak, and what it withdrew (cancels, replaces with
    less) while the slot was open."""

    owner: bytes
    side: Side
    energy_wh: int
    peak_wh: int
    withdrawn_wh: int


@dataclass(frozen=True)
class Watch(Record):
    """``sv/w/<slot>``: the slot's visible book per owner and side, and each side's peak
    visible volume (``peak_buy_wh``, ``peak_sell_wh``), until the slot clears."""

    entries: tuple[Visible, ...]
    peak_buy_wh: int
    peak_sell_wh: int


@dataclass(frozen=True)
class Flow(Record):
    """Net energy between a pair in one cleared slot: ``a`` < ``b`` (bytes), ``net_wh`` > 0
    when ``a`` sold to ``b``."""

    a: bytes
    b: bytes
    net_wh: int


@dataclass(frozen=True)
class Flows(Record):
    """``sv/f/<slot>``: the slot's pair flows (ascending by pair), kept for the wash window."""

    flows: tuple[Flow, ...]


@dataclass(frozen=True)
class Offered(Record):
    """One holder's sell volume on a slot's final book (Wh)."""

    owner: bytes
    energy_wh: int


@dataclass(frozen=True)
class Supply(Record):
    """``sv/k/<slot>``: what a slot's final book offered, kept from clearing until the
    slot settles (physical withholding compares it with the meters): each seller's volume,
    the buy volume bid at or above the feed-in tariff (``buy_wh``), the DSO's export
    envelopes (``envelopes``: (cp, export max Wh)), and the most each holder of an
    envelope or an offer could have offered by the delivery deposit its money backed
    (``backing``: its offered volume + spendable balance / its deposit rate, Wh)."""

    offered: tuple[Offered, ...]
    buy_wh: int
    envelopes: tuple[tuple[str, int], ...]
    backing: tuple[Offered, ...] = ()


@dataclass(frozen=True)
class Offer(Record):
    """An order a finding is about: the limit it had and, if mitigated, the one it cleared at;
    for layering the volume withdrawn (``withdrawn_wh``); for physical withholding the
    volume offered (``energy_wh``), the metered export (``metered_wh``) and the surplus kept
    off the short market (``withdrawn_wh``)."""

    owner: bytes
    side: Side
    energy_wh: int
    price_micro_per_kwh: int | None = optional()
    order: bytes | None = optional()
    mitigated_micro_per_kwh: int | None = optional()
    withdrawn_wh: int | None = optional()
    metered_wh: int | None = optional()


@dataclass(frozen=True)
class Finding(Record):
    """``sv/x/<id:8>``: one finding and the data behind it.

    ``price_micro_per_kwh`` / ``mitigated_price_micro_per_kwh``: the volume-weighted price
    the book would clear at as submitted and with the offers mitigated (withholding);
    ``peak_wh``: the side's peak visible volume (layering); ``gross_wh``, ``net_wh``,
    ``reversals``, ``slots``: the pair's trades over the window (wash trades);
    ``volume_wh``, ``unmet_wh``: the volume traded and the buy volume (bid at or above the
    feed-in tariff) left unmet (physical withholding).
    """

    id: int
    kind: Kind
    slot: int
    height: int
    basis: str
    subjects: tuple[bytes, ...]
    offers: tuple[Offer, ...]
    price_micro_per_kwh: int | None = optional()
    mitigated_price_micro_per_kwh: int | None = optional()
    volume_wh: int | None = optional()
    mitigated_volume_wh: int | None = optional()
    peak_wh: int | None = optional()
    gross_wh: int | None = optional()
    net_wh: int | None = optional()
    reversals: int | None = optional()
    slots: tuple[int, ...] | None = optional()
    unmet_wh: int | None = optional()

    def event(self) -> dict[str, Any]:
        """The ``market_abuse`` block event (the record's map, typed)."""
        return {"type": "market_abuse", **self.to_obj()}
