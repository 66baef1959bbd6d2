"""Firmware read-only views, served by ``Application.query("firmware/<view>/<arg>")``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gridledger.ledger.block import quorum
from gridledger.ledger.modules.firmware import keeper
from gridledger.ledger.modules.firmware.types import Advisory, Release
from gridledger.ledger.state import State


def meter(state: State, cp: str) -> dict[str, Any]:
    """``firmware/meter/<cp>``: ``{cp, reported, quarantined, reason, meter, firmware,
    mismatch, sealed, unvouched, since, model, version}`` (``reported`` False: the meter
    never sent a reading; ``sealed``: ``firmware`` is a salted commitment, model and version
    unknown; ``unvouched``: sealed and no DSO vouch covers it yet — no market exposure)."""
    rec = keeper.meter_record(state, cp) if keeper.enforced(state) else None
    if rec is None:
        return {"cp": cp, "reported": False, "quarantined": False, "reason": None}
    rel = keeper.release_of_image(state, rec.firmware)
    reason = keeper.reason_of(state, rec)
    return {"cp": cp, "reported": True, "quarantined": reason is not None, "reason": reason,
            "meter": rec.meter, "firmware": rec.firmware, "mismatch": rec.mismatch,
            "sealed": bool(rec.sealed), "unvouched": keeper.unvouched(state, rec),
            "since": rec.since, "model": rel.manifest.model if rel else None,
            "version": rel.manifest.version if rel else None}


def quarantined(state: State, _arg: str) -> list[dict[str, Any]]:
    """``firmware/quarantined``: every quarantined cp with its reason, by cp."""
    if not keeper.enforced(state):
        return []
    out = []
    for cp, rec in keeper.meter_records(state):
        reason = keeper.reason_of(state, rec)
        if reason is not None:
            out.append({"cp": cp, "meter": rec.meter, "reason": reason,
                        "firmware": rec.mismatch or rec.firmware})
    return out


def _release(rid: bytes, rel: Release, needed: int) -> dict[str, Any]:
    m = rel.manifest
    return {"release": rid, "vendor": m.vendor, "model": m.model, "version": m.version,
            "image_sha3": m.image_sha3, "min_version": m.min_version, "status": rel.status,
            "published": rel.published, "approved": rel.approved, "dso": list(rel.dso),
            "validators": list(rel.validators), "needed": needed}


def releases(state: State, validators: list[bytes]) -> list[dict[str, Any]]:
    """``firmware/releases``: every release (manifest, status, approvals, validator quorum)."""
    needed = quorum(len(validators))
    return [_release(rid, rel, needed) for rid, rel in keeper.releases(state)]


def _advisory(adv: Advisory) -> dict[str, Any]:
    return {"advisory": adv.id, "vendor": adv.vendor, "model": adv.model,
            "versions": list(adv.versions), "severity": adv.severity, "source": adv.source,
            "status": adv.status, "issued": adv.issued, "in_force": adv.in_force,
            "dso": list(adv.dso), "validators": list(adv.validators)}


def advisories(state: State, _arg: str) -> list[dict[str, Any]]:
    """``firmware/advisories``: every advisory, by id."""
    return [_advisory(a) for a in keeper.advisories(state)]


def vendors(state: State, _arg: str) -> list[dict[str, Any]]:
    """``firmware/vendors``: registered vendors (name, key algorithm, account, models)."""
    return [{"name": v.name, "alg": v.alg, "pk": v.pk, "account": v.account,
             "models": list(v.models)} for v in keeper.vendors(state)]


def image(state: State, arg: str) -> dict[str, Any]:
    """``firmware/image/<sha3 hex>``: ``{image_sha3, problem}`` — what a meter attesting
    this image would be quarantined for (None: an approved, unadvised release)."""
    h = bytes.fromhex(arg)
    return {"image_sha3": h, "problem": keeper.firmware_status(state, h)}


def make_views(validator_set: Callable[[State], list[bytes]]) -> dict[str, Callable[[State, str], Any]]:
    return {"meter": meter, "quarantined": quarantined, "advisories": advisories,
            "vendors": vendors, "image": image,
            "releases": lambda state, _arg: releases(state, validator_set(state))}
