"""Gen1 meters (Shelly EM, Shelly 3EM): plain HTTP JSON with Basic auth, polled at /status.

CoIoT push is not used: /status carries everything and needs no UDP listener.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout
from yarl import URL

from .client import (
    Credentials,
    DeviceIdentity,
    MeterAuthError,
    MeterChangedError,
    MeterConnectionError,
    NotEnergyMeterError,
    UnsupportedFirmwareError,
    error_text,
)
from .models import GEN1_METER_MODELS, firmware_supported, model_name
from .records import (
    EARLIEST_VALID_TS,
    EnergyRecord,
    GarbageLog,
    NoStoredRecordsError,
    RecordMerger,
    read_csv_line,
)
from .snapshot import PHASE_IDS, TOTAL_ID, ChannelKind, ChannelReading, MeterInfo, MeterSnapshot
from .values import number

_LOGGER = logging.getLogger(__name__)

REQUEST_TIMEOUT = ClientTimeout(total=10)
# em_data.csv is the whole log every time, at ~8 KB/s: minutes in all, but never silent long.
CSV_TIMEOUT = ClientTimeout(total=None, sock_connect=10, sock_read=30)
CSV_PERIOD = 600
CSV_HEADER = "Date/time UTC"
CSV_BUSY = "Another file transfer is in progress!"
CSV_BUSY_RETRIES = 3
CSV_BUSY_WAIT = 10.0  # seconds before asking again for a file the meter is busy sending
RECORDS_PER_BATCH = 1000
CSV_LINES_PER_TURN = 500  # lines parsed between two turns of the event loop
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


def basic_authorization(username: str, password: str) -> dict[str, str]:
    """Return the header of HTTP Basic authentication.

    Written out because aiohttp 3.14 (Home Assistant 2026.x) deprecates its `BasicAuth` and
    the `auth` argument, and 3.11 (Home Assistant 2025.4) lacks their successor.
    """
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class Gen1Client:
    """HTTP polling of a Shelly EM or 3EM."""

    def __init__(
        self, session: ClientSession, host: str, port: int, credentials: Credentials
    ) -> None:
        """Prepare the client; nothing is sent before connect()."""
        self._session = session
        self._base = URL.build(scheme="http", host=host, port=port)
        self._auth_header = (
            basic_authorization(credentials.username or "admin", credentials.password)
            if credentials.password
            else None
        )
        self._info: MeterInfo | None = None
        # The meter sends one file at a time: never ask for a second one.
        self._download = asyncio.Lock()

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

    async def records(self, since: int | None = None) -> AsyncIterator[list[EnergyRecord]]:
        """Yield the stored records from `since` (None: all), oldest first, in batches.

        Each emeter's `em_data.csv` (10-minute buckets) is downloaded in turn and parsed as it
        streams; the channels are merged by stamp (a bucket one lacks reads 0.0 Wh for it).
        Records stamped before the meter synced its clock and rows without usable energy are
        left out; nothing else is changed (the consumer applies the user's corrections).
        """
        if self._info is None:
            await self.connect()
        start = max(since or 0, EARLIEST_VALID_TS)
        channels = len(self.info.channel_ids)
        merger = RecordMerger(channels)
        garbage = GarbageLog(self._base.host or "")
        for position in range(channels):
            await self._read_em_data(position, start, merger, garbage)
        batch = merger.take()
        for first in range(0, len(batch), RECORDS_PER_BATCH):
            yield batch[first : first + RECORDS_PER_BATCH]

    async def _read_em_data(
        self, position: int, start: int, merger: RecordMerger, garbage: GarbageLog
    ) -> None:
        """Download one emeter's em_data.csv into `merger`, waiting while the meter is busy."""
        path = f"/emeter/{position}/em_data.csv"
        for attempt in range(CSV_BUSY_RETRIES + 1):
            if attempt:
                await asyncio.sleep(CSV_BUSY_WAIT)
            async with self._download:
                if await self._stream_em_data(path, position, start, merger, garbage):
                    return
            _LOGGER.debug(
                "%s is busy sending another file; asking again in %s s",
                self._base.host,
                CSV_BUSY_WAIT,
            )
        raise MeterConnectionError(f"GET {path}: the meter stayed busy with another transfer")

    async def _stream_em_data(
        self, path: str, position: int, start: int, merger: RecordMerger, garbage: GarbageLog
    ) -> bool:
        """Parse one download as it arrives; return False when the meter was busy."""
        positions = (position,)
        lines = 0
        try:
            async with self._session.get(
                self._base.with_path(path), headers=self._auth_header, timeout=CSV_TIMEOUT
            ) as response:
                if response.status == 401:
                    raise MeterAuthError("the meter refused the user name or password")
                if response.status == 404:
                    raise NoStoredRecordsError(f"the meter has no {path}")
                response.raise_for_status()
                first = (await response.content.readline()).decode(errors="replace").strip()
                if first.startswith(CSV_BUSY):
                    return False
                if not first.startswith(CSV_HEADER):
                    raise MeterConnectionError(f"GET {path} answered no energy log")
                async for raw in response.content:
                    lines += 1
                    if not lines % CSV_LINES_PER_TURN:
                        # A fast (or buffered) download must not hold the event loop.
                        await asyncio.sleep(0)
                    line = raw.decode(errors="replace").strip()
                    if not line:
                        continue
                    row = read_csv_line(line)
                    if row is None:
                        garbage.drop(None, line)
                        continue
                    ts, imported, exported = row
                    if ts < start:
                        continue
                    if imported is None or exported is None:
                        garbage.drop(ts, line)
                        merger.drop(ts)
                    else:
                        merger.add(ts, CSV_PERIOD, positions, [imported], [exported])
        except (ClientError, TimeoutError, OSError) as err:
            raise MeterConnectionError(f"GET {path} failed: {error_text(err)}") from err
        return True

    async def close(self) -> None:
        """Nothing to release: every request is its own."""

    async def _get(
        self, path: str, *, auth: bool = True, params: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        try:
            async with self._session.get(
                self._base.with_path(path),
                params=params,
                headers=self._auth_header if auth else None,
                timeout=REQUEST_TIMEOUT,
            ) as response:
                if response.status == 401:
                    raise MeterAuthError("the meter refused the user name or password")
                response.raise_for_status()
                body = await response.json(content_type=None)
        except (ClientError, TimeoutError, OSError) as err:
            raise MeterConnectionError(f"GET {path} failed: {error_text(err)}") from err
        except ValueError as err:
            raise MeterConnectionError(f"GET {path} answered invalid JSON") from err
        if not isinstance(body, dict):
            raise MeterConnectionError(f"GET {path} answered {type(body).__name__}, not an object")
        return body
