"""Why a meter could not be read or set: `MeterError` and the kinds that callers tell apart."""

from __future__ import annotations


class MeterError(Exception):
    """A meter could not be read or set."""


class MeterConnectionError(MeterError):
    """The meter did not answer, or answered something unusable."""


class MalformedReplyError(MeterConnectionError):
    """The meter answered, but without a field the reply is of no use without."""

    def __init__(self, field: str, problem: str) -> None:
        """Name the field and what is wrong with it, e.g. ("mac", "is not a MAC address")."""
        super().__init__(f"{field} {problem}")
        self.field = field


class MeterAuthError(MeterError):
    """The meter refused the credentials."""


class NotEnergyMeterError(MeterError):
    """The device is a Shelly, but not an energy meter."""


class UnsupportedFirmwareError(MeterError):
    """The device's firmware is too old for this integration."""


class NoStoredRecordsError(MeterError):
    """The meter keeps no energy records (or refuses to serve them)."""
