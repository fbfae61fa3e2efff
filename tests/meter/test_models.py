"""Model names and firmware minimums."""

from __future__ import annotations

import pytest

from custom_components.shelly_energy.meter.models import firmware_supported, model_name
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
