"""Gen2+ meters (Pro 3EM, Pro EM-50, EM Gen3/Gen4): JSON-RPC over aioshelly's WebSocket client.

The three-phase profile reports `em:0` + `emdata:0`; single-phase channels report `em1:N` +
`em1data:N`. Both parse into the same snapshot vocabulary.

The meter pushes its status over the open WebSocket (`NotifyStatus`, about every second while
values change): aioshelly merges each notification into the last full status, and the merged
status parses into a snapshot like a polled one. `Shelly.GetStatus` reads the whole status.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, cast

from aiohttp import (
    ClientError,
    ClientSession,
    ClientTimeout,
    ClientWebSocketResponse,
    StreamReader,
)
from aioshelly.common import ConnectionOptions
from aioshelly.const import DEVICE_IO_TIMEOUT
from aioshelly.exceptions import InvalidAuthError, RpcCallError, ShellyError
from aioshelly.rpc_device import RpcDevice, RpcUpdateType
from aioshelly.rpc_device.wsrpc import WsServer

from .address import Address
from .client import (
    Credentials,
    DeviceIdentity,
    error_text,
)
from .digest import DigestAuth
from .errors import (
    MalformedReplyError,
    MeterAuthError,
    MeterConnectionError,
    MeterError,
    NoStoredRecordsError,
    NotEnergyMeterError,
    UnsupportedFirmwareError,
)
from .keepalive import keep_alive
from .models import firmware_supported, model_name
from .records import (
    EARLIEST_VALID_TS,
    MAX_RECORD_PERIOD_S,
    DataColumns,
    EnergyRecord,
    GarbageLog,
    RecordMerger,
    read_data_csv_line,
    read_data_reply,
)
from .snapshot import (
    PHASE_IDS,
    TOTAL_ID,
    ChannelKind,
    ChannelReading,
    MeterChange,
    MeterInfo,
    MeterSnapshot,
)
from .values import (
    LATEST_VALID_TS,
    MAX_UPTIME_S,
    MIN_RSSI,
    flag,
    integer,
    mapping,
    meter_time,
    number,
    strings,
    text,
)

_LOGGER = logging.getLogger(__name__)

MAX_CHANNELS = 3
RPC_USERNAME = "admin"  # Gen2+ devices have one user, always called admin
# Records gathered (from every series) before a batch is yielded: the consumer handles a batch
# in one go on the event loop, so batches stay small enough to take a few milliseconds.
RECORDS_PER_BATCH = 250
# Records downloaded as one data.csv: a day of 1-minute records (about 0.5 MB for a Pro 3EM).
CSV_WINDOW_PERIODS = 1440
# A data.csv streams for seconds at a real device's speed, but never stays silent long.
CSV_TIMEOUT = ClientTimeout(total=None, sock_connect=10, sock_read=30)
CSV_LINES_PER_TURN = 500  # lines parsed between two turns of the event loop
# RPC errors of a device that has no such data component: no handler (404), no such id (-105).
_NO_COMPONENT_CODES = frozenset({404, -105})


class _PhaseKeys:
    """The em:0 / emdata:0 field names of one phase, built once rather than at every poll."""

    __slots__ = ("aprt", "current", "errors", "flags", "freq", "in_", "out", "pf", "power", "volt")

    def __init__(self, phase: str) -> None:
        self.power = f"{phase}_act_power"
        self.aprt = f"{phase}_aprt_power"
        self.current = f"{phase}_current"
        self.volt = f"{phase}_voltage"
        self.pf = f"{phase}_pf"
        self.freq = f"{phase}_freq"
        self.errors = f"{phase}_errors"
        self.flags = f"{phase}_flags"
        self.in_ = f"{phase}_total_act_energy"
        self.out = f"{phase}_total_act_ret_energy"


_PHASE_KEYS = tuple((phase, _PhaseKeys(phase)) for phase in PHASE_IDS)
_CHANNEL_KEYS = tuple((str(n + 1), f"em1:{n}", f"em1data:{n}") for n in range(MAX_CHANNELS))


def layout(status: Mapping[str, Any]) -> tuple[ChannelKind, tuple[str, ...]] | None:
    """Return which meter components a status holds, or None when it holds none."""
    if "em:0" in status:
        return ChannelKind.PHASE, PHASE_IDS
    channels = tuple(channel for channel, em1, _ in _CHANNEL_KEYS if em1 in status)
    return (ChannelKind.CHANNEL, channels) if channels else None


def parse_status(
    status: Mapping[str, Any],
    info: MeterInfo,
    now: float,
    clock: tuple[float, int | None] | None = None,
) -> MeterSnapshot:
    """Parse a Shelly.GetStatus reply into a snapshot of the meter as it was set up.

    The time and uptime are the status's own (`sys`; `now` before the meter synced its clock),
    or `clock` for a status whose `sys` is older than its measurements (a notification merged
    into the last full status). A status of another layout (the profile changed, or the device
    flips between two) reads None for every component the set-up layout has and the status
    lacks, and says what changed. Raises MalformedReplyError when the status holds no meter
    component at all.
    """
    found = layout(status)
    if found is None:
        raise MalformedReplyError(
            "em:0" if info.three_phase else "em1:0", "is missing: no energy meter component"
        )
    system = mapping(status.get("sys"))
    if clock is None:
        at, uptime = (
            meter_time(system.get("unixtime"), now),
            integer(system.get("uptime"), 0, MAX_UPTIME_S),
        )
    else:
        at, uptime = clock
    if info.three_phase:
        channels, total, neutral, errors = _parse_three_phase(status)
    else:
        channels, total, neutral, errors = _parse_channels(status, info.channel_ids), None, None, ()
    switch = status.get("switch:0")
    updates = system.get("available_updates")
    # Wired (Ethernet) devices report rssi 0: that is no signal strength.
    rssi = integer(mapping(status.get("wifi")).get("rssi"), MIN_RSSI, -1)
    has_switch = "switch:0" in status
    changed = None
    if found != (info.channel_kind, info.channel_ids) or has_switch != info.has_switch:
        reported = replace(info, channel_kind=found[0], channel_ids=found[1], has_switch=has_switch)
        changed = info.change_to(reported)
    return MeterSnapshot(
        time=at,
        channels=channels,
        total=total,
        neutral_current=neutral,
        switch_on=flag(switch.get("output")) if isinstance(switch, dict) else None,
        errors=errors,
        rssi=rssi,
        uptime=uptime,
        update_available="stable" in updates if isinstance(updates, dict) else None,
        changed=changed,
    )


def _parse_three_phase(
    status: Mapping[str, Any],
) -> tuple[tuple[ChannelReading, ...], ChannelReading, float | None, tuple[str, ...]]:
    em = mapping(status.get("em:0"))
    data = mapping(status.get("emdata:0"))
    phases = tuple(
        ChannelReading(
            id=phase,
            kind=ChannelKind.PHASE,
            power=number(em.get(keys.power)),
            apparent_power=number(em.get(keys.aprt)),
            current=number(em.get(keys.current)),
            voltage=number(em.get(keys.volt)),
            power_factor=number(em.get(keys.pf)),
            frequency=number(em.get(keys.freq)),
            energy_in=number(data.get(keys.in_)),
            energy_out=number(data.get(keys.out)),
            flags=strings(em.get(keys.flags)),
            errors=strings(em.get(keys.errors)),
        )
        for phase, keys in _PHASE_KEYS
    )
    total = ChannelReading(
        id=TOTAL_ID,
        kind=ChannelKind.TOTAL,
        power=number(em.get("total_act_power")),
        apparent_power=number(em.get("total_aprt_power")),
        current=number(em.get("total_current")),
        energy_in=number(data.get("total_act")),
        energy_out=number(data.get("total_act_ret")),
    )
    return phases, total, number(em.get("n_current")), strings(em.get("errors"))


def _parse_channels(
    status: Mapping[str, Any], channel_ids: tuple[str, ...]
) -> tuple[ChannelReading, ...]:
    readings = []
    for channel, em1_key, data_key in _CHANNEL_KEYS:
        if channel not in channel_ids:
            continue
        em1 = mapping(status.get(em1_key))
        data = mapping(status.get(data_key))
        readings.append(
            ChannelReading(
                id=channel,
                kind=ChannelKind.CHANNEL,
                power=number(em1.get("act_power")),
                apparent_power=number(em1.get("aprt_power")),
                current=number(em1.get("current")),
                voltage=number(em1.get("voltage")),
                power_factor=number(em1.get("pf")),
                frequency=number(em1.get("freq")),
                energy_in=number(data.get("total_act_energy")),
                energy_out=number(data.get("total_act_ret_energy")),
                flags=strings(em1.get("flags")),
                errors=strings(em1.get("errors")),
            )
        )
    return tuple(readings)


def meter_info(shelly: Mapping[str, Any], status: Mapping[str, Any]) -> MeterInfo:
    """Describe a Gen2+ device from its device info and status; refuse one we cannot serve."""
    identity = DeviceIdentity.from_shelly(shelly)
    found = layout(status)
    if found is None:
        raise NotEnergyMeterError(f"{identity.model} has no energy meter component")
    if not firmware_supported(identity.generation, identity.firmware):
        raise UnsupportedFirmwareError(f"firmware {identity.firmware} is too old")
    return MeterInfo(
        mac=identity.mac,
        model=identity.model,
        model_name=model_name(identity.model),
        generation=identity.generation,
        firmware=text(shelly.get("ver")) or identity.firmware,
        name=identity.name,
        profile=text(shelly.get("profile")),
        channel_kind=found[0],
        channel_ids=found[1],
        has_switch="switch:0" in status,
    )


def check_reply(method: str, reply: Any) -> None:
    """Refuse a reply that aioshelly reads while connecting but could not use, naming the field.

    aioshelly indexes into the device info and the dynamic components without checking them,
    so a malformed one would escape it as a KeyError or TypeError.
    """
    if method not in _CHECKED_REPLIES:
        return
    if not isinstance(reply, dict):
        raise MalformedReplyError(method, f"answered {type(reply).__name__}, not an object")
    if method == "Shelly.GetDeviceInfo":
        DeviceIdentity.from_shelly(reply)
        if text(reply.get("id")) is None:
            raise MalformedReplyError("id", "is missing or not text")
        if flag(reply.get("auth_en")) is None:
            raise MalformedReplyError("auth_en", "is not true or false")
    elif method == "Shelly.GetComponents":
        _check_components(reply)


_CHECKED_REPLIES = frozenset(
    {"Shelly.GetDeviceInfo", "Shelly.GetConfig", "Shelly.GetStatus", "Shelly.GetComponents"}
)


def _check_components(reply: Mapping[str, Any]) -> None:
    components = reply.get("components")
    if not isinstance(components, list):
        raise MalformedReplyError("components", "is not a list")
    total = reply.get("total")
    if isinstance(total, bool) or not isinstance(total, int):
        raise MalformedReplyError("total", "is not a count")
    for position, component in enumerate(components):
        field = f"components[{position}]"
        if not isinstance(component, dict):
            raise MalformedReplyError(field, "is not an object")
        if not isinstance(component.get("key"), str):
            raise MalformedReplyError(f"{field}.key", "is not text")
        for part in ("config", "status"):
            if not isinstance(component.get(part), dict):
                raise MalformedReplyError(f"{field}.{part}", "is not an object")
        if not isinstance(component.get("attrs", {}), dict):
            raise MalformedReplyError(f"{field}.attrs", "is not an object")


def read_blocks(method: str, reply: Mapping[str, Any], start: int) -> list[tuple[int, int, int]]:
    """Return the (first stamp, end stamp, period) of a GetRecords reply's blocks after `start`."""
    blocks = reply.get("data_blocks")
    if not isinstance(blocks, list):
        raise MalformedReplyError(f"{method} data_blocks", "is not a list")
    spans = []
    for position, block in enumerate(blocks):
        field = f"{method} data_blocks[{position}]"
        fields = mapping(block)
        ts = integer(fields.get("ts"), 0, LATEST_VALID_TS)
        period = integer(fields.get("period"), 1, MAX_RECORD_PERIOD_S)
        count = integer(fields.get("records"), 0, LATEST_VALID_TS)
        if ts is None:
            raise MalformedReplyError(f"{field}.ts", "is not a time")
        if period is None:
            raise MalformedReplyError(f"{field}.period", "is not a period in seconds")
        if count is None:
            raise MalformedReplyError(f"{field}.records", "is not a count")
        if count > 0 and ts + count * period > start:
            spans.append((ts, ts + count * period, period))
    return spans


@dataclass(frozen=True, slots=True)
class RecordSeries:
    """One series of stored records: an `EMData` (all phases) or `EM1Data` (one channel) id."""

    namespace: str
    ident: int
    columns: DataColumns  # where its channels' energies sit in a GetData row
    positions: tuple[int, ...]  # its channels, as indices into MeterInfo.channel_ids


def record_series(info: MeterInfo) -> list[RecordSeries]:
    """Return the record series of a meter."""
    if info.three_phase:
        names = [
            (f"{phase}_total_act_energy", f"{phase}_total_act_ret_energy")
            for phase in info.channel_ids
        ]
        return [RecordSeries("EMData", 0, DataColumns(names), tuple(range(len(names))))]
    return [
        RecordSeries(
            "EM1Data",
            int(channel) - 1,
            DataColumns([("total_act_energy", "total_act_ret_energy")]),
            (position,),
        )
        for position, channel in enumerate(info.channel_ids)
    ]


def _merge_spans(spans: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Join the overlapping (first, end, period) spans of several series, in time order."""
    merged: list[tuple[int, int, int]] = []
    for first, end, period in sorted(spans):
        if merged and first <= merged[-1][1]:
            last = merged[-1]
            merged[-1] = (last[0], max(last[1], end), last[2])
        else:
            merged.append((first, end, period))
    return merged


class _MeterDevice(RpcDevice):
    """aioshelly's device, with every reply it reads while connecting checked first."""

    async def call_rpc_multiple(
        self,
        calls: Iterable[tuple[str, dict[str, Any] | None]],
        timeout: float = DEVICE_IO_TIMEOUT,  # noqa: ASYNC109 (aioshelly's signature)
    ) -> list[dict[str, Any]]:
        """Call RPC methods; raise MalformedReplyError for a reply aioshelly could not use."""
        calls = list(calls)
        results = await super().call_rpc_multiple(calls, timeout)
        for (method, _), result in zip(calls, results, strict=False):
            check_reply(method, result)
        return results


class _KeepAliveSession:
    """Home Assistant's client session, opening the meter's WebSocket with TCP keepalive."""

    def __init__(self, session: ClientSession, alive_within: float) -> None:
        self._session = session
        self._alive_within = alive_within

    async def ws_connect(self, url: Any, **kwargs: Any) -> ClientWebSocketResponse:
        """Open a WebSocket as the session does; the kernel drops it once silent too long."""
        websocket: ClientWebSocketResponse = await self._session.ws_connect(url, **kwargs)
        if (sock := websocket.get_extra_info("socket")) is not None:
            keep_alive(sock, self._alive_within)
        return websocket

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


class RpcClient:
    """One WebSocket connection to a Gen2+ meter: its notifications, and Shelly.GetStatus."""

    def __init__(
        self,
        session: ClientSession,
        address: Address,
        credentials: Credentials,
        *,
        alive_within: float | None = None,
    ) -> None:
        """Prepare the connection; nothing is sent before connect().

        With `alive_within`, a link that dropped is known lost within that many seconds (see
        keepalive.py). A meter that stops answering over a live link is found at its next
        whole read, and by aioshelly's WebSocket heartbeat.
        """
        self._session = (
            session
            if alive_within is None
            else cast(ClientSession, _KeepAliveSession(session, alive_within))
        )
        self._address = address
        self._credentials = credentials
        self._device: RpcDevice | None = None
        self._info: MeterInfo | None = None
        self._change: MeterChange | None = None  # seen when connecting again
        self._unread = False  # the status read while connecting is the next fetch's
        self._on_push: Callable[[MeterSnapshot], None] | None = None
        self._on_lost: Callable[[], None] | None = None
        self._pushed: MeterSnapshot | None = None  # the latest pushed snapshot
        self._pushes = 0  # how many notifications became snapshots
        self._pushes_at_connect = 0
        # When the meter started, as the last full status read told (its time less its uptime):
        # a notification carries no uptime, it is the time since then.
        self._boot: float | None = None
        self._time = 0.0  # of the latest snapshot: the next is never earlier
        self._csv = True  # records come as data.csv downloads until the meter serves none
        self._opening = asyncio.Lock()  # see _open
        self._digest = (
            DigestAuth(RPC_USERNAME, credentials.password) if credentials.password else None
        )

    @property
    def info(self) -> MeterInfo:
        """Return what the meter is."""
        if self._info is None:
            raise MeterConnectionError("not connected")
        return self._info

    async def connect(self) -> MeterInfo:
        """Open the WebSocket, authenticate, and describe the meter as it is now.

        When connecting again, `info` stays what the meter was set up as; how it differs
        now (a firmware update, another profile) is told by the following snapshots.
        """
        await self.close()
        password = self._credentials.password
        # A host name is passed on unresolved: Home Assistant's HTTP client resolves it (mDNS
        # and IPv6 included); aioshelly's own lookup (create()) knows IPv4 only.
        options = ConnectionOptions(
            ip_address=self._address.host,
            port=self._address.port,
            username=RPC_USERNAME if password else None,
            password=password,
        )
        # aioshelly 13 needs a WsServer to subscribe to (for devices that connect to us); it is
        # never started: the meter's notifications come over the WebSocket we open.
        device = self._device = _MeterDevice(WsServer(), self._session, options)
        device.subscribe_updates(self._updated)
        try:
            await device.initialize()
            info = meter_info(device.shelly, device.status)
        except InvalidAuthError as err:
            await self.close()
            raise MeterAuthError("the meter refused the password") from err
        except (ShellyError, OSError) as err:
            await self.close()
            raise MeterConnectionError(f"cannot connect: {error_text(err)}") from err
        except MeterError:
            await self.close()
            raise
        if self._info is None:
            self._info = info
        else:
            self._change = self._info.change_to(info)
        self._unread = True
        self._pushes_at_connect = self._pushes
        # Pushes tell the time since this start, whatever reads next: another call (a records
        # download) may connect again after a reboot, before the next whole read.
        self._boot = parse_status(device.status, self.info, time.time()).boot_time()
        return info

    def listen(self, on_push: Callable[[MeterSnapshot], None], on_lost: Callable[[], None]) -> None:
        """Hand each pushed snapshot to `on_push` and a lost WebSocket to `on_lost`.

        A WebSocket closed by close() or connect() is not lost.
        """
        self._on_push, self._on_lost = on_push, on_lost

    @property
    def pushing(self) -> bool:
        """Return whether the WebSocket is open and the meter pushed over it.

        A meter pushes every change of its readings (firmware that does not notify is read
        at the interval, as a Gen1 meter is).
        """
        device = self._device
        return device is not None and device.connected and self._pushes > self._pushes_at_connect

    async def _open(self) -> RpcDevice:
        """Return the open connection, connecting again first when it was lost.

        Callers that find it lost together (a whole read, a records download, the switch) open
        one: each would otherwise close the connection the other is opening and use one that is
        not ready, and a WebSocket would stay open that nothing listens to.
        """
        async with self._opening:
            if self._device is None or not self._device.connected:
                await self.connect()
        assert self._device is not None
        return self._device

    async def fetch(self) -> MeterSnapshot:
        """Read the whole status (Shelly.GetStatus), connecting first when the WebSocket was lost.

        The status read while connecting is the first fetch's: a reconnection costs no extra
        request, and a setup's first reading is the status the setup saw. When the meter
        pushed a reading while the reply was on its way, that reading may be the newer one:
        the snapshot carries its measurements (readings never go back in time), with the rest
        of the status as read.
        """
        device = await self._open()
        pushes = self._pushes
        if not self._unread:
            # aioshelly keeps the status it reads: later notifications merge into it.
            await self._rpc("Shelly.GetStatus", device.update_status())
        self._unread = False
        status = device.status
        snapshot = parse_status(status, self.info, time.time())
        self._boot = snapshot.boot_time()
        pushed = self._pushed
        if pushed is not None and self._pushes != pushes:
            snapshot = snapshot._replace(
                channels=pushed.channels,
                total=pushed.total,
                neutral_current=pushed.neutral_current,
                switch_on=pushed.switch_on,
                errors=pushed.errors,
            )
        return self._in_order(snapshot)

    def _updated(self, device: RpcDevice, update_type: RpcUpdateType) -> None:
        """Turn a status notification into a snapshot and hand it on, within this loop turn.

        aioshelly has merged the notification into the last full status. Its stamp (`ts`) is
        the meter's clock; the uptime is the time since the start the last status read told
        (a whole read, or the one read while connecting).
        """
        on_push, info = self._on_push, self._info
        if device is not self._device:
            return  # closed by us, or a socket replaced since
        if update_type is RpcUpdateType.DISCONNECTED:
            if self._on_lost is not None:
                self._on_lost()
            return
        if update_type is not RpcUpdateType.STATUS:
            return
        if on_push is None or info is None:
            return
        status = device.status
        now = time.time()
        at = max(meter_time(status.get("ts"), now), self._time)
        uptime = None if self._boot is None else max(int(at - self._boot), 0)
        try:
            snapshot = self._in_order(parse_status(status, info, now, (at, uptime)))
        except MeterError as err:
            _LOGGER.debug("%s: a notification left no usable status: %s", self._address, err)
            return
        self._pushed = snapshot
        self._pushes += 1
        on_push(snapshot)

    def _in_order(self, snapshot: MeterSnapshot) -> MeterSnapshot:
        """Return the snapshot never before the last one in time, as the meter now is."""
        if snapshot.time < self._time or self._change is not None:
            snapshot = snapshot._replace(
                time=max(snapshot.time, self._time),
                changed=self._change or snapshot.changed,
            )
        self._time = snapshot.time
        return snapshot

    async def set_switch(self, on: bool) -> None:
        """Switch the relay output of a Pro EM / EM Gen3 / Gen4."""
        await self.call("Switch.Set", {"id": 0, "on": on})

    async def records(self, since: int | None = None) -> AsyncIterator[list[EnergyRecord]]:
        """Yield the stored records from `since` (None: all), oldest first, in batches.

        `GetRecords` tells where the blocks of records are (nothing is asked of the holes
        between them). The records of each window are downloaded as `data.csv` (a day's
        records at once); a meter that serves no usable CSV is paged with `GetData` instead,
        a few rows per call (a real Pro 3EM answers 6), one call in flight at a time. The
        three-phase profile keeps one series (`EMData`) for the phases, other layouts one
        (`EM1Data`) per channel, merged here by stamp. Records stamped before the meter synced
        its clock and rows without usable energy are left out; nothing else is changed (the
        consumer applies the user's corrections).
        """
        if self._info is None:
            await self.connect()
        info = self.info
        start = max(since or 0, EARLIEST_VALID_TS)
        series = record_series(info)
        spans = []
        for one in series:
            spans += await self._blocks(one, start)
        merger = RecordMerger(len(info.channel_ids))
        garbage = GarbageLog(str(self._address))
        for first, end, period in _merge_spans(spans):
            window = max(first, start)
            while window < end:
                periods = CSV_WINDOW_PERIODS if self._csv else RECORDS_PER_BATCH
                window_end = min(end, window + periods * period)
                for one in series:
                    if not (
                        self._csv
                        and await self._download_span(
                            one, merger, garbage, first=window, end=window_end, period=period
                        )
                    ):
                        await self._read_span(one, window, window_end, merger, garbage)
                for batch in merger.take(RECORDS_PER_BATCH):
                    yield batch
                window = window_end

    async def _download_span(
        self,
        series: RecordSeries,
        merger: RecordMerger,
        garbage: GarbageLog,
        *,
        first: int,
        end: int,
        period: int,
    ) -> bool:
        """Download one series' records stamped in [first, end) as data.csv into `merger`.

        Return False, having collected nothing, when the meter serves no usable data.csv (it
        is then read with GetData from now on). Raises MeterAuthError for refused credentials
        and MeterConnectionError when the download fails.
        """
        path = f"/{series.namespace.lower()}/{series.ident}/data.csv"
        url = self._address.url(path).with_query(ts=first, end_ts=end - 1, add_keys="true")
        try:
            for attempt in range(2):
                authorization = (
                    None
                    if self._digest is None
                    else self._digest.authorization("GET", url.raw_path_qs)
                )
                async with self._session.get(
                    url,
                    headers=None if authorization is None else {"Authorization": authorization},
                    timeout=CSV_TIMEOUT,
                ) as response:
                    if response.status == 401:
                        if (
                            attempt == 0
                            and self._digest is not None
                            and self._digest.challenged(response.headers.get("WWW-Authenticate"))
                        ):
                            continue  # answer the challenge (a first or a stale nonce)
                        raise MeterAuthError("the meter refused the password")
                    if response.status != 200:
                        return self._no_csv(f"GET {path} answered HTTP {response.status}")
                    return await self._read_csv(
                        response.content,
                        series,
                        merger,
                        garbage,
                        first=first,
                        end=end,
                        period=period,
                    )
        except (ClientError, TimeoutError, OSError) as err:
            raise MeterConnectionError(f"GET {path} failed: {error_text(err)}") from err
        return self._no_csv(f"GET {path} was refused twice")  # pragma: no cover - loop exits

    async def _read_csv(
        self,
        content: StreamReader,
        series: RecordSeries,
        merger: RecordMerger,
        garbage: GarbageLog,
        *,
        first: int,
        end: int,
        period: int,
    ) -> bool:
        """Parse a data.csv as it arrives; return False (nothing collected) when it is none."""
        header = (await content.readline()).decode(errors="replace").strip()
        columns = DataColumns(series.columns.names)
        try:
            columns.update(header.split(",")[1:])
        except MalformedReplyError as err:
            return self._no_csv(f"data.csv begins with no keys: {err}")
        lines = 0
        async for raw in content:
            lines += 1
            if not lines % CSV_LINES_PER_TURN:
                # A fast (or buffered) download must not hold the event loop.
                await asyncio.sleep(0)
            if line := raw.decode(errors="replace").strip():
                read_data_csv_line(
                    line,
                    columns,
                    series.positions,
                    merger,
                    garbage,
                    period=period,
                    since=first,
                    until=end,
                )
        return True

    def _no_csv(self, why: str) -> bool:
        """Read records with GetData from now on: the meter serves no usable data.csv."""
        _LOGGER.debug("%s: reading records with GetData: %s", self._address, why)
        self._csv = False
        return False

    async def _blocks(self, series: RecordSeries, start: int) -> list[tuple[int, int, int]]:
        """Return the (first stamp, end stamp, period) of a series' blocks ending after `start`."""
        method = f"{series.namespace}.GetRecords"
        reply = await self._records_call(method, {"id": series.ident, "ts": start})
        return read_blocks(method, reply, start)

    async def _read_span(
        self,
        series: RecordSeries,
        first: int,
        end: int,
        merger: RecordMerger,
        garbage: GarbageLog,
    ) -> None:
        """Page one series' records stamped in [first, end) into `merger`."""
        method = f"{series.namespace}.GetData"
        ts = first
        while True:
            reply = await self._records_call(
                method, {"id": series.ident, "ts": ts, "end_ts": end - 1}
            )
            read_data_reply(
                reply, series.columns, series.positions, merger, garbage, since=first, until=end
            )
            following = reply.get("next_record_ts")
            if following is None:
                return
            if isinstance(following, bool) or not isinstance(following, int) or following <= ts:
                raise MalformedReplyError(f"{method} next_record_ts", "is not a later time")
            if following >= end:  # the rest is another window's
                return
            ts = following
            # Let the event loop breathe between calls (one is in flight at a time).
            await asyncio.sleep(0)

    async def _records_call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self.call(method, params)
        except MeterConnectionError as err:
            cause = err.__cause__
            if isinstance(cause, RpcCallError) and cause.code in _NO_COMPONENT_CODES:
                raise NoStoredRecordsError(
                    f"the meter keeps no records: {error_text(cause)}"
                ) from cause
            raise

    async def call(self, method: str, params: dict[str, Any] | None) -> dict[str, Any]:
        """Call an RPC method over the open connection, reconnecting first when it was lost."""
        device = await self._open()
        self._unread = False  # old by the time a fetch would use it
        result = await self._rpc(method, device.call_rpc(method, params))
        if not isinstance(result, dict):
            raise MeterConnectionError(f"{method} answered {type(result).__name__}, not an object")
        return result

    @staticmethod
    async def _rpc[T](method: str, call: Awaitable[T]) -> T:
        """Await an aioshelly call, its errors turned into ours."""
        try:
            return await call
        except InvalidAuthError as err:
            raise MeterAuthError("the meter refused the password") from err
        except (ShellyError, OSError) as err:
            raise MeterConnectionError(f"{method} failed: {error_text(err)}") from err

    async def close(self) -> None:
        """Close the WebSocket."""
        self._unread = False
        if self._device is not None:
            device, self._device = self._device, None
            await device.shutdown()
