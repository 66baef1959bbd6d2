"""The smart-meter client: attested firmware in readings, the bootloader's update checks,
and the vendor's signing side."""

from __future__ import annotations

import pytest

from gridledger.errors import ConfigError
from gridledger.meter import Meter, UpdateRefused, VendorSigner, image_hash
from gridledger.sim.keys import sim_key


@pytest.fixture
def vendor() -> VendorSigner:
    return VendorSigner("acme", sim_key(1, "vendor", 0, alg="ml-dsa-87"), ("AM-1", "AM-3"))


def test_vendor_key_must_be_ml_dsa_87() -> None:
    with pytest.raises(ConfigError, match="ml-dsa-87"):
        VendorSigner("acme", sim_key(1, "vendor", 0), ("AM-1",))
    with pytest.raises(ConfigError, match="no model"):
        VendorSigner("acme", sim_key(1, "vendor", 0, alg="ml-dsa-87"), ("AM-1",)).sign(
            "AM-9", "1.0.0", b"img", "0.0.0")


def test_reading_attests_the_running_image_and_updates_follow_the_path(vendor: VendorSigner) -> None:
    base = vendor.sign("AM-1", "1.0.0", b"image-1.0.0", "0.0.0")
    meter = Meter(sim_key(1, "meter", 0, alg="ml-dsa-44"), "cp0", vendor.key.public_key,
                  base.manifest)
    assert meter.reading(7, 120, 0) == {"slot": 7, "import_wh": 120, "export_wh": 0,
                                        "firmware": image_hash(b"image-1.0.0")}
    leap = vendor.sign("AM-1", "2.0.0", b"image-2.0.0", "1.5.0")
    with pytest.raises(UpdateRefused, match="no upgrade"):
        meter.install(leap)
    fix = vendor.sign("AM-1", "1.0.1", b"image-1.0.1", "1.0.0")
    body = meter.install(fix)
    assert body == {"manifest": fix.manifest.to_obj(), "sig": fix.sig,
                    "firmware": image_hash(b"image-1.0.1")}
    assert meter.firmware == image_hash(b"image-1.0.1")
    assert meter.history == [image_hash(b"image-1.0.0")]
    with pytest.raises(UpdateRefused, match="no upgrade"):
        meter.install(fix)                                  # same version again
    with pytest.raises(UpdateRefused, match="no upgrade"):
        meter.install(base)                                 # downgrade
    other = VendorSigner("acme", sim_key(2, "vendor", 0, alg="ml-dsa-87"), ("AM-1",))
    with pytest.raises(UpdateRefused, match="not signed"):
        meter.install(other.sign("AM-1", "1.1.0", b"evil", "1.0.0"))
    assert meter.firmware == image_hash(b"image-1.0.1")
