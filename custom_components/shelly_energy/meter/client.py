"""What every meter client offers, and how a device is identified before connecting to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import ClientResponseError

from .snapshot import MeterInfo, MeterSnapshot

if TYPE_CHECKING:
    from .records import EnergyRecord


class MeterError(Exception):
    """A meter could not be read or set."""


class MeterConnectionError(MeterError):
    """The meter did not answer, or answered something unusable."""


class MeterAuthError(MeterError):
    """The meter refused the credentials."""


class NotEnergyMeterError(MeterError):
    """The device is a Shelly, but not an energy meter."""


class UnsupportedFirmwareError(MeterError):
    """The device's firmware is too old for this integration."""


class MeterChangedError(MeterError):
    """The meter changed what it is (profile or firmware): it must be set up again."""


def error_text(err: BaseException) -> str:
    """Describe a transport error for a message without leaking credentials.

    The repr of aiohttp's response errors holds the request's headers (Basic auth included)
    and aioshelly's timeouts carry the calls in flight, so only the status of the former and
    plain text or number arguments of others are told.
    """
    if isinstance(err, ClientResponseError):
        return f"HTTP {err.status}"
    told = []
    for arg in err.args:
        if isinstance(arg, BaseException):
            told.append(error_text(arg))
        elif isinstance(arg, str | int):
            told.append(str(arg))
    name = type(err).__name__
    return f"{name}({', '.join(told)})" if told else name


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a meter needs to let us in. Gen2+ devices always use the user name "admin"."""

    username: str | None = None
    password: str | None = None


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """What a device says about itself in /shelly, which never needs credentials."""

    mac: str
    model: str
    generation: int
    firmware: str
    auth_required: bool
    name: str | None

    @classmethod
    def from_shelly(cls, shelly: dict[str, Any]) -> DeviceIdentity:
        """Read a /shelly reply of any generation (Gen1 has "type" and no "gen")."""
        generation = int(shelly.get("gen") or 1)
        if generation == 1:
            return cls(
                mac=str(shelly["mac"]).upper(),
                model=str(shelly["type"]),
                generation=1,
                firmware=str(shelly["fw"]),
                auth_required=bool(shelly.get("auth")),
                name=None,
            )
        return cls(
            mac=str(shelly["mac"]).upper(),
            model=str(shelly["model"]),
            generation=generation,
            firmware=str(shelly.get("fw_id") or shelly.get("ver") or ""),
            auth_required=bool(shelly.get("auth_en")),
            name=shelly.get("name") or None,
        )


class MeterClient(Protocol):
    """A connection to one meter."""

    @property
    def info(self) -> MeterInfo:
        """Return what the meter is; valid after connect()."""

    async def connect(self) -> MeterInfo:
        """Connect, check the device is an energy meter, and return what it is."""

    async def fetch(self) -> MeterSnapshot:
        """Read the meter once, reconnecting when needed."""

    async def set_switch(self, on: bool) -> None:
        """Switch the meter's relay output."""

    def records(self, since: int | None = None) -> AsyncIterator[list[EnergyRecord]]:
        """Yield the stored records from `since` (None: all), oldest first, in batches."""

    async def close(self) -> None:
        """Release the connection."""
