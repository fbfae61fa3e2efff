"""The virtual meter's identity: one id from one stored MAC, whatever the model."""

from __future__ import annotations

import pytest

from custom_components.shelly_energy.virtual_meter.identity import (
    Identity,
    MeterModel,
    new_mac,
    valid_mac,
)


def test_new_macs_are_random_unicast_and_locally_administered() -> None:
    macs = {new_mac() for _ in range(200)}
    assert len(macs) == 200
    for mac in macs:
        assert valid_mac(mac)
        first = int(mac[:2], 16)
        assert first & 0x01 == 0  # unicast
        assert first & 0x02 == 0x02  # locally administered: no real device has it


@pytest.mark.parametrize(
    ("model", "device_id", "model_id", "app", "generation", "profile"),
    [
        (MeterModel.PRO_3EM, "shellypro3em-02a1b2c3d4e5", "SPEM-003CEBEU", "Pro3EM", 2, "triphase"),
        (MeterModel.PRO_EM_50, "shellyproem50-02a1b2c3d4e5", "SPEM-002CEBEU50", "ProEM", 2, None),
        (MeterModel.EM_GEN3, "shellyemg3-02a1b2c3d4e5", "S3EM-002CXCEU", "EMG3", 3, None),
    ],
)
def test_identity_follows_from_model_and_mac(
    model: MeterModel,
    device_id: str,
    model_id: str,
    app: str,
    generation: int,
    profile: str | None,
) -> None:
    identity = Identity(model, "02A1B2C3D4E5")
    assert identity.device_id == device_id
    assert identity.model_id == model_id
    assert identity.app == app
    assert identity.generation == generation
    assert identity.profile == profile
    assert model.three_phase is (model is MeterModel.PRO_3EM)


@pytest.mark.parametrize("mac", ["02a1b2c3d4e5", "02A1B2C3D4", "02:A1:B2:C3:D4:E5", ""])
def test_a_stored_mac_of_another_form_is_refused(mac: str) -> None:
    assert not valid_mac(mac)
    with pytest.raises(ValueError, match="not a MAC"):
        Identity(MeterModel.PRO_3EM, mac)
