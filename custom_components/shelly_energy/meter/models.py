"""The Shelly energy meters this integration knows, by the model id their devices report."""

from __future__ import annotations

import re

# Gen1 meters identify themselves by "type" in /shelly; Gen2+ by "model".
GEN1_METER_MODELS: dict[str, str] = {
    "SHEM": "Shelly EM",
    "SHEM-3": "Shelly 3EM",
}

RPC_METER_MODELS: dict[str, str] = {
    "SPEM-003CEBEU": "Shelly Pro 3EM",
    "SPEM-003CEBEU120": "Shelly Pro 3EM-120",
    "SPEM-003CEBEU400": "Shelly Pro 3EM-400",
    "SPEM-003CEBEU63": "Shelly Pro 3EM-3CT63",
    "SPEM-002CEBEU50": "Shelly Pro EM-50",
    "S3EM-002CXCEU": "Shelly EM Gen3",
    "S3EM-003CXCEU63": "Shelly 3EM-63 Gen3",
    "S4EM-002CXCEU": "Shelly EM Gen4",
    "S4EM-001PXCEU16": "Shelly EM Mini Gen4",
    "S4EM-001CXCEU63": "Shelly EM-63 Gen4",
}


# What each model's current transformers measure at most (A). Unknown models: the largest.
RATED_CURRENT_A: dict[str, float] = {
    "SHEM": 120.0,  # 50 A or 120 A clamps
    "SHEM-3": 120.0,
    "SPEM-003CEBEU": 120.0,
    "SPEM-003CEBEU120": 120.0,
    "SPEM-003CEBEU400": 400.0,
    "SPEM-003CEBEU63": 63.0,
    "SPEM-002CEBEU50": 50.0,
    "S3EM-002CXCEU": 50.0,
    "S3EM-003CXCEU63": 63.0,
    "S4EM-002CXCEU": 50.0,
    "S4EM-001PXCEU16": 16.0,
    "S4EM-001CXCEU63": 63.0,
}
# The highest voltage a channel is taken to see, and the margin over the rated power.
MAX_VOLTAGE_V = 300.0
POWER_MARGIN = 2.0


def max_channel_power_w(model: str) -> float:
    """Return the most one phase or channel of a model can deliver (W), with a margin.

    Energy counters that rise faster than this are not believed (see energy.counter).
    """
    rated = RATED_CURRENT_A.get(model, max(RATED_CURRENT_A.values()))
    return rated * MAX_VOLTAGE_V * POWER_MARGIN


def model_name(model: str) -> str:
    """Return a model's name for people, or the model id itself for a model we do not list."""
    return GEN1_METER_MODELS.get(model) or RPC_METER_MODELS.get(model) or model


# The oldest firmware build date (YYYYMMDD) each generation needs: older builds lack fields or
# methods we read. A generation newer than we know is held to the newest minimum.
MIN_FIRMWARE_DATES = {1: 20201124, 2: 20230803, 3: 20231102, 4: 20240902}
_FIRMWARE_DATE = re.compile(r"^(\d{8})-\d{6}")


def firmware_supported(generation: int, firmware: str) -> bool:
    """Return whether a firmware id (e.g. "20250508-110717/1.6.1-g8dbd358") is new enough."""
    match = _FIRMWARE_DATE.match(firmware)
    if match is None:
        return False
    minimum = MIN_FIRMWARE_DATES.get(generation, max(MIN_FIRMWARE_DATES.values()))
    return int(match[1]) >= minimum
