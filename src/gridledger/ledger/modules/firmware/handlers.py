"""Firmware handlers: releases, approvals, advisories and patches; genesis vendors.

**Quorum rule.** A release is approved, and an advisory from the DSO or a validator comes
into force, in the transaction where both hold: the DSO has approved, and approvals from
members of the *current* validator set reach ``quorum(n)`` (``ledger.block.quorum``, the
quorum that certifies blocks). The DSO answers for the grid (meter firmware switches
load and reports the energy it settles on), the validators for the ledger; neither side,
nor the vendor with f validators, can push firmware alone. Approvals of validators removed
since no longer count. A vendor's advisory about its own model is in force at once: a
vendor that says its firmware is vulnerable is believed (it can only quarantine its own
meters, which it could brick anyway).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gridledger.crypto.sig import address_of, verify_signature
from gridledger.errors import ConfigError, RejectedTx
from gridledger.ledger.block import quorum
from gridledger.ledger.context import TxContext
from gridledger.ledger.modules.firmware import keeper
from gridledger.ledger.modules.firmware.errors import (
    AdvisoryExists,
    AlreadyApproved,
    ApprovalExists,
    ImageOpening,
    NotApprover,
    NotVendor,
    PatchUpgradePath,
    PatchWrongModel,
    ReleaseAdvised,
    ReleaseExists,
    ReleaseUnapproved,
    TooManyOpen,
    UnknownAdvisory,
    UnknownMeter,
    UnknownModel,
    UnknownRelease,
    UnknownVendor,
    VendorSignature,
    VouchBackwards,
)
from gridledger.ledger.modules.firmware.expected import Authorities
from gridledger.ledger.modules.firmware.types import (
    MANIFEST_CONTEXT,
    MAX_MODELS,
    MAX_OPEN,
    MAX_VENDORS,
    VENDOR_ALG,
    Advisory,
    Approve,
    Config,
    IssueAdvisory,
    Manifest,
    MeterFirmware,
    Patch,
    PublishRelease,
    Release,
    Vendor,
    Vouch,
    VouchSealed,
    is_name,
    parse_manifest,
)
from gridledger.ledger.state import State


def check_manifest_signature(state: State, manifest: Manifest, sig: bytes) -> Vendor:
    """The registered vendor of ``manifest`` whose firmware-signing key signed it; raises
    ``UnknownVendor`` / ``UnknownModel`` / ``VendorSignature``."""
    v = keeper.vendor(state, manifest.vendor)
    if v is None:
        raise UnknownVendor(f"no vendor {manifest.vendor!r} is registered")
    if manifest.model not in v.models:
        raise UnknownModel(f"vendor {v.name!r} registered no model {manifest.model!r}")
    if not verify_signature(v.alg, v.pk, manifest.encode(), sig, MANIFEST_CONTEXT):
        raise VendorSignature(f"manifest {manifest.model} {manifest.version} is not signed by "
                              f"{v.name}'s firmware key")
    return v


def _require_new_advisory(state: State, aid: str) -> None:
    if keeper.advisory(state, aid) is not None:
        raise AdvisoryExists(f"advisory {aid!r} exists")


class Handlers:
    """The firmware registry's message handlers; ``auth`` (the registry) wired by the catalog."""

    def __init__(self, auth: Authorities) -> None:
        self.auth = auth

    # -- approvers -----------------------------------------------------------------------
    def _approver(self, state: State, sender: bytes) -> tuple[bool, bool, list[bytes]]:
        """(sender is the DSO, sender is an active validator, the active set)."""
        current = self.auth.validator_set(state)
        is_dso = self.auth.has_role(state, sender, "dso")
        is_val = sender in current
        if not (is_dso or is_val):
            raise NotApprover("only the DSO and members of the active validator set approve")
        return is_dso, is_val, current

    @staticmethod
    def _count(dso: tuple[bytes, ...], validators: tuple[bytes, ...],
               current: list[bytes]) -> tuple[int, int, bool]:
        """(DSO approvals, current validators' approvals, quorum reached)."""
        vals = sum(1 for v in validators if v in current)
        return len(dso), vals, bool(dso) and vals >= quorum(len(current))

    @staticmethod
    def _add(have: tuple[bytes, ...], sender: bytes, yes: bool) -> tuple[bytes, ...]:
        return tuple(sorted({*have, sender})) if yes else have

    # -- firmware/release ----------------------------------------------------------------
    def release(self, state: State, ctx: TxContext, msg: PublishRelease) -> None:
        """``firmware/release`` by the vendor's account. Rules ``unknown-vendor``,
        ``unknown-model``, ``not-vendor``, ``vendor-signature``, ``release-exists``,
        ``too-many-open``."""
        m = msg.manifest
        v = check_manifest_signature(state, m, msg.sig)
        if ctx.sender != v.account:
            raise NotVendor(f"releases of {v.name!r} are published by its own account")
        rid = m.release_id()
        if (keeper.release(state, rid) is not None
                or keeper.release_of_version(state, m.vendor, m.model, m.version) is not None):
            raise ReleaseExists(f"{m.vendor} {m.model} {m.version} is published already")
        if keeper.release_of_image(state, m.image_sha3) is not None:
            raise ReleaseExists("another release has this image")
        items = keeper.open_items(state)
        if len(items.releases) >= MAX_OPEN:
            raise TooManyOpen(f"{MAX_OPEN} releases wait for approval already")
        keeper.put_release(state, Release(m, "pending", ctx.block.height, (), ()), new=True)
        keeper.set_open_items(state, dataclasses.replace(items, releases=(*items.releases, rid)))
        ctx.emit("firmware_released", release=rid, vendor=m.vendor, model=m.model,
                 version=m.version, image_sha3=m.image_sha3, min_version=m.min_version)

    # -- firmware/approve ----------------------------------------------------------------
    def approve(self, state: State, ctx: TxContext, msg: Approve) -> None:
        """``firmware/approve`` by the DSO or a validator. Rules ``not-approver``,
        ``unknown-release`` / ``unknown-advisory``, ``already-approved``,
        ``approval-exists``."""
        is_dso, is_val, current = self._approver(state, ctx.sender)
        if msg.release is not None:
            self._approve_release(state, ctx, msg.release, is_dso, is_val, current)
        elif msg.advisory is not None:
            adv = keeper.advisory(state, msg.advisory)
            if adv is None:
                raise UnknownAdvisory(f"no advisory {msg.advisory!r}")
            if adv.status == "in-force":
                raise AlreadyApproved(f"advisory {adv.id!r} is in force already")
            if ctx.sender in adv.dso or ctx.sender in adv.validators:
                raise ApprovalExists(f"{ctx.sender.hex()[:16]}… approved {adv.id!r} already")
            adv = dataclasses.replace(adv, dso=self._add(adv.dso, ctx.sender, is_dso),
                                      validators=self._add(adv.validators, ctx.sender, is_val))
            self._advisory_progress(state, ctx, adv, current)

    def _approve_release(self, state: State, ctx: TxContext, rid: bytes, is_dso: bool,
                         is_val: bool, current: list[bytes]) -> None:
        rel = keeper.release(state, rid)
        if rel is None:
            raise UnknownRelease(f"no release {rid.hex()[:16]}…")
        if rel.status == "approved":
            raise AlreadyApproved(f"release {rid.hex()[:16]}… is approved already")
        if ctx.sender in rel.dso or ctx.sender in rel.validators:
            raise ApprovalExists(f"{ctx.sender.hex()[:16]}… approved this release already")
        rel = dataclasses.replace(rel, dso=self._add(rel.dso, ctx.sender, is_dso),
                                  validators=self._add(rel.validators, ctx.sender, is_val))
        dsos, vals, passed = self._count(rel.dso, rel.validators, current)
        ctx.emit("firmware_approval", release=rid, approver=ctx.sender, dso=dsos,
                 validators=vals, needed=quorum(len(current)))
        if not passed:
            keeper.put_release(state, rel)
            return
        before = keeper.reasons(state, keeper.cps_on(state, rel.manifest.image_sha3))
        keeper.put_release(state, dataclasses.replace(rel, status="approved",
                                                      approved=ctx.block.height))
        items = keeper.open_items(state)
        keeper.set_open_items(state, dataclasses.replace(
            items, releases=tuple(r for r in items.releases if r != rid)))
        m = rel.manifest
        ctx.emit("firmware_approved", release=rid, vendor=m.vendor, model=m.model,
                 version=m.version, image_sha3=m.image_sha3, dso=dsos, validators=vals)
        ctx.events.extend(keeper.transitions(state, before))

    # -- firmware/advisory ---------------------------------------------------------------
    def advisory(self, state: State, ctx: TxContext, msg: IssueAdvisory) -> None:
        """``firmware/advisory`` by the vendor's account (in force at once) or by the DSO or
        a validator (in force once the quorum approves). Rules ``unknown-vendor``,
        ``unknown-model``, ``advisory-exists``, ``not-approver``, ``too-many-open``."""
        v = keeper.vendor(state, msg.vendor)
        if v is None:
            raise UnknownVendor(f"no vendor {msg.vendor!r} is registered")
        if msg.model not in v.models:
            raise UnknownModel(f"vendor {v.name!r} registered no model {msg.model!r}")
        h = ctx.block.height
        if ctx.sender == v.account:
            _require_new_advisory(state, msg.id)
            adv = Advisory(msg.id, msg.vendor, msg.model, msg.versions, msg.severity, "vendor",
                           ctx.sender, "pending", h, (), ())
            ctx.emit("advisory_issued", advisory=msg.id, vendor=msg.vendor, model=msg.model,
                     versions=list(msg.versions), severity=msg.severity, source="vendor")
            self._in_force(state, ctx, adv)
            return
        is_dso, is_val, current = self._approver(state, ctx.sender)
        _require_new_advisory(state, msg.id)
        items = keeper.open_items(state)
        if len(items.advisories) >= MAX_OPEN:
            raise TooManyOpen(f"{MAX_OPEN} advisories wait for approval already")
        keeper.set_open_items(state, dataclasses.replace(
            items, advisories=(*items.advisories, msg.id)))
        adv = Advisory(msg.id, msg.vendor, msg.model, msg.versions, msg.severity, "quorum",
                       ctx.sender, "pending", h, (ctx.sender,) if is_dso else (),
                       (ctx.sender,) if is_val else ())
        ctx.emit("advisory_issued", advisory=msg.id, vendor=msg.vendor, model=msg.model,
                 versions=list(msg.versions), severity=msg.severity, source="quorum")
        self._advisory_progress(state, ctx, adv, current)

    def _advisory_progress(self, state: State, ctx: TxContext, adv: Advisory,
                           current: list[bytes]) -> None:
        dsos, vals, passed = self._count(adv.dso, adv.validators, current)
        ctx.emit("firmware_approval", advisory=adv.id, approver=ctx.sender, dso=dsos,
                 validators=vals, needed=quorum(len(current)))
        if not passed:
            keeper.put_advisory(state, adv)
            return
        items = keeper.open_items(state)
        keeper.set_open_items(state, dataclasses.replace(
            items, advisories=tuple(a for a in items.advisories if a != adv.id)))
        self._in_force(state, ctx, adv)

    def _in_force(self, state: State, ctx: TxContext, adv: Advisory) -> None:
        """Put ``adv`` in force: every meter on a release it names is quarantined now."""
        images = []
        for version in adv.versions:
            rid = keeper.release_of_version(state, adv.vendor, adv.model, version)
            m = keeper.manifest_of(state, rid) if rid is not None else None
            if m is not None:
                images.append(m.image_sha3)
        cps = [cp for image in images for cp in keeper.cps_on(state, image)]
        before = keeper.reasons(state, cps)
        adv = dataclasses.replace(adv, status="in-force", in_force=ctx.block.height)
        keeper.put_advisory(state, adv)
        keeper.mark_advised(state, adv)
        # sealed records (privacy mode) cannot be reached through the image index: every
        # one is held out of the market until the DSO vouches for it again (unvouched)
        keeper.put_last_advisory(state, ctx.block.height)
        moved = keeper.transitions(state, before)
        ctx.emit("advisory_in_force", advisory=adv.id, vendor=adv.vendor, model=adv.model,
                 versions=list(adv.versions), severity=adv.severity, source=adv.source,
                 meters=len(cps), quarantined=sum(1 for e in moved
                                                  if e["type"] == "meter_quarantined"))
        ctx.events.extend(moved)

    # -- firmware/vouch ------------------------------------------------------------------
    def vouch(self, state: State, ctx: TxContext, msg: VouchSealed) -> None:
        """``firmware/vouch`` by the DSO: it has checked every sealed firmware of record on
        the ledger whose first slot is at most ``through_slot`` against the image its meter
        reports to it (sealed, off the ledger) and opened or reported each one with a
        problem; the others may take market exposure (``keeper.unvouched``). Rules
        ``not-approver`` (not the DSO), ``vouch-backwards``."""
        if not self.auth.has_role(state, ctx.sender, "dso"):
            raise NotApprover("only the DSO vouches for sealed firmware records")
        old = keeper.vouch(state)
        if old is not None and msg.through_slot < old.through_slot:
            raise VouchBackwards(f"the last vouch covers slots up to {old.through_slot}; "
                                 f"this one only up to {msg.through_slot}")
        keeper.put_vouch(state, Vouch(msg.through_slot, ctx.block.height))
        ctx.emit("images_vouched", through_slot=msg.through_slot)

    # -- firmware/patch ------------------------------------------------------------------
    def patch(self, state: State, ctx: TxContext, msg: Patch) -> None:
        """``firmware/patch`` signed by the meter (its device key is the envelope key).
        Rules ``unknown-meter``, ``image-opening`` and those of ``verify_patch``;
        ``patch-hash-mismatch`` at parse.

        A sealed firmware of record (privacy mode) is opened by the patch itself (``opens``
        and ``salt``): the upgrade path is checked against the image it committed to. The
        new image is then on the ledger in clear — a patch reveals only the patched
        meter's images — and keeps the salt, so later readings still attest a commitment."""
        device = self.auth.participant(state, ctx.sender)
        cp = device.meter_of if device is not None else None
        if not cp:
            raise UnknownMeter("the sender is not a meter bound to a connection point")
        rec = keeper.meter_record(state, cp)
        if rec is not None and rec.meter != ctx.sender:
            rec = None  # another meter was installed at the cp: it starts afresh
        was = keeper.reason_of(state, rec) if rec is not None else None
        if rec is not None and rec.sealed:
            if msg.opens is None or msg.salt is None:
                raise ImageOpening(f"{cp!r}'s firmware of record is sealed: the patch opens "
                                   "it ('opens', 'salt')")
            rec = keeper.open_image(state, ctx, cp, msg.opens, msg.salt, announce=False)
        self.verify_patch(state, rec, msg)
        m = msg.manifest
        # the release's image becomes the firmware of record (parse_patch checked that the
        # meter attests exactly it); later readings are compared with it
        new = MeterFirmware(ctx.sender, m.image_sha3, ctx.block.height,
                            salt=rec.salt if rec is not None else None)
        keeper.put_meter_record(state, cp, new)
        ctx.emit("meter_patched", cp=cp, meter=ctx.sender, release=m.release_id(),
                 model=m.model, version=m.version, firmware=m.image_sha3,
                 from_firmware=rec.firmware if rec is not None else None)
        if was is not None:
            ctx.events.append(keeper.release_event(cp, new, was))

    @staticmethod
    def verify_release(state: State, msg: Patch) -> None:
        """The release a patch installs: the vendor's signature on the manifest
        (``vendor-signature``, ``unknown-vendor``, ``unknown-model``), the quorum's approval
        (``release-unapproved``), no advisory in force (``release-advised``)."""
        m = msg.manifest
        check_manifest_signature(state, m, msg.sig)
        rel = keeper.release(state, m.release_id())
        if rel is None or rel.status != "approved":
            raise ReleaseUnapproved(f"{m.model} {m.version} is "
                                    f"{'not published' if rel is None else 'not approved'}")
        advised = keeper.advised_by(state, m.vendor, m.model, m.version)
        if advised:
            raise ReleaseAdvised(f"{m.model} {m.version} is under advisory {advised[0]}")

    def verify_patch(self, state: State, rec: MeterFirmware | None, msg: Patch) -> None:
        """What makes a patch trustworthy: the release checks of ``verify_release`` and,
        when the meter's firmware of record is a known release, the same vendor and model
        (``patch-wrong-model``) and the upgrade path (``patch-upgrade-path``)."""
        self.verify_release(state, msg)
        m = msg.manifest
        current = keeper.release_of_image(state, rec.firmware) if rec is not None else None
        if current is None or rec is None:
            return  # an unknown image: nothing to check the path against
        cm = current.manifest
        if (cm.vendor, cm.model) != (m.vendor, m.model):
            raise PatchWrongModel(f"the meter runs {cm.vendor} {cm.model}, the release is "
                                  f"for {m.vendor} {m.model}")
        if cm.version_key < m.min_version_key:
            raise PatchUpgradePath(f"{m.version} installs over {m.min_version} or later; "
                                   f"the meter runs {cm.version}")
        reinstall = cm.version_key == m.version_key and rec.mismatch is not None
        if cm.version_key >= m.version_key and not reinstall:
            raise PatchUpgradePath(f"the meter runs {cm.version}; {m.version} is no upgrade")


def init_genesis(state: State, genesis: dict[str, Any]) -> None:
    """Register the ``firmware`` section's vendors and the releases the installed meters
    run (approved by genesis itself). No section: no firmware policy on this chain.

    Raises ``ConfigError`` naming the problem (a vendor key that is not ML-DSA-87, a
    release not signed by its vendor, duplicates).
    """
    section = genesis.get("firmware")
    if section is None:
        return
    if not isinstance(section, dict) or set(section) - {"vendors", "releases"}:
        raise ConfigError("genesis 'firmware' has exactly 'vendors' and optional 'releases'")
    raw_vendors = section.get("vendors")
    if not isinstance(raw_vendors, list) or not 1 <= len(raw_vendors) <= MAX_VENDORS:
        raise ConfigError(f"genesis 'firmware.vendors' must list 1..{MAX_VENDORS} vendors")
    names = []
    for rv in raw_vendors:
        v = _genesis_vendor(rv)
        if v.name in names:
            raise ConfigError(f"genesis firmware vendor {v.name!r} listed twice")
        names.append(v.name)
        keeper.put_vendor(state, v)
    keeper.put_config(state, Config(tuple(sorted(names))))
    for rr in section.get("releases", []):
        if not isinstance(rr, dict) or set(rr) != {"manifest", "sig"}:
            raise ConfigError("a genesis firmware release is {manifest, sig}")
        try:
            m = parse_manifest(rr["manifest"])
            check_manifest_signature(state, m, rr["sig"])
        except RejectedTx as exc:
            raise ConfigError(f"genesis firmware release: {exc}") from None
        if (keeper.release_of_image(state, m.image_sha3) is not None
                or keeper.release_of_version(state, m.vendor, m.model, m.version) is not None):
            raise ConfigError(f"genesis firmware release {m.model} {m.version} listed twice")
        keeper.put_release(state, Release(m, "approved", 0, (), (), approved=0), new=True)


def _genesis_vendor(rv: Any) -> Vendor:
    if not isinstance(rv, dict) or not {"name", "alg", "pk", "models"} <= set(rv) \
            or set(rv) - {"name", "alg", "pk", "models", "account"}:
        raise ConfigError("a genesis firmware vendor is {name, alg, pk, models, account?}")
    name, alg, pk, models = rv["name"], rv["alg"], rv["pk"], rv["models"]
    if not is_name(name):
        raise ConfigError(f"genesis firmware vendor name {str(name)[:40]!r} is not a name")
    if alg != VENDOR_ALG or not isinstance(pk, bytes):
        raise ConfigError(f"vendor {name!r}: the firmware-signing key must be {VENDOR_ALG}")
    if (not isinstance(models, list) or not 1 <= len(models) <= MAX_MODELS
            or len(set(models)) != len(models)):
        raise ConfigError(f"vendor {name!r}: 'models' must list 1..{MAX_MODELS} distinct models")
    if not all(is_name(model) for model in models):
        raise ConfigError(f"vendor {name!r}: a model is not a name ([A-Za-z0-9._-], 1..32)")
    account = rv.get("account", address_of(alg, pk))
    if not isinstance(account, bytes) or len(account) != 32:
        raise ConfigError(f"vendor {name!r}: 'account' must be a 32-byte address")
    return Vendor(name, alg, pk, account, tuple(sorted(models)))
