"""Gen1 meters (Shelly EM, Shelly 3EM): plain HTTP JSON with Basic auth, polled at /status.

CoIoT push is not used: /status carries everything and needs no UDP listener.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout

from .address import Address
from .client import (
    Credentials,
    DeviceIdentity,
    error_text,
    get_json,
)
from .counters import restarted
from .errors import (
    MalformedReplyError,
    MeterAuthError,
    MeterConnectionError,
    NoStoredRecordsError,
    NotEnergyMeterError,
    UnsupportedFirmwareError,
)
from .models import GEN1_METER_MODELS, firmware_supported, model_name
from .records import (
    EARLIEST_VALID_TS,
    EnergyRecord,
    GarbageLog,
    RecordMerger,
    read_csv_line,
)
from .snapshot import (
    PHASE_IDS,
    TOTAL_ID,
    ChannelKind,
    ChannelReading,
    MeterChange,
    MeterInfo,
    MeterSnapshot,
    sum_of,
    summed_energies,
)
from .values import (
    MAX_UPTIME_S,
    MIN_RSSI,
    flag,
    integer,
    mapping,
    meter_time,
    number,
    text,
)

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


def parse_status(status: Mapping[str, Any], info: MeterInfo, now: float) -> MeterSnapshot:
    """Parse a Gen1 /status reply into a snapshot.

    Raises MalformedReplyError when it lacks the meter's emeters; any other field that is
    missing or unusable reads None.
    """
    emeters = status.get("emeters")
    if not isinstance(emeters, list) or len(emeters) != len(info.channel_ids):
        raise MalformedReplyError("emeters", f"is not a list of {len(info.channel_ids)} meters")
    channels = tuple(
        _reading(mapping(emeter), channel_id, info.channel_kind)
        for emeter, channel_id in zip(emeters, info.channel_ids, strict=True)
    )
    total = None
    neutral = None
    if info.three_phase:
        power = number(status.get("total_power"))
        energy_in, energy_out = summed_energies(channels)
        total = ChannelReading(
            id=TOTAL_ID,
            kind=ChannelKind.TOTAL,
            power=sum_of(r.power for r in channels) if power is None else power,
            current=sum_of(r.current for r in channels),
            energy_in=energy_in,
            energy_out=energy_out,
        )
        emeter_n = mapping(status.get("emeter_n"))
        if emeter_n.get("is_valid") is not False:
            neutral = number(emeter_n.get("current"))
    relays = status.get("relays")
    relay = mapping(relays[0]) if isinstance(relays, list) and relays else None
    return MeterSnapshot(
        # Before its clock is synchronised a Gen1 device reports unixtime 0.
        time=meter_time(status.get("unixtime"), now),
        channels=channels,
        total=total,
        neutral_current=neutral,
        switch_on=None if relay is None else flag(relay.get("ison")),
        rssi=integer(mapping(status.get("wifi_sta")).get("rssi"), MIN_RSSI, 0),
        uptime=integer(status.get("uptime"), 0, MAX_UPTIME_S),
        update_available=flag(mapping(status.get("update")).get("has_update")),
    )


def parse_settings(identity: DeviceIdentity, settings: Mapping[str, Any]) -> MeterInfo:
    """Describe a Gen1 meter from its /shelly identity and /settings."""
    if identity.model not in GEN1_METER_MODELS:
        raise NotEnergyMeterError(f"{identity.model} is not an energy meter")
    if not firmware_supported(1, identity.firmware):
        raise UnsupportedFirmwareError(f"firmware {identity.firmware} is too old")
    three_phase = identity.model == THREE_PHASE_MODEL
    relays = settings.get("relays")
    return MeterInfo(
        mac=identity.mac,
        model=identity.model,
        model_name=model_name(identity.model),
        generation=1,
        firmware=identity.firmware,
        name=text(settings.get("name")),
        profile=None,
        channel_kind=ChannelKind.PHASE if three_phase else ChannelKind.CHANNEL,
        channel_ids=PHASE_IDS if three_phase else _CHANNEL_IDS,
        has_switch=isinstance(relays, list) and bool(relays),
    )


def basic_authorization(username: str, password: str) -> dict[str, str]:
    """Return the header of HTTP Basic authentication.

    Written out because aiohttp 3.14 (Home Assistant 2026.x) deprecates its `BasicAuth` and
    the `auth` argument, and 3.11 (Home Assistant 2025.4) lacks their successor.
    """
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class Gen1Client:
    """HTTP polling of a Shelly EM or 3EM."""

    def __init__(self, session: ClientSession, address: Address, credentials: Credentials) -> None:
        """Prepare the client; nothing is sent before connect()."""
        self._session = session
        self._address = address
        self._auth_header = (
            basic_authorization(credentials.username or "admin", credentials.password)
            if credentials.password
            else None
        )
        self._info: MeterInfo | None = None
        # When the meter last started, to notice restarts: its uptime may have passed the last
        # one read by the next poll (a restart while it was away).
        self._boot: float | None = None
        self._change: MeterChange | None = None
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
        self._info = parse_settings(identity, await self._get("/settings"))
        return self._info

    def listen(self, on_push: Callable[[MeterSnapshot], None], on_lost: Callable[[], None]) -> None:
        """Push nothing: a Gen1 meter is polled (its CoIoT push needs a UDP listener)."""

    @property
    def pushing(self) -> bool:
        """Return False: a Gen1 meter is polled."""
        return False

    async def fetch(self) -> MeterSnapshot:
        """Read /status once; after a restart, also /shelly for the firmware that runs now."""
        if self._info is None:
            await self.connect()
        snapshot = parse_status(await self._get("/status"), self.info, time.time())
        boot = snapshot.boot_time()
        if restarted(self._boot, boot):
            # A firmware update takes effect with a restart. /shelly is the one source of the
            # firmware: /status's update.old_version differs from it around an update or with
            # a beta, which is no change of the meter.
            identity = DeviceIdentity.from_shelly(await self._get("/shelly", auth=False))
            self._change = (
                None
                if identity.firmware == self.info.firmware
                else MeterChange("firmware", self.info.firmware, identity.firmware)
            )
        if boot is not None:
            self._boot = boot
        return snapshot if self._change is None else snapshot._replace(changed=self._change)

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
        garbage = GarbageLog(str(self._address))
        for position in range(channels):
            await self._read_em_data(position, start, merger, garbage)
        for batch in merger.take(RECORDS_PER_BATCH):
            yield batch

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
                self._address,
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
                self._address.url(path), headers=self._auth_header, timeout=CSV_TIMEOUT
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
        return await get_json(
            self._session,
            self._address.url(path),
            REQUEST_TIMEOUT,
            headers=self._auth_header if auth else None,
            params=params,
        )
