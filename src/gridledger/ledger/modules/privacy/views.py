"""Privacy read-only views, served by ``Application.query("privacy/<view>/<arg>")``."""

from __future__ import annotations

from typing import Any

from gridledger.ledger.modules.privacy import keeper
from gridledger.ledger.state import State


def config(state: State, _arg: str) -> dict[str, Any] | None:
    """``privacy/config``: the genesis privacy section (None: no privacy on this chain)."""
    cfg = keeper.config(state)
    return None if cfg is None else cfg.to_obj()


def roaming_partners(state: State, _arg: str) -> list[dict[str, Any]]:
    """``privacy/roaming_partners``: the foreign DSOs that may bill this community,
    ``{community, dso_id, alg, pk}`` each (what a home DSO checks a claim's signer against)."""
    cfg = keeper.config(state)
    return [] if cfg is None else [{"community": r.community, "dso_id": r.dso_id,
                                    "alg": r.alg, "pk": r.pk} for r in cfg.roaming_partners]


def epoch(state: State, arg: str) -> dict[str, Any]:
    """``privacy/epoch/<n>``: the epoch pool's record."""
    return keeper.get_epoch(state, int(arg)).to_obj()


def pseudonym(state: State, arg: str) -> dict[str, Any] | None:
    """``privacy/pseudonym/<addr hex>``: a registered pseudonym's record; ``{epoch, pruned:
    true}`` once it was pruned (``Pool.prune``)."""
    addr = bytes.fromhex(arg)
    rec = keeper.get_pseudonym(state, addr)
    if rec is None:
        epoch_ = keeper.pruned_epoch(state, addr)
        return None if epoch_ is None else {"epoch": epoch_, "pruned": True}
    return rec.to_obj()


def pseudonyms(state: State, arg: str) -> list[dict[str, Any]]:
    """``privacy/pseudonyms/<epoch>``: every pseudonym registered in the epoch, ``{address,
    **record}`` each, by address (the public records ``privacy/pseudonym`` serves one by one:
    a block explorer's epoch page)."""
    out = []
    for addr in keeper.pseudonyms_of_epoch(state, int(arg)):
        rec = keeper.get_pseudonym(state, addr)
        if rec is not None:
            out.append({"address": addr, **rec.to_obj()})
    return out


def roaming_seq(state: State, arg: str) -> int:
    """``privacy/roaming_seq/<addr hex>``: the account's next roaming sequence number."""
    return keeper.next_roaming_seq(state, bytes.fromhex(arg))


def aggregate(state: State, arg: str) -> dict[str, Any] | None:
    """``privacy/aggregate/<slot>:<feeder>``: a secure-aggregation round's result."""
    slot, _, feeder = arg.partition(":")
    rec = keeper.get_aggregate(state, int(slot), feeder)
    return None if rec is None else rec.to_obj()


VIEWS = {"config": config, "roaming_partners": roaming_partners, "epoch": epoch,
         "pseudonym": pseudonym, "pseudonyms": pseudonyms, "roaming_seq": roaming_seq,
         "aggregate": aggregate}
