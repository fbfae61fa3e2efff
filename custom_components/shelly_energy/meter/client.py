"""What every meter client offers, and how a device is identified before connecting to it."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import ClientError, ClientResponseError, ClientSession, ClientTimeout
from yarl import URL

from .errors import MalformedReplyError, MeterAuthError, MeterConnectionError
from .records import EnergyRecord
from .snapshot import MeterInfo, MeterSnapshot
from .values import decode_json, flag, text


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
    def from_shelly(cls, shelly: Mapping[str, Any]) -> DeviceIdentity:
        """Read a /shelly reply of any generation (Gen1 has "type" and no "gen").

        Raises MalformedReplyError naming the field when the reply cannot identify a device.
        """
        generation = shelly.get("gen", 1)
        if isinstance(generation, bool) or not isinstance(generation, int) or generation < 1:
            raise MalformedReplyError("gen", "is not a generation number")
        mac = shelly.get("mac")
        if not isinstance(mac, str) or not _MAC.fullmatch(mac):
            raise MalformedReplyError("mac", "is not a MAC address")
        if generation == 1:
            return cls(
                mac=mac.upper(),
                model=_required_text(shelly, "type"),
                generation=1,
                firmware=_required_text(shelly, "fw"),
                auth_required=flag(shelly.get("auth")) is True,
                name=None,
            )
        return cls(
            mac=mac.upper(),
            model=_required_text(shelly, "model"),
            generation=generation,
            firmware=_required_text(shelly, "fw_id"),
            auth_required=flag(shelly.get("auth_en")) is True,
            name=text(shelly.get("name")),
        )


_MAC = re.compile(r"[0-9A-Fa-f]{12}")


def _required_text(reply: Mapping[str, Any], field: str) -> str:
    value = text(reply.get(field))
    if value is None:
        raise MalformedReplyError(field, "is missing or not text")
    return value


async def get_json(
    session: ClientSession,
    url: URL,
    limits: ClientTimeout,
    *,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """GET a device's JSON object (Gen1 API, /shelly of any generation).

    NaN and Infinity are decoded (each such field reads None later) rather than costing the
    whole reply. Raises MeterAuthError for a 401, MeterConnectionError otherwise.
    """
    try:
        async with session.get(url, params=params, headers=headers, timeout=limits) as response:
            if response.status == 401:
                raise MeterAuthError("the meter refused the user name or password")
            response.raise_for_status()
            body = await response.read()
    except (ClientError, TimeoutError, OSError) as err:
        raise MeterConnectionError(f"GET {url.path} failed: {error_text(err)}") from err
    return read_json_reply(url.path, body)


def read_json_reply(path: str, body: bytes) -> dict[str, Any]:
    """Return the JSON object a device answered at `path` (NaN and Infinity allowed)."""
    try:
        reply = decode_json(body)
    except ValueError as err:
        raise MalformedReplyError(path, "answered no JSON") from err
    if not isinstance(reply, dict):
        raise MalformedReplyError(path, f"answered {type(reply).__name__}, not an object")
    return reply


class MeterClient(Protocol):
    """A connection to one meter."""

    @property
    def info(self) -> MeterInfo:
        """Return what the meter is; valid after connect()."""

    async def connect(self) -> MeterInfo:
        """Connect, check the device is an energy meter, and return what it is."""

    def listen(self, on_push: Callable[[MeterSnapshot], None], on_lost: Callable[[], None]) -> None:
        """Hand each pushed snapshot to `on_push` and a lost push connection to `on_lost`.

        Each is called as it happens, within the loop turn; a Gen1 meter pushes nothing.
        """

    @property
    def pushing(self) -> bool:
        """Return whether the meter pushes its readings over a connection alive now."""

    async def fetch(self) -> MeterSnapshot:
        """Read the meter's whole status once, reconnecting when needed."""

    async def set_switch(self, on: bool) -> None:
        """Switch the meter's relay output."""

    def records(self, since: int | None = None) -> AsyncIterator[list[EnergyRecord]]:
        """Yield the stored records from `since` (None: all), oldest first, in batches."""

    async def close(self) -> None:
        """Release the connection."""
