"""Model names and firmware minimums."""

from __future__ import annotations

import pytest

from custom_components.shelly_energy.meter.models import (
    GEN1_METER_MODELS,
    RATED_CURRENT_A,
    RPC_METER_MODELS,
    firmware_supported,
    max_channel_power_w,
    model_name,
)
from custom_components.shelly_energy.meter.values import number, strings


def test_model_names() -> None:
    assert model_name("SHEM-3") == "Shelly 3EM"
    assert model_name("S4EM-002CXCEU") == "Shelly EM Gen4"
    assert model_name("XYZ") == "XYZ"


@pytest.mark.parametrize(
    ("generation", "firmware", "supported"),
    [
        (1, "20230913-114244/v1.14.0-gcb84623", True),
        (1, "20201123-000000/v1.9.0", False),
        (2, "20230803-000000/1.0.0", True),
        (2, "20230802-235959/0.14.0", False),
        (3, "20231102-000000/1.0.0", True),
        (5, "20240901-000000/1.0.0", False),  # a newer generation: held to the newest minimum
        (5, "20250101-000000/1.0.0", True),
        (2, "1.6.1", False),
    ],
)
def test_firmware_minimums(generation: int, firmware: str, supported: bool) -> None:
    assert firmware_supported(generation, firmware) is supported


def test_values() -> None:
    assert number(3) == 3.0
    assert number(True) is None
    assert number(float("nan")) is None
    assert number("1") is None
    assert strings(["a", 1, "b"]) == ("a", "b")
    assert strings(None) == ()


def test_max_channel_power() -> None:
    assert max_channel_power_w("SPEM-003CEBEU") == 72_000.0  # 120 A at 300 V, twice over
    assert max_channel_power_w("S4EM-001PXCEU16") == 9_600.0
    assert max_channel_power_w("XYZ") == 240_000.0  # unknown: the largest clamp
    assert all(rated >= 16 for rated in RATED_CURRENT_A.values())
    assert set(RATED_CURRENT_A) == set(GEN1_METER_MODELS) | set(RPC_METER_MODELS)
