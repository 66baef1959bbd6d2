"""Firmware registry (issue 13.1): vendors in genesis, signed releases approved by the DSO
and a validator quorum, advisories, quarantine, signed patches. Every rejection names its
rule and leaves the registry's state as it was."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from gridledger.crypto.sig import SigningKey
from gridledger.errors import ConfigError, RejectedTx
from gridledger.ledger.app import Application
from gridledger.ledger.context import BlockContext, TxContext
from gridledger.ledger.execute import BlockResult
from gridledger.ledger.genesis import make_genesis
from gridledger.ledger.modules.bank import keeper as bank
from gridledger.ledger.modules.firmware import keeper
from gridledger.ledger.modules.metering import keeper as metering
from gridledger.ledger.modules.registry import keeper as registry
from gridledger.ledger.modules.reputation.keeper import reputation_of
from gridledger.ledger.tx import sign_tx
from gridledger.meter import Meter, SignedRelease, UpdateRefused, VendorSigner, image_hash
from gridledger.meter.device import patch_body
from gridledger.sim.keys import sim_key
from tests.conftest import apply
from tests.ledger.modules.test_flex import GATE, make_flex_world, tx_id
from tests.ledger.modules.test_flex import S as FLEX_S
from tests.ledger.modules.test_flex import t_read as flex_t_read

CHAIN = "firmware-test"
N_VALIDATORS = 4          # quorum(4) = 3


def img(name: str) -> bytes:
    return f"image:{name}".encode()


@dataclass
class FwWorld:
    app: Application
    validators: list[SigningKey]
    dso: SigningKey
    users: list[SigningKey]
    meters: list[SigningKey]
    acme: VendorSigner
    other: VendorSigner
    base: dict[str, SignedRelease]
    nonces: dict[bytes, int] = field(default_factory=dict)
    t: int = 0

    def tx(self, key: SigningKey, kind: str, body: dict[str, Any]) -> bytes:
        n = self.nonces.get(key.address, 0)
        self.nonces[key.address] = n + 1
        return sign_tx(key, CHAIN, n, kind, body)

    def block(self, txs: list[bytes]) -> BlockResult:
        self.t += 900
        _, result = apply(self.app, txs, self.t)
        return result

    def ok(self, txs: list[bytes]) -> BlockResult:
        res = self.block(txs)
        bad = [(r.rule, r.detail) for r in res.receipts if not r.ok]
        assert not bad, bad
        return res

    def rule_of(self, raw: bytes) -> str:
        """Submit ``raw`` alone; the rule its receipt names ("" if it succeeded). The
        registry's keys must be exactly as before (a failed body changes nothing)."""
        before = fw_state(self.app)
        res = self.block([raw])
        if not res.receipts[0].ok:
            assert fw_state(self.app) == before, "a rejected transaction changed the registry"
        return res.receipts[0].rule

    def approve(self, release: SignedRelease, who: list[SigningKey]) -> BlockResult:
        return self.ok([self.tx(k, "firmware/approve", {"release": release.release_id})
                        for k in who])

    def read(self, i: int, firmware: bytes) -> str | None:
        """What the metering handler does for meter i's reading: check its firmware."""
        ctx = TxContext(BlockContext(CHAIN, self.app.height + 1, self.t), self.meters[i].address,
                        bytes(32), "metering/reading")
        return keeper.check_reading(self.app.state, ctx, f"cp{i}", self.meters[i].address,
                                    firmware)

    def reason(self, i: int) -> str | None:
        return keeper.quarantine_reason(self.app.state, f"cp{i}")

    def events(self, res: BlockResult, kind: str) -> list[dict[str, Any]]:
        return [e for r in res.receipts for e in r.events if e["type"] == kind]


def fw_state(app: Application) -> list[tuple[bytes, bytes]]:
    return [(k, app.state.get(k) or b"") for k in app.state.keys_with_prefix(b"fw/")]


def vendors(seed: int = 3) -> tuple[VendorSigner, VendorSigner]:
    return (VendorSigner("acme", sim_key(seed, "vendor", 0, alg="ml-dsa-87"), ("AM-1", "AM-3")),
            VendorSigner("other", sim_key(seed, "vendor", 1, alg="ml-dsa-87"), ("OT-9",)))


def make_fw_world(n_users: int = 3, seed: int = 3, firmware: bool = True) -> FwWorld:
    vs = [sim_key(seed, "validator", i) for i in range(N_VALIDATORS)]
    dso = sim_key(seed, "dso", 0)
    users = [sim_key(seed, "user", i) for i in range(n_users)]
    meters = [sim_key(seed, "meter", i, alg="ml-dsa-44") for i in range(n_users)]
    acme, other = vendors(seed)
    base = {"1.0.0": acme.sign("AM-1", "1.0.0", img("am1-1.0.0"), "0.0.0"),
            "1.1.0": acme.sign("AM-1", "1.1.0", img("am1-1.1.0"), "1.0.0"),
            "3-2.0.0": acme.sign("AM-3", "2.0.0", img("am3-2.0.0"), "0.0.0")}
    parts: list[dict[str, Any]] = [
        {"alg": v.alg, "pk": v.public_key.raw, "roles": ["validator"], "name": f"v{i}"}
        for i, v in enumerate(vs)]
    parts.append({"alg": dso.alg, "pk": dso.public_key.raw, "roles": ["dso"], "name": "dso",
                  "balance_micro": 10**9})
    parts += [{"alg": ven.key.alg, "pk": ven.key.public_key.raw, "roles": ["vendor"],
               "name": ven.name} for ven in (acme, other)]
    for i, (u, m) in enumerate(zip(users, meters, strict=True)):
        parts.append({"alg": u.alg, "pk": u.public_key.raw, "roles": ["prosumer"],
                      "name": f"u{i}", "cp": f"cp{i}", "balance_micro": 10**7})
        parts.append({"alg": m.alg, "pk": m.public_key.raw, "roles": ["meter"],
                      "name": f"m{i}", "meter_of": f"cp{i}"})
    sections = {"firmware": {"vendors": [acme.genesis_entry(), other.genesis_entry()],
                             "releases": [r.genesis_entry() for r in base.values()]}}
    genesis = make_genesis(CHAIN, parts, {"slot_seconds": 900, "settle_window_s": 1800},
                           sections=sections if firmware else None)
    return FwWorld(Application(genesis), vs, dso, users, meters, acme, other, base)


@pytest.fixture
def w() -> FwWorld:
    return make_fw_world()


# ------------------------------------------------------------------------------- genesis
def test_genesis_registers_vendors_and_the_installed_releases(w: FwWorld) -> None:
    names = [v["name"] for v in w.app.query("firmware/vendors")]
    assert names == ["acme", "other"]
    rels = w.app.query("firmware/releases")
    assert sorted(r["version"] for r in rels) == ["1.0.0", "1.1.0", "2.0.0"]
    assert all(r["status"] == "approved" and r["approved"] == 0 for r in rels)
    assert w.app.query(f"firmware/image/{image_hash(img('am1-1.1.0')).hex()}")["problem"] is None
    assert w.app.query(f"firmware/image/{bytes(32).hex()}")["problem"] == "unknown-firmware"


def test_genesis_refuses_weak_vendor_keys_and_unsigned_releases() -> None:
    acme, other = vendors()
    weak = sim_key(3, "vendor", 9, alg="ml-dsa-65")
    v0 = sim_key(3, "validator", 0)
    parts = [{"alg": v0.alg, "pk": v0.public_key.raw, "roles": ["validator"], "name": "v0"}]
    bad_key = {"vendors": [{"name": "weak", "alg": weak.alg, "pk": weak.public_key.raw,
                            "models": ["X"]}]}
    with pytest.raises(ConfigError, match="ml-dsa-87"):
        Application(make_genesis(CHAIN, parts, sections={"firmware": bad_key}))
    forged = other.sign("OT-9", "1.0.0", img("x"), "0.0.0")
    relabelled = {"manifest": {**forged.manifest.to_obj(), "vendor": "acme", "model": "AM-1"},
                  "sig": forged.sig}
    unsigned = {"vendors": [acme.genesis_entry()], "releases": [relabelled]}
    with pytest.raises(ConfigError, match="vendor-signature"):
        Application(make_genesis(CHAIN, parts, sections={"firmware": unsigned}))


def test_a_chain_without_a_firmware_section_has_no_policy() -> None:
    w = make_fw_world(firmware=False)
    assert w.read(0, image_hash(b"anything")) is None
    assert not keeper.quarantined(w.app.state, "cp0")
    assert fw_state(w.app) == []


# ------------------------------------------------------------------------------- releases
def test_release_rules(w: FwWorld) -> None:
    acme, other = w.acme, w.other
    fix = acme.sign("AM-1", "1.2.0", img("am1-1.2.0"), "1.0.0")
    # only the vendor's own account publishes its releases
    assert w.rule_of(w.tx(other.key, "firmware/release", fix.body())) == "not-vendor"
    assert w.rule_of(w.tx(w.dso, "firmware/release", fix.body())) == "unauthorized"
    # the manifest must carry the vendor's firmware-key signature, over exactly these fields
    forged = {"manifest": {**fix.manifest.to_obj(), "version": "1.2.1"}, "sig": fix.sig}
    assert w.rule_of(w.tx(acme.key, "firmware/release", forged)) == "vendor-signature"
    by_other = other.key.sign(fix.manifest.encode(), b"gl/fw-manifest")
    assert w.rule_of(w.tx(acme.key, "firmware/release",
                          {"manifest": fix.manifest.to_obj(), "sig": by_other})) == "vendor-signature"
    unknown_model = {"manifest": {**fix.manifest.to_obj(), "model": "AM-7"}, "sig": fix.sig}
    assert w.rule_of(w.tx(acme.key, "firmware/release", unknown_model)) == "unknown-model"
    nobody = {"manifest": {**fix.manifest.to_obj(), "vendor": "nobody"}, "sig": fix.sig}
    assert w.rule_of(w.tx(acme.key, "firmware/release", nobody)) == "unknown-vendor"
    res = w.ok([w.tx(acme.key, "firmware/release", fix.body())])
    assert w.events(res, "firmware_released")[0]["release"] == fix.release_id
    # one release per version and per image
    again = acme.sign("AM-1", "1.2.0", img("am1-1.2.0-rebuilt"), "1.0.0")
    same_image = acme.sign("AM-1", "1.2.5", img("am1-1.2.0"), "1.0.0")
    assert w.rule_of(w.tx(acme.key, "firmware/release", again.body())) == "release-exists"
    assert w.rule_of(w.tx(acme.key, "firmware/release", same_image.body())) == "release-exists"
    assert w.rule_of(w.tx(acme.key, "firmware/release", fix.body())) == "release-exists"


@pytest.mark.parametrize("body, needle", [
    ({"manifest": {"vendor": "acme", "model": "AM-1", "version": "1.2", "image_sha3": bytes(32),
                   "min_version": "1.0.0"}, "sig": b"s"}, "MAJOR.MINOR.PATCH"),
    ({"manifest": {"vendor": "acme", "model": "AM-1", "version": "1.2.0", "image_sha3": bytes(32),
                   "min_version": "1.3.0"}, "sig": b"s"}, "above version"),
    ({"manifest": {"vendor": "a/b", "model": "AM-1", "version": "1.2.0", "image_sha3": bytes(32),
                   "min_version": "1.0.0"}, "sig": b"s"}, "'vendor'"),
    ({"manifest": {"vendor": "acme", "model": "AM-1", "version": "1.2.0", "image_sha3": bytes(31),
                   "min_version": "1.0.0"}, "sig": b"s"}, "image_sha3"),
    ({"manifest": {"vendor": "acme"}, "sig": b"s"}, "exactly the fields"),
])
def test_malformed_manifests_are_refused_at_admission(w: FwWorld, body: dict[str, Any],
                                                      needle: str) -> None:

    with pytest.raises(RejectedTx) as info:
        w.app.check_tx(w.tx(w.acme.key, "firmware/release", body))
    assert info.value.rule == "invalid-body" and needle in info.value.detail


def test_quorum_is_the_dso_and_a_validator_quorum(w: FwWorld) -> None:
    fix = w.acme.sign("AM-1", "1.2.0", img("am1-1.2.0"), "1.0.0")
    w.ok([w.tx(w.acme.key, "firmware/release", fix.body())])
    rid = fix.release_id
    # validators alone (all four) do not approve firmware without the DSO ...
    res = w.approve(fix, w.validators[:3])
    assert not w.events(res, "firmware_approved")
    assert w.events(res, "firmware_approval")[-1] == {
        "type": "firmware_approval", "release": rid, "approver": w.validators[2].address,
        "dso": 0, "validators": 3, "needed": 3}
    assert keeper.release(w.app.state, rid).status == "pending"  # type: ignore[union-attr]
    # ... and the DSO with too few validators does not either (fresh release)
    fix3 = w.acme.sign("AM-3", "2.1.0", img("am3-2.1.0"), "2.0.0")
    w.ok([w.tx(w.acme.key, "firmware/release", fix3.body())])
    res = w.approve(fix3, [w.dso, *w.validators[:2]])
    assert not w.events(res, "firmware_approved")
    res = w.approve(fix3, [w.validators[3]])
    assert w.events(res, "firmware_approved")[0]["release"] == fix3.release_id
    # the DSO completes the first one
    res = w.approve(fix, [w.dso])
    approved = w.events(res, "firmware_approved")
    assert approved and approved[0]["dso"] == 1 and approved[0]["validators"] == 3
    assert w.app.query("firmware/releases") and all(
        r["status"] == "approved" for r in w.app.query("firmware/releases"))


def test_approval_rules(w: FwWorld) -> None:
    fix = w.acme.sign("AM-1", "1.2.0", img("am1-1.2.0"), "1.0.0")
    w.ok([w.tx(w.acme.key, "firmware/release", fix.body())])
    body = {"release": fix.release_id}
    assert w.rule_of(w.tx(w.users[0], "firmware/approve", body)) == "unauthorized"
    w.approve(fix, [w.validators[0]])
    assert w.rule_of(w.tx(w.validators[0], "firmware/approve", body)) == "approval-exists"
    assert w.rule_of(w.tx(w.validators[1], "firmware/approve",
                          {"release": bytes(32)})) == "unknown-release"
    assert w.rule_of(w.tx(w.validators[1], "firmware/approve",
                          {"advisory": "NOPE-1"})) == "unknown-advisory"
    w.approve(fix, [w.validators[1], w.validators[2], w.dso])
    assert w.rule_of(w.tx(w.validators[3], "firmware/approve", body)) == "already-approved"


def test_a_removed_validator_no_longer_approves() -> None:
    """``not-approver``: the role alone is not enough, the sender must be in the active set
    (here a validator key removed from the set keeps its ``validator`` role record)."""
    w = make_fw_world()

    fix = w.acme.sign("AM-1", "1.2.0", img("am1-1.2.0"), "1.0.0")
    w.ok([w.tx(w.acme.key, "firmware/release", fix.body())])
    gone = w.validators[3]
    registry.set_validators(w.app.state, [v.address for v in w.validators[:3]])
    assert registry.has_role(w.app.state, gone.address, "validator")
    assert w.rule_of(w.tx(gone, "firmware/approve", {"release": fix.release_id})) == "not-approver"


# ------------------------------------------------------------------------------- quarantine
def test_first_reading_sets_the_firmware_of_record(w: FwWorld) -> None:
    good = w.base["1.1.0"].manifest.image_sha3
    assert w.read(0, good) is None and w.reason(0) is None
    assert w.read(1, image_hash(b"homebrew")) == "unknown-firmware"
    view = w.app.query("firmware/meter/cp1")
    assert view["quarantined"] and view["reason"] == "unknown-firmware"
    # a later reading with another hash is a mismatch until a patch (even to a good image)
    assert w.read(0, w.base["1.0.0"].manifest.image_sha3) == "firmware-mismatch"
    assert w.read(0, good) == "firmware-mismatch"
    assert [q["cp"] for q in w.app.query("firmware/quarantined")] == ["cp0", "cp1"]
    assert w.app.query("firmware/meter/cp2") == {"cp": "cp2", "reported": False,
                                                 "quarantined": False, "reason": None}


def test_quarantined_cp_cannot_trade(w: FwWorld) -> None:

    w.read(1, image_hash(b"homebrew"))
    keeper.check_trading(w.app.state, "cp0")
    with pytest.raises(RejectedTx) as info:
        keeper.check_trading(w.app.state, "cp1")
    assert info.value.rule == "meter-quarantined"


def test_unapproved_release_quarantines_until_the_quorum_approves(w: FwWorld) -> None:
    pushed = w.acme.sign("AM-1", "1.2.0", img("am1-1.2.0"), "1.0.0")
    w.ok([w.tx(w.acme.key, "firmware/release", pushed.body())])
    assert w.read(0, pushed.manifest.image_sha3) == "unapproved-firmware"
    res = w.approve(pushed, [w.dso, *w.validators[:3]])
    assert w.events(res, "meter_released") == [{
        "type": "meter_released", "cp": "cp0", "meter": w.meters[0].address,
        "firmware": pushed.manifest.image_sha3, "was": "unapproved-firmware"}]
    assert w.reason(0) is None


def test_vendor_advisory_quarantines_every_meter_on_the_version_at_once(w: FwWorld) -> None:
    old, new = w.base["1.0.0"].manifest.image_sha3, w.base["1.1.0"].manifest.image_sha3
    w.read(0, old), w.read(1, old), w.read(2, new)
    body = w.acme.advisory_body("ACME-2026-7", "AM-1", ["0.9.0", "1.0.0"], "critical")
    res = w.ok([w.tx(w.acme.key, "firmware/advisory", body)])
    (inforce,) = w.events(res, "advisory_in_force")
    assert inforce["meters"] == 2 and inforce["quarantined"] == 2 and inforce["source"] == "vendor"
    assert [e["cp"] for e in w.events(res, "meter_quarantined")] == ["cp0", "cp1"]
    assert w.reason(0) == w.reason(1) == "advised-firmware" and w.reason(2) is None
    # a meter first seen on the advised version later is quarantined at its first reading
    w2 = make_fw_world(n_users=4)
    w2.ok([w2.tx(w2.acme.key, "firmware/advisory", body)])
    assert w2.read(3, old) == "advised-firmware"
    assert w.rule_of(w.tx(w.acme.key, "firmware/advisory", body)) == "advisory-exists"
    assert w.rule_of(w.tx(w.other.key, "firmware/advisory", body)) == "not-approver"
    assert w.rule_of(w.tx(w.acme.key, "firmware/advisory",
                          {**body, "id": "X-1", "model": "OT-9"})) == "unknown-model"


def test_quorum_advisory_comes_into_force_with_the_quorum(w: FwWorld) -> None:
    old = w.base["1.0.0"].manifest.image_sha3
    w.read(0, old)
    body = {"id": "DSO-CERT-12", "vendor": "acme", "model": "AM-1", "versions": ["1.0.0"],
            "severity": "high"}
    res = w.ok([w.tx(w.dso, "firmware/advisory", body)])
    assert w.events(res, "advisory_issued")[0]["source"] == "quorum"
    assert w.reason(0) is None
    assert w.app.query("firmware/advisories")[0]["status"] == "pending"
    res = w.ok([w.tx(v, "firmware/approve", {"advisory": "DSO-CERT-12"})
                for v in w.validators[:3]])
    assert w.events(res, "meter_quarantined")[0]["cp"] == "cp0"
    assert w.reason(0) == "advised-firmware"
    assert w.rule_of(w.tx(w.validators[3], "firmware/approve",
                          {"advisory": "DSO-CERT-12"})) == "already-approved"
    assert w.rule_of(w.tx(w.users[0], "firmware/advisory", {**body, "id": "U-1"})) == "unauthorized"


# ------------------------------------------------------------------------------- patches
@pytest.fixture
def advised(w: FwWorld) -> tuple[FwWorld, SignedRelease]:
    """cp0 and cp1 on advised AM-1 1.0.0; fix 1.0.1 published and approved."""
    old = w.base["1.0.0"].manifest.image_sha3
    w.read(0, old), w.read(1, old)
    fix = w.acme.sign("AM-1", "1.0.1", img("am1-1.0.1"), "1.0.0")
    w.ok([w.tx(w.acme.key, "firmware/advisory",
               w.acme.advisory_body("ACME-1", "AM-1", ["1.0.0"], "high")),
          w.tx(w.acme.key, "firmware/release", fix.body())])
    w.approve(fix, [w.dso, *w.validators[:3]])
    return w, fix


def test_a_signed_approved_patch_lifts_quarantine(advised: tuple[FwWorld, SignedRelease]) -> None:
    w, fix = advised
    meter = Meter(w.meters[0], "cp0", w.acme.key.public_key, w.base["1.0.0"].manifest)
    res = w.ok([w.tx(w.meters[0], "firmware/patch", meter.install(fix))])
    (patched,) = w.events(res, "meter_patched")
    assert patched["version"] == "1.0.1" and patched["from_firmware"] == w.base["1.0.0"].manifest.image_sha3
    assert w.events(res, "meter_released")[0]["was"] == "advised-firmware"
    assert w.reason(0) is None and w.reason(1) == "advised-firmware"
    assert w.read(0, fix.manifest.image_sha3) is None     # its next reading is clean


def test_fake_patches_are_rejected_naming_the_rule(advised: tuple[FwWorld, SignedRelease]) -> None:
    """The three fake patches of issue 13: unsigned, unapproved, another hash."""
    w, fix = advised
    # 1. an image the attacker built, with a manifest nobody signed (or signed by itself)
    evil = image_hash(b"evil")
    manifest = {**fix.manifest.to_obj(), "version": "1.0.2", "image_sha3": evil}
    own_sig = w.meters[1].sign(b"whatever")
    unsigned = {"manifest": manifest, "sig": own_sig, "firmware": evil}
    assert w.rule_of(w.tx(w.meters[1], "firmware/patch", unsigned)) == "vendor-signature"
    # 2. a vendor-signed build the quorum never approved (published, or leaked unpublished)
    beta = w.acme.sign("AM-1", "1.3.0", img("am1-1.3.0-beta"), "1.0.0")
    assert w.rule_of(w.tx(w.meters[1], "firmware/patch",
                          patch_body(beta, beta.manifest.image_sha3))) == "release-unapproved"
    w.ok([w.tx(w.acme.key, "firmware/release", beta.body())])
    assert w.rule_of(w.tx(w.meters[1], "firmware/patch",
                          patch_body(beta, beta.manifest.image_sha3))) == "release-unapproved"
    # 3. the approved fix's manifest, but the meter attests another image (it runs its own)
    wrong = patch_body(fix, evil)

    raw = w.tx(w.meters[1], "firmware/patch", wrong)
    with pytest.raises(RejectedTx) as info:     # refused at admission ...
        w.app.check_tx(raw)
    assert info.value.rule == "patch-hash-mismatch"
    assert w.rule_of(raw) == "patch-hash-mismatch"  # ... and in execution
    assert w.reason(1) == "advised-firmware"


def test_patch_path_rules(advised: tuple[FwWorld, SignedRelease]) -> None:
    w, fix = advised
    # another model's release
    am3 = w.acme.sign("AM-3", "2.1.0", img("am3-2.1.0"), "2.0.0")
    w.ok([w.tx(w.acme.key, "firmware/release", am3.body())])
    w.approve(am3, [w.dso, *w.validators[:3]])
    assert w.rule_of(w.tx(w.meters[0], "firmware/patch",
                          patch_body(am3, am3.manifest.image_sha3))) == "patch-wrong-model"
    # a release that only installs over 1.1.0 or later
    leap = w.acme.sign("AM-1", "2.0.0", img("am1-2.0.0"), "1.1.0")
    w.ok([w.tx(w.acme.key, "firmware/release", leap.body())])
    w.approve(leap, [w.dso, *w.validators[:3]])
    assert w.rule_of(w.tx(w.meters[0], "firmware/patch",
                          patch_body(leap, leap.manifest.image_sha3))) == "patch-upgrade-path"
    # the advised release itself
    assert w.rule_of(w.tx(w.meters[0], "firmware/patch",
                          patch_body(w.base["1.0.0"], w.base["1.0.0"].manifest.image_sha3))
                     ) == "release-advised"
    # after the fix, going back down is no upgrade
    w.ok([w.tx(w.meters[0], "firmware/patch", patch_body(fix, fix.manifest.image_sha3))])
    w.read(2, w.base["1.1.0"].manifest.image_sha3)
    assert w.rule_of(w.tx(w.meters[2], "firmware/patch",
                          patch_body(fix, fix.manifest.image_sha3))) == "patch-upgrade-path"
    # only meters patch
    assert w.rule_of(w.tx(w.users[0], "firmware/patch",
                          patch_body(fix, fix.manifest.image_sha3))) == "unauthorized"


def test_a_mismatched_meter_may_reinstall_its_approved_image(w: FwWorld) -> None:
    good = w.base["1.1.0"]
    w.read(0, good.manifest.image_sha3)
    assert w.read(0, image_hash(b"tampered")) == "firmware-mismatch"
    w.ok([w.tx(w.meters[0], "firmware/patch", patch_body(good, good.manifest.image_sha3))])
    assert w.reason(0) is None


def test_meter_refuses_what_its_vendor_did_not_sign(advised: tuple[FwWorld, SignedRelease]) -> None:

    w, fix = advised
    meter = Meter(w.meters[0], "cp0", w.acme.key.public_key, w.base["1.0.0"].manifest)
    fake = SignedRelease(fix.manifest, w.other.key.sign(fix.manifest.encode(), b"gl/fw-manifest"))
    with pytest.raises(UpdateRefused, match="not signed"):
        meter.install(fake)
    with pytest.raises(UpdateRefused, match="model"):
        meter.install(w.acme.sign("AM-3", "9.0.0", img("x"), "0.0.0"))
    assert meter.firmware == w.base["1.0.0"].manifest.image_sha3


def test_state_does_not_depend_on_which_signature_of_a_release_arrived() -> None:
    """ML-DSA signing is hedged: two signings of one manifest differ. Two genesis documents
    with different signatures of the same releases reach the same state root, and so do
    two chains where the vendor publishes differently signed copies of one release."""
    a, b = make_fw_world(), make_fw_world()
    assert a.base["1.0.0"].sig != b.base["1.0.0"].sig
    assert a.app.state.root() == b.app.state.root()
    for w in (a, b):
        fix = w.acme.sign("AM-1", "1.2.0", img("am1-1.2.0"), "1.0.0")
        w.ok([w.tx(w.acme.key, "firmware/release", fix.body())])
    assert a.app.state.root() == b.app.state.root()


# ------------------------------------------------------------------------------- end to end
def reading_tx(w: FwWorld, i: int, slot: int, firmware: bytes, import_wh: int = 500) -> bytes:
    return w.tx(w.meters[i], "metering/reading", {"slot": slot, "import_wh": import_wh,
                                                 "export_wh": 0, "firmware": firmware})


def test_readings_orders_and_settlement_of_a_quarantined_meter(w: FwWorld) -> None:
    """Through the metering and market modules: the reading is taken but marked, settles
    only on the DSO's estimate (no reputation charge), and the holder cannot order."""

    old = w.base["1.0.0"].manifest.image_sha3
    s0 = w.t // 900                                 # the block at t + 900 reads slot s0
    w.ok([reading_tx(w, 0, s0, old), reading_tx(w, 1, s0, old)])
    assert w.reason(0) is None

    def order() -> dict[str, Any]:
        return {"slot": w.t // 900 + 4, "side": "buy", "energy_wh": 100,
                "price_micro_per_kwh": 100_000}

    w.ok([w.tx(w.users[0], "market/order", order())])
    w.ok([w.tx(w.acme.key, "firmware/advisory",
               w.acme.advisory_body("ACME-9", "AM-1", ["1.0.0"], "high"))])
    # no new exposure for the holder of a quarantined cp; the registry is unchanged
    assert w.rule_of(w.tx(w.users[0], "market/order", order())) == "meter-quarantined"
    s1 = w.t // 900
    res = w.ok([reading_tx(w, 0, s1, old)])
    (ev,) = [e for r in res.receipts for e in r.events if e["type"] == "reading"]
    assert ev["quarantine"] == "advised-firmware"
    st = w.app.state
    assert metering.reading_of(st, s1, "cp0").quarantine == "advised-firmware"  # type: ignore[union-attr]
    assert metering.trusted_reading_of(st, s1, "cp0") is None   # its own figure never settles
    score = reputation_of(st, w.users[0].address)
    res = w.ok([w.tx(w.dso, "metering/flag", {"slot": s1, "cp": "cp0", "import_wh": 640,
                                              "export_wh": 0, "evidence": bytes(32)})])
    flagged = [e for r in res.receipts for e in r.events if e["type"] == "reading_flagged"]
    assert flagged[0]["quarantine"] == "advised-firmware"
    assert not [e for r in res.receipts for e in r.events if e["type"] == "reputation"]
    assert reputation_of(w.app.state, w.users[0].address) == score
    assert metering.trusted_reading_of(w.app.state, s1, "cp0").import_wh == 640  # type: ignore[union-attr]


def test_readings_of_a_good_meter_keep_their_bytes(w: FwWorld) -> None:
    """A reading from a meter that is not quarantined is stored exactly as before the
    firmware registry existed (no ``quarantine`` key), so state roots do not move."""

    s0 = w.t // 900
    w.ok([reading_tx(w, 0, s0, w.base["1.1.0"].manifest.image_sha3)])
    key = metering.READING + metering.slot_key(s0) + b"cp0"
    assert set(w.app.state.get_obj(key)) == {"import_wh", "export_wh", "firmware", "meter"}


def test_no_flexibility_offer_from_a_quarantined_meter() -> None:
    """Delivered flexibility is measured by the cp's meter too, so a quarantined meter's
    holder offers none (``meter-quarantined``, nothing locked); the others offer as before."""
    acme, _ = vendors()
    good = acme.sign("AM-1", "1.0.0", img("am1-1.0.0"), "0.0.0")
    w = make_flex_world(sections={"firmware": {"vendors": [acme.genesis_entry()],
                                               "releases": [good.genesis_entry()]}})
    slot = 12
    home_made = image_hash(b"home-made")
    res = w.ok([w.tx(w.meters[0], "metering/reading", {"slot": slot, "import_wh": 900,
                                                       "export_wh": 0, "firmware": home_made}),
                w.tx(w.meters[1], "metering/reading",
                     {"slot": slot, "import_wh": 900, "export_wh": 0,
                      "firmware": good.manifest.image_sha3})], flex_t_read(slot))
    assert [e["reason"] for r in res.receipts for e in r.events
            if e["type"] == "meter_quarantined"] == ["unknown-firmware"]
    rid = tx_id(w.ok([w.request(energies=[1_000, 1_000])], GATE - 3 * FLEX_S))
    locked = bank.locked(w.app.state, w.users[0].address)
    res = w.block([w.offer(0, rid, 50_000, [500, 500]), w.offer(1, rid, 60_000, [500, 500])],
                  GATE - 2 * FLEX_S)
    assert [r.rule for r in res.receipts] == ["meter-quarantined", ""]
    assert bank.locked(w.app.state, w.users[0].address) == locked
