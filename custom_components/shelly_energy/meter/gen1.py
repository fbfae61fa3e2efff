"""Gen1 meters (Shelly EM, Shelly 3EM): plain HTTP JSON with Basic auth, polled at /status.

CoIoT push is not used: /status carries everything and needs no UDP listener.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from aiohttp import BasicAuth, ClientError, ClientSession, ClientTimeout
from yarl import URL

from .client import (
    Credentials,
    DeviceIdentity,
    MeterAuthError,
    MeterChangedError,
    MeterConnectionError,
    NotEnergyMeterError,
    UnsupportedFirmwareError,
)
from .models import GEN1_METER_MODELS, firmware_supported, model_name
from .snapshot import PHASE_IDS, TOTAL_ID, ChannelKind, ChannelReading, MeterInfo, MeterSnapshot
from .values import number

REQUEST_TIMEOUT = ClientTimeout(total=10)
THREE_PHASE_MODEL = "SHEM-3"
_CHANNEL_IDS = ("1", "2")


def _reading(emeter: Mapping[str, Any], channel_id: str, kind: ChannelKind) -> ChannelReading:
    if emeter.get("is_valid") is False:
        # The meter itself says this measurement is not to be trusted (e.g. just after a boot).
        return ChannelReading(id=channel_id, kind=kind)
    return ChannelReading(
        id=channel_id,
        kind=kind,
        power=number(emeter.get("power")),
        reactive_power=number(emeter.get("reactive")),
        current=number(emeter.get("current")),
        voltage=number(emeter.get("voltage")),
        power_factor=number(emeter.get("pf")),
        energy_in=number(emeter.get("total")),
        energy_out=number(emeter.get("total_returned")),
    )


def _sum(values: list[float | None]) -> float | None:
    return None if None in values else sum(v for v in values if v is not None)


def parse_status(status: Mapping[str, Any], info: MeterInfo, now: float) -> MeterSnapshot:
    """Parse a Gen1 /status reply into a snapshot."""
    emeters = status.get("emeters")
    if not isinstance(emeters, list) or len(emeters) != len(info.channel_ids):
        raise MeterConnectionError("the status does not hold the meter's emeters")
    if not all(isinstance(emeter, dict) for emeter in emeters):
        raise MeterConnectionError("the status holds an emeter that is not an object")
    channels = tuple(
        _reading(emeter, channel_id, info.channel_kind)
        for emeter, channel_id in zip(emeters, info.channel_ids, strict=True)
    )
    total = None
    neutral = None
    if info.three_phase:
        power = number(status.get("total_power"))
        total = ChannelReading(
            id=TOTAL_ID,
            kind=ChannelKind.TOTAL,
            power=_sum([r.power for r in channels]) if power is None else power,
            current=_sum([r.current for r in channels]),
            energy_in=_sum([r.energy_in for r in channels]),
            energy_out=_sum([r.energy_out for r in channels]),
        )
        emeter_n = status.get("emeter_n")
        if isinstance(emeter_n, dict) and emeter_n.get("is_valid") is not False:
            neutral = number(emeter_n.get("current"))
    relays = status.get("relays")
    relay = relays[0] if isinstance(relays, list) and relays else None
    wifi = status.get("wifi_sta") or {}
    update = status.get("update") or {}
    unixtime = number(status.get("unixtime"))
    uptime = number(status.get("uptime"))
    rssi = number(wifi.get("rssi"))
    return MeterSnapshot(
        # Before its clock is synchronised a Gen1 device reports unixtime 0.
        time=unixtime or now,
        channels=channels,
        total=total,
        neutral_current=neutral,
        switch_on=bool(relay.get("ison")) if isinstance(relay, dict) else None,
        rssi=None if rssi is None else int(rssi),
        uptime=None if uptime is None else int(uptime),
        update_available=bool(update["has_update"]) if "has_update" in update else None,
    )


def firmware_of(status: Mapping[str, Any]) -> str | None:
    """Return the firmware a Gen1 /status reports as running."""
    update = status.get("update")
    version = update.get("old_version") if isinstance(update, dict) else None
    return version if isinstance(version, str) else None


class Gen1Client:
    """HTTP polling of a Shelly EM or 3EM."""

    def __init__(
        self, session: ClientSession, host: str, port: int, credentials: Credentials
    ) -> None:
        """Prepare the client; nothing is sent before connect()."""
        self._session = session
        self._base = URL.build(scheme="http", host=host, port=port)
        self._auth = (
            BasicAuth(credentials.username or "admin", credentials.password)
            if credentials.password
            else None
        )
        self._info: MeterInfo | None = None

    @property
    def info(self) -> MeterInfo:
        """Return what the meter is."""
        if self._info is None:
            raise MeterConnectionError("not connected")
        return self._info

    async def connect(self) -> MeterInfo:
        """Identify the meter and check the credentials."""
        identity = DeviceIdentity.from_shelly(await self._get("/shelly", auth=False))
        if identity.model not in GEN1_METER_MODELS:
            raise NotEnergyMeterError(f"{identity.model} is not an energy meter")
        if not firmware_supported(1, identity.firmware):
            raise UnsupportedFirmwareError(f"firmware {identity.firmware} is too old")
        settings = await self._get("/settings")
        three_phase = identity.model == THREE_PHASE_MODEL
        name = settings.get("name")
        relays = settings.get("relays")
        self._info = MeterInfo(
            mac=identity.mac,
            model=identity.model,
            model_name=model_name(identity.model),
            generation=1,
            firmware=identity.firmware,
            name=name if isinstance(name, str) and name else None,
            profile=None,
            channel_kind=ChannelKind.PHASE if three_phase else ChannelKind.CHANNEL,
            channel_ids=PHASE_IDS if three_phase else _CHANNEL_IDS,
            has_switch=isinstance(relays, list) and bool(relays),
        )
        return self._info

    async def fetch(self) -> MeterSnapshot:
        """Read /status once."""
        if self._info is None:
            await self.connect()
        status = await self._get("/status")
        firmware = firmware_of(status)
        if firmware is not None and firmware != self.info.firmware:
            raise MeterChangedError(f"the firmware changed to {firmware}")
        return parse_status(status, self.info, time.time())

    async def set_switch(self, on: bool) -> None:
        """Switch the relay output."""
        await self._get("/relay/0", params={"turn": "on" if on else "off"})

    async def close(self) -> None:
        """Nothing to release: every request is its own."""

    async def _get(
        self, path: str, *, auth: bool = True, params: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        try:
            async with self._session.get(
                self._base.with_path(path),
                params=params,
                auth=self._auth if auth else None,
                timeout=REQUEST_TIMEOUT,
            ) as response:
                if response.status == 401:
                    raise MeterAuthError("the meter refused the user name or password")
                response.raise_for_status()
                body = await response.json(content_type=None)
        except (ClientError, TimeoutError, OSError) as err:
            raise MeterConnectionError(f"GET {path} failed: {err!r}") from err
        except ValueError as err:
            raise MeterConnectionError(f"GET {path} answered invalid JSON") from err
        if not isinstance(body, dict):
            raise MeterConnectionError(f"GET {path} answered {type(body).__name__}, not an object")
        return body
