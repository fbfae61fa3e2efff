"""Gen2+ meters (Pro 3EM, Pro EM-50, EM Gen3/Gen4): JSON-RPC over aioshelly's WebSocket client.

The three-phase profile reports `em:0` + `emdata:0`; single-phase channels report `em1:N` +
`em1data:N`. Both parse into the same snapshot vocabulary.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientSession
from aioshelly.common import ConnectionOptions
from aioshelly.exceptions import InvalidAuthError, RpcCallError, ShellyError
from aioshelly.rpc_device import RpcDevice
from aioshelly.rpc_device.wsrpc import WsServer

from .client import (
    Credentials,
    MeterAuthError,
    MeterChangedError,
    MeterConnectionError,
    NotEnergyMeterError,
    UnsupportedFirmwareError,
    error_text,
)
from .models import firmware_supported, model_name
from .records import (
    EARLIEST_VALID_TS,
    DataColumns,
    EnergyRecord,
    GarbageLog,
    NoStoredRecordsError,
    RecordMerger,
    read_data_reply,
)
from .snapshot import PHASE_IDS, TOTAL_ID, ChannelKind, ChannelReading, MeterInfo, MeterSnapshot
from .values import number, strings

MAX_CHANNELS = 3
RPC_USERNAME = "admin"  # Gen2+ devices have one user, always called admin
# Records gathered (from every series) before a batch is yielded: the consumer handles a batch
# in one go on the event loop, so batches stay small enough to take a few milliseconds.
RECORDS_PER_BATCH = 250
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


def parse_status(status: Mapping[str, Any], info: MeterInfo, now: float) -> MeterSnapshot:
    """Parse a Shelly.GetStatus reply into a snapshot; refuse one of another layout."""
    found = layout(status)
    if found is None:
        raise MeterConnectionError("the status holds no energy meter component")
    if found != (info.channel_kind, info.channel_ids):
        raise MeterChangedError(f"the meter's components changed to {found[1]}")
    system = status.get("sys") or {}
    if found[0] is ChannelKind.PHASE:
        channels, total, neutral, errors = _parse_three_phase(status)
    else:
        channels, total, neutral, errors = _parse_channels(status, info.channel_ids), None, None, ()
    switch = status.get("switch:0")
    wifi = status.get("wifi") or {}
    updates = system.get("available_updates")
    device_time = number(system.get("unixtime"))
    uptime = number(system.get("uptime"))
    rssi = number(wifi.get("rssi"))
    return MeterSnapshot(
        time=device_time or now,
        channels=channels,
        total=total,
        neutral_current=neutral,
        switch_on=bool(switch.get("output")) if isinstance(switch, dict) else None,
        errors=errors,
        # Wired (Ethernet) devices report rssi 0: that is no signal strength.
        rssi=int(rssi) if rssi else None,
        uptime=None if uptime is None else int(uptime),
        update_available="stable" in updates if isinstance(updates, dict) else None,
    )


def _parse_three_phase(
    status: Mapping[str, Any],
) -> tuple[tuple[ChannelReading, ...], ChannelReading, float | None, tuple[str, ...]]:
    em: Mapping[str, Any] = status.get("em:0") or {}
    data: Mapping[str, Any] = status.get("emdata:0") or {}
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
        em1: Mapping[str, Any] = status.get(em1_key) or {}
        data: Mapping[str, Any] = status.get(data_key) or {}
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
    model = str(shelly.get("model"))
    generation = int(shelly.get("gen") or 2)
    firmware = str(shelly.get("fw_id") or "")
    found = layout(status)
    if found is None:
        raise NotEnergyMeterError(f"{model} has no energy meter component")
    if not firmware_supported(generation, firmware):
        raise UnsupportedFirmwareError(f"firmware {firmware} is too old")
    return MeterInfo(
        mac=str(shelly["mac"]).upper(),
        model=model,
        model_name=model_name(model),
        generation=generation,
        firmware=str(shelly.get("ver") or shelly.get("fw_id") or ""),
        name=shelly.get("name") or None,
        profile=shelly.get("profile"),
        channel_kind=found[0],
        channel_ids=found[1],
        has_switch="switch:0" in status,
    )


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


class RpcClient:
    """One WebSocket connection to a Gen2+ meter, polled with Shelly.GetStatus."""

    def __init__(
        self, session: ClientSession, host: str, port: int, credentials: Credentials
    ) -> None:
        """Prepare the connection; nothing is sent before connect()."""
        self._session = session
        self._host = host  # aioshelly 14 types ConnectionOptions.ip_address as optional
        self._options = ConnectionOptions(
            ip_address=host,
            port=port,
            username=RPC_USERNAME if credentials.password else None,
            password=credentials.password,
        )
        self._device: RpcDevice | None = None
        self._info: MeterInfo | None = None

    @property
    def info(self) -> MeterInfo:
        """Return what the meter is."""
        if self._info is None:
            raise MeterConnectionError("not connected")
        return self._info

    async def connect(self) -> MeterInfo:
        """Open the WebSocket, authenticate, and describe the meter."""
        await self.close()
        # aioshelly 13 needs a WsServer to subscribe to; it is never started (we poll).
        device = self._device = await RpcDevice.create(self._session, WsServer(), self._options)
        try:
            await device.initialize()
            info = meter_info(device.shelly, device.status)
        except InvalidAuthError as err:
            await self.close()
            raise MeterAuthError("the meter refused the password") from err
        except (ShellyError, OSError) as err:
            await self.close()
            raise MeterConnectionError(f"cannot connect: {error_text(err)}") from err
        except (UnsupportedFirmwareError, NotEnergyMeterError):
            await self.close()
            raise
        if self._info is not None and info != self._info:
            raise MeterChangedError(f"the meter changed from {self._info} to {info}")
        self._info = info
        return info

    async def fetch(self) -> MeterSnapshot:
        """Poll Shelly.GetStatus, reconnecting first when the WebSocket was lost."""
        status = await self.call("Shelly.GetStatus", None)
        return parse_status(status, self.info, time.time())

    async def set_switch(self, on: bool) -> None:
        """Switch the relay output of a Pro EM / EM Gen3 / Gen4."""
        await self.call("Switch.Set", {"id": 0, "on": on})

    async def records(self, since: int | None = None) -> AsyncIterator[list[EnergyRecord]]:
        """Yield the stored records from `since` (None: all), oldest first, in batches.

        `GetRecords` tells where the blocks of records are (nothing is asked of the holes
        between them); `GetData` then pages through them a few rows per call, one call in
        flight at a time. The three-phase profile keeps one series (`EMData`) for the phases,
        other layouts one (`EM1Data`) per channel, merged here by stamp. Records stamped
        before the meter synced its clock and rows without usable energy are left out;
        nothing else is changed (the consumer applies the user's corrections).
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
        garbage = GarbageLog(self._host)
        for first, end, period in _merge_spans(spans):
            window = max(first, start)
            while window < end:
                window_end = min(end, window + RECORDS_PER_BATCH * period)
                for one in series:
                    await self._read_span(one, window, window_end, merger, garbage)
                if batch := merger.take():
                    yield batch
                    del batch  # not kept while the next window is read (see RecordMerger)
                window = window_end

    async def _blocks(self, series: RecordSeries, start: int) -> list[tuple[int, int, int]]:
        """Return the (first stamp, end stamp, period) of a series' blocks ending after `start`."""
        method = f"{series.namespace}.GetRecords"
        reply = await self._records_call(method, {"id": series.ident, "ts": start})
        blocks = reply.get("data_blocks")
        if not isinstance(blocks, list):
            raise MeterConnectionError(f"{method} answered no data blocks")
        spans = []
        for block in blocks:
            try:
                ts, period, count = int(block["ts"]), int(block["period"]), int(block["records"])
            except (KeyError, TypeError, ValueError) as err:
                raise MeterConnectionError(f"{method} answered a malformed block") from err
            if period <= 0:
                raise MeterConnectionError(f"{method} answered a period of {period} s")
            if count > 0 and ts + count * period > start:
                spans.append((ts, ts + count * period, period))
        return spans

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
                raise MeterConnectionError(f"{method} answered a bad next_record_ts")
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
        if self._device is None or not self._device.connected:
            await self.connect()
        assert self._device is not None
        try:
            result = await self._device.call_rpc(method, params)
        except InvalidAuthError as err:
            raise MeterAuthError("the meter refused the password") from err
        except (ShellyError, OSError) as err:
            raise MeterConnectionError(f"{method} failed: {error_text(err)}") from err
        if not isinstance(result, dict):
            raise MeterConnectionError(f"{method} answered {type(result).__name__}, not an object")
        return result

    async def close(self) -> None:
        """Close the WebSocket."""
        if self._device is not None:
            device, self._device = self._device, None
            await device.shutdown()
