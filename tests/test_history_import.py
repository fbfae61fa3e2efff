"""History from the meters' stored records, end to end: statistics, progress, the action."""

from __future__ import annotations

import asyncio
import copy
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any, Literal
from unittest.mock import patch

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.recorder.core import Recorder
from homeassistant.components.recorder.models import StatisticData
from homeassistant.components.recorder.statistics import (
    StatisticsRow,
    async_import_statistics,
    statistics_during_period,
)
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import CoreState, HomeAssistant, State
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.dispatcher import async_dispatcher_send
from homeassistant.helpers.recorder import get_instance
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_capture_events,
    async_fire_time_changed,
)
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
    do_adhoc_statistics,
)

from custom_components.shelly_energy.const import (
    CONF_CAPACITY,
    CONF_DEMAND_PERIOD,
    CONF_GRID,
    CONF_GRID_METERING,
    CONF_GRID_SENSOR,
    CONF_KIND,
    CONF_LOAD,
    CONF_PEAK_DAYS,
    CONF_PEAK_RULE,
    CONF_REVERSED_CHANNELS,
    CONF_SETTLEMENT,
    DOMAIN,
    EVENT_HISTORY_IMPORTED,
    KIND_SITE,
)
from custom_components.shelly_energy.diagnostics import async_get_config_entry_diagnostics
from custom_components.shelly_energy.history_import import (
    SIGNAL_METER_HISTORY_DONE,
    MeterHistory,
    statistic_metadata,
)
from custom_components.shelly_energy.meter.errors import MeterConnectionError, NoStoredRecordsError
from custom_components.shelly_energy.meter.gen1 import Gen1Client
from custom_components.shelly_energy.meter.records import EnergyRecord
from custom_components.shelly_energy.meter.rpc import RpcClient
from simulator import Clock, SimulatedMeter, Simulator

from .conftest import device_with, meter_entry, poll, serve, setup_entry, state_of

HOUR = 3600
START = datetime(2025, 1, 1, tzinfo=UTC)

type Gate = Callable[[int], Awaitable[None]]


def device_records(meter: SimulatedMeter, since: int | None = None) -> list[EnergyRecord]:
    """Return the meter's stored records as the reader gives them (Wh, raw)."""
    store = meter.records
    segments, _ = store.select(since, None, None)
    result = []
    for segment in segments:
        for index in range(segment.count):
            energies = [
                store.energy_mwh(segment.start + index, channel)
                for channel in range(meter.channel_count)
            ]
            result.append(
                EnergyRecord(
                    segment.ts + index * store.period,
                    store.period,
                    tuple(energy_in / 1000 for energy_in, _ in energies),
                    tuple(energy_out / 1000 for _, energy_out in energies),
                )
            )
    return result


class Reader:
    """The meters' record reader, watched: the `since` of every read, stops and refusals."""

    def __init__(self) -> None:
        self.meters: dict[str, SimulatedMeter] = {}
        self.calls: list[int | None] = []
        self.gate: Gate | None = None  # awaited before each batch with the records read so far
        self.unsupported = False
        self.unsupported_macs: set[str] = set()  # meters that keep no records, of several
        self.failing = False  # the meter cannot be read (the run fails and is tried again)

    def watching(
        self, read: Callable[..., AsyncIterator[list[EnergyRecord]]]
    ) -> Callable[..., AsyncIterator[list[EnergyRecord]]]:
        reader = self

        async def records(
            client: Any, since: int | None = None
        ) -> AsyncIterator[list[EnergyRecord]]:
            reader.calls.append(since)
            if reader.unsupported or client.info.mac in reader.unsupported_macs:
                raise NoStoredRecordsError("no records")
            if reader.failing:
                raise MeterConnectionError("the records cannot be read now")
            count = 0
            async for batch in read(client, since):
                if reader.gate is not None:
                    await reader.gate(count)
                count += len(batch)
                yield batch

        return records


@pytest.fixture
def reader() -> Iterator[Reader]:
    watched = Reader()
    with (
        patch.object(RpcClient, "records", watched.watching(RpcClient.records)),
        patch.object(Gen1Client, "records", watched.watching(Gen1Client.records)),
    ):
        yield watched


async def add_meter(
    hass: HomeAssistant,
    simulator: Simulator,
    reader: Reader,
    kind: str = "pro3em",
    options: dict[str, Any] | None = None,
    **meter_options: Any,
) -> tuple[SimulatedMeter, MockConfigEntry]:
    meter = await serve(simulator, kind, **meter_options)
    entry = meter_entry(simulator, meter, options=options)
    reader.meters[meter.mac] = meter
    await setup_entry(hass, entry)
    await settle(hass)
    return meter, entry


async def settle(hass: HomeAssistant) -> None:
    await hass.async_block_till_done(wait_background_tasks=True)
    await async_wait_recording_done(hass)


async def add_site(
    hass: HomeAssistant, options: dict[str, Any], title: str = "Home"
) -> MockConfigEntry:
    """Set up an energy site with these options, and let its history run."""
    site = MockConfigEntry(domain=DOMAIN, title=title, data={CONF_KIND: KIND_SITE}, options=options)
    await setup_entry(hass, site)
    await settle(hass)
    return site


def expected_hours(
    records: list[EnergyRecord], channel: int | None, *, out: bool = False
) -> dict[int, float]:
    """Return a channel's (None: all channels') energy per complete hour, kWh."""
    hours: dict[int, float] = defaultdict(float)
    for record in records:
        values = record.energy_out if out else record.energy_in
        hours[record.ts - record.ts % HOUR] += sum(values) if channel is None else values[channel]
    end = records[-1].ts + records[-1].period
    return {hour: wh / 1000 for hour, wh in hours.items() if hour + HOUR <= end}


def production_hours(records: list[EnergyRecord], channel: int) -> dict[int, float]:
    """Return a solar channel's production per hour (kWh): what flowed out of it, less what its
    standby drew, each record's interval."""
    hours: dict[int, float] = defaultdict(float)
    for record in records:
        produced = record.energy_out[channel] - record.energy_in[channel]
        hours[record.ts - record.ts % HOUR] += max(produced, 0.0) / 1000
    return hours


async def rows(
    hass: HomeAssistant,
    entity_id: str,
    period: Literal["5minute", "hour"] = "hour",
    start: datetime = START,
    end: datetime | None = None,
) -> list[StatisticsRow]:
    """Return a series' statistics rows of a period (hourly or 5-minute) from `start`."""
    found = await get_instance(hass).async_add_executor_job(
        statistics_during_period,
        hass,
        start,
        end,
        {entity_id},
        period,
        None,
        {"state", "sum"},
    )
    return found.get(entity_id, [])


async def bars(
    hass: HomeAssistant, entity_id: str, period: Literal["5minute", "hour"] = "hour"
) -> dict[int, float]:
    """Return each row's bar (its sum minus the previous row's), rounded to the mWh."""
    sums = [(int(row["start"]), row["sum"] or 0.0) for row in await rows(hass, entity_id, period)]
    return {start: round(total - before, 6) for (_, before), (start, total) in pairwise(sums)}


def history_state(hass: HomeAssistant) -> State:
    state = hass.states.get("sensor.meter_history_import")
    assert state is not None
    return state


def rounded(hours: dict[int, float]) -> dict[int, float]:
    return {hour: round(kwh, 6) for hour, kwh in hours.items()}


@pytest.fixture
def clock_at_0020(sim_clock: Clock, freezer: FrozenDateTimeFactory) -> Clock:
    """The simulator and Home Assistant at 2025-06-01 00:20 UTC."""
    sim_clock.advance(20 * 60)
    freezer.move_to(datetime.fromtimestamp(sim_clock.now(), UTC))
    return sim_clock


async def test_day_one_import_gives_the_device_hours(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    simulator: Simulator,
    reader: Reader,
    clock_at_0020: Clock,
) -> None:
    events = async_capture_events(hass, EVENT_HISTORY_IMPORTED)
    meter, entry = await add_meter(
        hass,
        simulator,
        reader,
        history_days=2,
        options={CONF_REVERSED_CHANNELS: ["b"]},
    )
    records = device_records(meter)
    assert len(records) == 2 * 1440
    hours = expected_hours(records, 0)
    first_hour = min(hours)
    # Provisional rows: the hour before the first record (the base), then every complete hour.
    assert len(hours) == 48
    assert await bars(hass, "sensor.meter_phase_a_energy_imported") == rounded(hours)
    # Phase b's CT is reversed: its imported energy is what the device counted out.
    assert await bars(hass, "sensor.meter_phase_b_energy_imported") == rounded(
        expected_hours(records, 1, out=True)
    )
    total = expected_hours(records, 0)
    for hour, kwh in expected_hours(records, 2).items():
        total[hour] += kwh
    for hour, kwh in expected_hours(records, 1, out=True).items():
        total[hour] += kwh
    assert await bars(hass, "sensor.meter_total_energy_imported") == rounded(total)
    found = await rows(hass, "sensor.meter_phase_a_energy_imported")
    assert int(found[0]["start"]) == first_hour - HOUR
    # The imported history starts at 0: its first hour shows that hour's own energy.
    assert found[0]["sum"] == 0.0
    assert found[-1]["sum"] == pytest.approx(sum(hours.values()))
    # The progress and the event.
    state = history_state(hass)
    assert state.state == "100.0"
    assert state.attributes["status"] == "done"
    # As soon as the run ends: read within a second, the last batches were not shown yet.
    assert state.attributes["records"] == len(records)
    assert (
        state.attributes["imported_until"]
        == datetime.fromtimestamp(records[-1].ts + records[-1].period, UTC).isoformat()
    )
    device = device_with(hass, meter.mac)
    assert len(events) == 1
    assert events[0].data["entry_id"] == entry.entry_id
    assert events[0].data["device_id"] == device.id
    assert events[0].data["records"] == len(records)
    assert events[0].data["hours"] == 49
    # Running again changes nothing.
    before = await rows(hass, "sensor.meter_phase_a_energy_imported")
    await entry.runtime_data.history.async_run()
    await settle(hass)
    assert await rows(hass, "sensor.meter_phase_a_energy_imported") == before
    assert events[-1].data["hours"] == 0


async def live_until(
    hass: HomeAssistant,
    clock: Clock,
    freezer: FrozenDateTimeFactory,
    end: datetime,
    *,
    by_the_minute: bool = False,
) -> None:
    """Let the meter and Home Assistant run, compiling statistics every 5 minutes.

    The clock moves 5 minutes at a time, or `by_the_minute` (and to a second before each hour,
    so that the hour's last reading is at its very end).
    """
    while clock.now() < end.timestamp():
        now = clock.now()
        step = 300.0
        if by_the_minute:
            step = 59.0 if now % HOUR == HOUR - 60 else 1.0 if now % HOUR == HOUR - 1 else 60.0
        clock.advance(step)
        freezer.tick(timedelta(seconds=step))
        async_fire_time_changed(hass)
        await hass.async_block_till_done(wait_background_tasks=True)
        if clock.now() % 300 == 0:
            do_adhoc_statistics(hass, start=datetime.fromtimestamp(clock.now() - 300, UTC))
            await settle(hass)


MIDNIGHT = datetime(2025, 6, 1, tzinfo=UTC)
PHASE_A_IMPORTED = "sensor.meter_phase_a_energy_imported"


async def add_a_meter_with_a_day_of_records(
    hass: HomeAssistant, simulator: Simulator, reader: Reader
) -> tuple[SimulatedMeter, MockConfigEntry]:
    """Add a Pro 3EM keeping a day of records, its phase A importing 20 Wh a minute from now."""
    meter = await serve(simulator, "pro3em", history_days=1)
    meter.set_power("a", 1200.0)
    entry = meter_entry(simulator, meter)
    reader.meters[meter.mac] = meter
    await setup_entry(hass, entry)
    await settle(hass)
    return meter, entry


async def assert_live_hours_continue_the_imported(
    hass: HomeAssistant, meter: SimulatedMeter
) -> dict[int, float]:
    """Assert phase A's hours up to 02:00 (live from 00:20); return its bars."""
    records = device_records(meter)
    device = rounded(expected_hours(records, 0))
    result = await bars(hass, PHASE_A_IMPORTED)
    hour0 = int(MIDNIGHT.timestamp())
    assert {hour: result[hour] for hour in device if hour < hour0} == {
        hour: kwh for hour, kwh in device.items() if hour < hour0
    }
    # The first live hour: the records' 00:00-00:20, then what the recorder saw from the first
    # state on (00:20 to the last state of the hour, read every 5 minutes here: 00:55).
    assert result[hour0] == pytest.approx(device_first_third(records) + 0.7)
    # The next hour is the recorder's own, continuing from the same sum: 1.2 kWh.
    assert result[hour0 + HOUR] == 1.2
    return result


async def test_recorder_statistics_continue_after_the_import(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    simulator: Simulator,
    reader: Reader,
    clock_at_0020: Clock,
    freezer: FrozenDateTimeFactory,
) -> None:
    meter, entry = await add_a_meter_with_a_day_of_records(hass, simulator, reader)
    # The recorder sums the new entity from 0 at its first state (00:20). Once its first
    # 5-minute statistics exist, its rows move up to continue the imported hours.
    await live_until(hass, clock_at_0020, freezer, MIDNIGHT + timedelta(hours=2, minutes=5))
    result = await assert_live_hours_continue_the_imported(hass, meter)
    found = await rows(hass, PHASE_A_IMPORTED)
    assert found[0]["sum"] == 0.0
    assert all(bar >= 0 for bar in result.values())
    assert history_state(hass).attributes["status"] == "done"
    assert "pending_shifts" not in entry.runtime_data.history.diagnostics()["stored"]


async def test_a_kill_right_after_the_rows_moved_to_continue_the_import_moves_them_once(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    simulator: Simulator,
    reader: Reader,
    clock_at_0020: Clock,
    freezer: FrozenDateTimeFactory,
    hass_storage: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Killed just after the run that moved the recorder's rows: the move is already on disk.

    The kill loses what was not written yet; the next start must not move the rows again.
    """
    meter, entry = await add_a_meter_with_a_day_of_records(hass, simulator, reader)
    on_disk: dict[str, Any] = {}
    run = MeterHistory.async_run

    async def run_noting_the_disk(self: MeterHistory, since: int | None = None) -> None:
        moving = bool(self._state.get("pending_shifts"))
        await run(self, since)
        if moving and not self._state.get("pending_shifts") and not on_disk:
            on_disk.update(
                {key: copy.deepcopy(data) for key, data in hass_storage.items() if DOMAIN in key}
            )

    monkeypatch.setattr(MeterHistory, "async_run", run_noting_the_disk)
    step = MIDNIGHT + timedelta(minutes=20)
    while not on_disk:
        step += timedelta(minutes=5)
        await live_until(hass, clock_at_0020, freezer, step)
    # Killed then: what was not on disk is lost. Then Home Assistant starts again.
    await hass.config_entries.async_unload(entry.entry_id)
    for key in [key for key in hass_storage if DOMAIN in key]:
        del hass_storage[key]
    hass_storage.update(on_disk)
    await hass.config_entries.async_setup(entry.entry_id)
    await live_until(hass, clock_at_0020, freezer, MIDNIGHT + timedelta(hours=2, minutes=5))
    # As without the kill (test_recorder_statistics_continue_after_the_import).
    await assert_live_hours_continue_the_imported(hass, meter)


async def test_a_week_of_records_after_hours_of_live_statistics(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    simulator: Simulator,
    reader: Reader,
    clock_at_0020: Clock,
    freezer: FrozenDateTimeFactory,
) -> None:
    """Every imported and recorded hour is the records' energy of that hour, none negative."""
    meter = await serve(simulator, "pro3em", history_days=7)
    for phase, watts in (("a", 1200.0), ("b", -600.0), ("c", 300.0)):
        meter.set_power(phase, watts)
    # Read at every step of the clock (each moves it a minute, or to a second before an hour).
    entry = meter_entry(simulator, meter, options={"poll_interval": 1})
    reader.meters[meter.mac] = meter
    reader.failing = True  # Home Assistant records for hours before the import can run
    await setup_entry(hass, entry)
    await settle(hass)
    assert history_state(hass).attributes["status"] == "failed"
    midnight = datetime(2025, 6, 1, tzinfo=UTC)
    await live_until(
        hass, clock_at_0020, freezer, midnight + timedelta(hours=3), by_the_minute=True
    )
    reader.failing = False
    # The hourly check at 03:20 imports the week; the recorder's three hours move up to it.
    await live_until(
        hass, clock_at_0020, freezer, midnight + timedelta(hours=4, minutes=5), by_the_minute=True
    )
    assert history_state(hass).attributes["status"] == "done"
    records = device_records(meter)
    first_live = int(midnight.timestamp())
    for channel, phase in enumerate("abc"):
        for out, direction in ((False, "imported"), (True, "exported")):
            entity_id = f"sensor.meter_phase_{phase}_energy_{direction}"
            device = expected_hours(records, channel, out=out)
            result = await bars(hass, entity_id)
            assert min(result.values()) >= 0, entity_id
            found = await rows(hass, entity_id)
            assert found[0]["sum"] == 0.0  # the first day starts at 0: no negative bar
            assert int(found[0]["start"]) == min(device) - HOUR
            # Every hour, the first live one (set up at 00:20) and those after included.
            for hour, kwh in device.items():
                if hour < first_live + 4 * HOUR:
                    assert result[hour] == pytest.approx(kwh, abs=0.0015), (entity_id, hour)


def device_first_third(records: list[EnergyRecord]) -> float:
    """Return phase a's energy (kWh) of the history's last 20 minutes (00:00-00:20)."""
    midnight = int(datetime(2025, 6, 1, tzinfo=UTC).timestamp())
    return sum(r.energy_in[0] for r in records if midnight <= r.ts < midnight + 1200) / 1000


def live_rows(start: int, hours: dict[int, float], skip: set[int]) -> list[StatisticData]:
    """Return rows as the recorder compiles them: sums of the device's hours, none in `skip`."""
    result: list[StatisticData] = []
    total = 0.0
    for hour in sorted(hours):
        total += hours[hour]
        if hour >= start and hour not in skip:
            result.append(
                {"start": datetime.fromtimestamp(hour, UTC), "state": total, "sum": total}
            )
    return result


async def test_five_hours_of_downtime_are_filled(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    simulator: Simulator,
    reader: Reader,
    clock_at_0020: Clock,
) -> None:
    meter = await serve(simulator, "pro3em", history_days=1)
    records = device_records(meter)
    device = expected_hours(records, 1)  # phase b: no solar, some consumption every hour
    hours = sorted(device)
    # Home Assistant was down for five hours (of some consumption), then caught up.
    first = next(i for i in range(4, 17) if all(device[hour] > 0.01 for hour in hours[i : i + 6]))
    down = set(hours[first : first + 5])
    entity_id = "sensor.meter_phase_b_energy_imported"
    # What the recorder compiled live: every hour since the third, the catch-up jump after
    # the downtime in the first hour back.
    async_import_statistics(
        hass,
        statistic_metadata(entity_id),  # type: ignore[arg-type]
        live_rows(hours[2], device, down),
    )
    await async_wait_recording_done(hass)
    before = await bars(hass, entity_id)
    back = hours[first + 5]
    assert before[back] == pytest.approx(sum(device[hour] for hour in hours[first : first + 6]))
    total = (await rows(hass, entity_id))[-1]["sum"]
    entry = meter_entry(simulator, meter)
    reader.meters[meter.mac] = meter
    await setup_entry(hass, entry)
    await settle(hass)
    after = await bars(hass, entity_id)
    assert after == rounded(device)  # day one and the downtime: the device's hours
    assert (await rows(hass, entity_id))[-1]["sum"] == total  # nothing counted twice
    assert {hour: after[hour] for hour in before if hour != back} == {
        hour: bar for hour, bar in before.items() if hour != back
    }  # live hours untouched
    # Running again writes the same: nothing.
    written = await rows(hass, entity_id)
    await entry.runtime_data.history.async_run()
    await settle(hass)
    assert await rows(hass, entity_id) == written


async def test_gap_filled_hourly_reading_only_what_it_needs(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    simulator: Simulator,
    reader: Reader,
    clock_at_0020: Clock,
    freezer: FrozenDateTimeFactory,
) -> None:
    events = async_capture_events(hass, EVENT_HISTORY_IMPORTED)
    meter, _ = await add_meter(hass, simulator, reader, history_days=1)
    entity_id = "sensor.meter_phase_a_energy_imported"
    # The meter was unreachable for two hours; then the recorder compiled the catch-up.
    midnight = int(datetime(2025, 6, 1, tzinfo=UTC).timestamp())
    clock_at_0020.advance(3 * HOUR)
    device = expected_hours(device_records(meter), 0)
    imported = await rows(hass, entity_id)
    assert imported[-1]["sum"] == pytest.approx(
        sum(kwh for hour, kwh in device.items() if hour < midnight)
    )
    total = device[midnight]
    async_import_statistics(
        hass,
        statistic_metadata(entity_id),  # type: ignore[arg-type]
        [
            {"start": datetime.fromtimestamp(midnight, UTC), "state": 0.0, "sum": total},
            {"start": datetime.fromtimestamp(midnight + HOUR, UTC), "state": 0.0, "sum": total},
            {
                "start": datetime.fromtimestamp(midnight + 2 * HOUR, UTC),
                "state": 0.0,
                "sum": total + device[midnight + HOUR] + device[midnight + 2 * HOUR],
            },
        ],
    )
    await async_wait_recording_done(hass)
    freezer.tick(timedelta(hours=3))
    async_fire_time_changed(hass)  # the hourly check
    await settle(hass)
    # Only the records since the first hour needed: the gap's, and the hour before it (the
    # outage may have begun in it).
    assert reader.calls == [None, midnight - HOUR]
    assert events[-1].data["records"] == 4 * 60 + 20
    result = await bars(hass, entity_id)
    assert result[midnight + HOUR] == round(device[midnight + HOUR], 6)
    assert result[midnight + 2 * HOUR] == round(device[midnight + 2 * HOUR], 6)
    # Nothing more to do: the next check reads nothing.
    calls = len(reader.calls)
    freezer.tick(timedelta(hours=1))
    async_fire_time_changed(hass)
    await settle(hass)
    assert len(reader.calls) == calls


async def test_interrupted_import_resumes(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    monkeypatch: pytest.MonkeyPatch,
    simulator: Simulator,
    reader: Reader,
    clock_at_0020: Clock,
) -> None:
    blocked = asyncio.Event()
    read: list[int] = []

    async def stop_midway(count: int) -> None:
        if count >= 1500:
            read.append(count)
            blocked.set()
            await asyncio.Event().wait()  # until cancelled

    reader.gate = stop_midway
    # The progress is kept after every batch, not once a second.
    monkeypatch.setattr("custom_components.shelly_energy.history_import.PROGRESS_INTERVAL", 0.0)
    meter = await serve(simulator, "pro3em", history_days=2)
    entry = meter_entry(simulator, meter)
    reader.meters[meter.mac] = meter
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await blocked.wait()
    assert history_state(hass).attributes["status"] == "importing"
    await hass.config_entries.async_unload(entry.entry_id)
    await settle(hass)
    assert await rows(hass, "sensor.meter_phase_a_energy_imported") == []
    reader.gate = None
    await hass.config_entries.async_setup(entry.entry_id)
    await settle(hass)
    records = device_records(meter)
    assert reader.calls == [None, records[read[0]].ts]  # resumed after the records read
    assert await bars(hass, "sensor.meter_phase_a_energy_imported") == rounded(
        expected_hours(records, 0)
    )
    state = history_state(hass)
    assert state.attributes["records"] == len(records)


async def test_gen1_records(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    simulator: Simulator,
    reader: Reader,
    clock_at_0020: Clock,
) -> None:
    meter, _ = await add_meter(hass, simulator, reader, "gen1_em", history_days=1)
    # em_data.csv tells each record's Wh with two decimals.
    records = [
        EnergyRecord(
            record.ts,
            record.period,
            tuple(round(wh, 2) for wh in record.energy_in),
            tuple(round(wh, 2) for wh in record.energy_out),
        )
        for record in device_records(meter)
    ]
    assert records[0].period == 600
    assert reader.calls == [None]
    for channel in (0, 1):
        for out, name in ((False, "imported"), (True, "exported")):
            assert await bars(hass, f"sensor.meter_channel_{channel + 1}_energy_{name}") == (
                rounded(expected_hours(records, channel, out=out))
            )


async def test_bogus_timestamps_are_dropped(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    simulator: Simulator,
    reader: Reader,
    clock_at_0020: Clock,
) -> None:
    meter = await serve(simulator, "pro3em", history_days=1)
    meter.bogus_records(600)  # more than a whole batch
    entry = meter_entry(simulator, meter)
    reader.meters[meter.mac] = meter
    await setup_entry(hass, entry)
    await settle(hass)
    records = device_records(meter)
    assert records[0].ts == 1000
    found = await rows(hass, "sensor.meter_phase_a_energy_imported")
    assert int(found[0]["start"]) == records[600].ts - records[600].ts % HOUR - HOUR
    assert await bars(hass, "sensor.meter_phase_a_energy_imported") == rounded(
        expected_hours(records[600:], 0)
    )
    assert state_of(hass, "sensor.meter_history_import") == "100.0"
    assert history_state(hass).attributes["records"] == len(records) - 600


async def test_site_history(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    simulator: Simulator,
    reader: Reader,
    clock_at_0020: Clock,
) -> None:
    events = async_capture_events(hass, EVENT_HISTORY_IMPORTED)
    meter, _ = await add_meter(
        hass, simulator, reader, wiring=["grid@a", "solar@a", "load@b"], history_days=1
    )
    site = await add_site(
        hass,
        {
            CONF_GRID: [f"{meter.mac}:a", f"{meter.mac}:b"],
            "solar": [f"{meter.mac}:c"],
            CONF_GRID_METERING: "balanced",
        },
    )
    records = device_records(meter)
    # Per minute: grid import max(a + b - out, 0) balanced; production c's out - in.
    grid_in: dict[int, float] = defaultdict(float)
    solar: dict[int, float] = defaultdict(float)
    home: dict[int, float] = defaultdict(float)
    for r in records:
        hour = r.ts - r.ts % HOUR
        net = r.energy_in[0] + r.energy_in[1] - r.energy_out[0] - r.energy_out[1]
        produced = max(r.energy_out[2] - r.energy_in[2], 0.0)
        grid_in[hour] += max(net, 0.0)
        solar[hour] += produced
        home[hour] += max(net + produced, 0.0)
    complete = set(expected_hours(records, 0))
    for entity_id, expected in (
        ("sensor.home_grid_import_energy", grid_in),
        ("sensor.home_solar_energy", solar),
        ("sensor.home_consumption_energy", home),
    ):
        result = await bars(hass, entity_id)
        assert result == pytest.approx(
            {hour: wh / 1000 for hour, wh in expected.items() if hour in complete}, abs=1e-6
        ), entity_id
    site_device = device_with(hass, f"site_{site.entry_id}")
    assert events[-1].data["device_id"] == site_device.id
    assert events[-1].data["records"] == len(records)
    history = site.runtime_data.history
    assert history is not None
    assert history.progress.records == len(records)
    assert history.progress.imported_until == datetime.fromtimestamp(
        records[-1].ts + records[-1].period, UTC
    )
    # A backfill of the meter from a day keeps only that day's intervals: the site's own
    # backfill from an earlier day reads the records again, and changes nothing.
    meter_device = device_with(hass, meter.mac)
    for device_id, since in ((meter_device.id, "2025-05-31"), (site_device.id, "2025-05-30")):
        response = await hass.services.async_call(
            DOMAIN,
            "backfill",
            {"device_id": device_id, "since": since},
            blocking=True,
            return_response=True,
        )
        assert response is not None
        assert response["hours"] == 0
    assert reader.calls[-1] == int(datetime(2025, 5, 30, 7, tzinfo=UTC).timestamp())
    # The meter's backfill started a run of the site: it ends before the recorder closes (its
    # database closed under a query crashes the process).
    await settle(hass)


async def test_a_site_on_a_grid_power_sensor_gets_the_history_its_records_tell(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    simulator: Simulator,
    reader: Reader,
    clock_at_0020: Clock,
    freezer: FrozenDateTimeFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The grid is a P1 meter's power in Home Assistant: the history that needs no grid's energy.

    The load's, and the solar's, from the meter's records.
    """
    meter, _ = await add_meter(
        hass, simulator, reader, wiring=["grid@a", "solar@a", "load@b"], history_days=1
    )
    hass.states.async_set(
        "sensor.p1_power", "300", {"unit_of_measurement": "W", "device_class": "power"}
    )
    site = await add_site(
        hass,
        {
            CONF_GRID_SENSOR: "sensor.p1_power",
            "solar": [f"{meter.mac}:b"],
            CONF_LOAD: [f"{meter.mac}:c"],
        },
    )
    history = site.runtime_data.history
    assert history is not None
    assert history.progress.status == "done"
    records = device_records(meter)
    assert await bars(hass, "sensor.home_meter_phase_c_energy") == pytest.approx(
        expected_hours(records, 2), abs=1e-6
    )
    produced = production_hours(records, 1)
    solar = await bars(hass, "sensor.home_solar_energy")
    assert len(solar) == 24
    assert solar == pytest.approx({hour: produced[hour] for hour in solar}, abs=1e-6)
    assert sum(solar.values()) > 1.0  # a day's sun
    # The flows that need the grid's energy: none from the records.
    for name in ("grid_import", "grid_export", "consumption", "self_consumed_solar"):
        assert await rows(hass, f"sensor.home_{name}_energy") == [], name
    # The hourly runs go on without a word.
    freezer.tick(timedelta(hours=1))
    async_fire_time_changed(hass)
    await settle(hass)
    assert history.progress.status == "done"
    assert [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("custom_components") and r.levelno >= logging.WARNING
    ] == []


async def test_site_history_of_loads(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    simulator: Simulator,
    reader: Reader,
    clock_at_0020: Clock,
    freezer: FrozenDateTimeFactory,
) -> None:
    mains, _ = await add_meter(hass, simulator, reader, history_days=1)
    # A sub-meter in the same house: a balcony panel's circuit (it feeds the home) and the
    # fridge's, each a load of the site.
    circuits = simulator.add_meter(
        "proem50",
        seed=mains.seed,
        mac="A0DD6C0000F1",
        wiring=["solar", "fridge"],
        history_days=1,
        flash_save_s=7200,  # its counters are saved at 00:00 and 02:00
    )
    await simulator.start()
    reader.meters[circuits.mac] = circuits
    await setup_entry(hass, meter_entry(simulator, circuits, title="Circuits"))
    await settle(hass)
    site = MockConfigEntry(
        domain=DOMAIN,
        title="Home",
        data={CONF_KIND: KIND_SITE},
        options={
            CONF_GRID: [f"{mains.mac}:{phase}" for phase in "abc"],
            CONF_LOAD: [f"{circuits.mac}:1", f"{circuits.mac}:2"],
        },
    )
    site.add_to_hass(hass)
    # The panel's returned energy enabled (it is disabled by default), the fridge's left so.
    er.async_get(hass).async_get_or_create(
        "sensor",
        DOMAIN,
        f"{site.entry_id}_load_{circuits.mac}:1_returned_energy",
        config_entry=site,
        suggested_object_id="home_circuits_channel_1_returned_energy",
    )
    await setup_entry(hass, site)
    await settle(hass)
    records = device_records(circuits)
    panel = "sensor.home_circuits_channel_1_returned_energy"
    fridge = "sensor.home_circuits_channel_2_energy"
    # Each hour of the records as the circuit's meter counted it.
    assert await bars(hass, panel) == rounded(expected_hours(records, 0, out=True))
    assert await bars(hass, fridge) == rounded(expected_hours(records, 1))
    assert len(await bars(hass, fridge)) == 24
    assert max((await bars(hass, panel)).values()) > 0.1  # the panel produced by day
    # A disabled sensor gets no rows: the recorder would start it from 0 below them.
    assert await rows(hass, "sensor.home_circuits_channel_2_returned_energy") == []
    assert await rows(hass, "sensor.home_circuits_channel_1_energy") != []
    # Live from 00:20 on, the site's rows continue the imported ones: the first live hour is the
    # records' 00:00-00:20 and what was counted since, the hour the meters' counters show (the
    # site's runs after its meters' must not move the recorder's rows a second time). The fridge
    # draws 1,200 W; at 00:40 its meter reboots and its counters return to 00:00: the hourly run
    # at 01:20 adds what they lost, from the records, to the meter's sensor and the load alike.
    midnight = datetime(2025, 6, 1, tzinfo=UTC)
    hour0 = int(midnight.timestamp())
    counted_before = sum(r.energy_in[1] for r in records if r.ts >= hour0) / 1000
    first_live = circuits.true_energy(1)[0]
    circuits.set_power(1, 1200.0)
    await live_until(hass, clock_at_0020, freezer, midnight + timedelta(minutes=40))
    circuits.reboot(invalid_for=1, rollback=True)
    await live_until(hass, clock_at_0020, freezer, midnight + timedelta(minutes=55))
    last_of_hour0 = circuits.true_energy(1)[0]  # the hour's last reading
    await live_until(hass, clock_at_0020, freezer, midnight + timedelta(hours=1, minutes=25))
    meter_hour0 = (await bars(hass, "sensor.circuits_channel_2_energy_imported"))[hour0]
    assert meter_hour0 == pytest.approx(
        counted_before + (last_of_hour0 - first_live) / 1000, abs=0.0011
    )
    assert meter_hour0 > 0.7  # 35 minutes at 1,200 W, though the counters lost 20 of them
    for site_series, meter_series in (
        (fridge, "sensor.circuits_channel_2_energy_imported"),
        ("sensor.home_grid_import_energy", "sensor.meter_total_energy_imported"),
    ):
        site_bars = await bars(hass, site_series)
        assert hour0 in site_bars
        # Each state is rounded to the Wh.
        assert site_bars == pytest.approx(await bars(hass, meter_series), abs=0.0011), site_series
    assert not site.runtime_data.history.diagnostics()["stored"].get("pending_shifts")


async def test_a_role_or_load_added_to_a_site_later_gets_the_history_its_records_tell(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    simulator: Simulator,
    reader: Reader,
    clock_at_0020: Clock,
    freezer: FrozenDateTimeFactory,
) -> None:
    """A site on the grid alone gets the solar and a load an hour later: their series get the
    meter's day of records as the first day one gave the grid's, the grid's stay as they were.

    The site itself comes half an hour after the meter: its day one reads the records again,
    up to its first value, not those the meter's day one read.
    """
    meter, _ = await add_meter(
        hass, simulator, reader, wiring=["grid@a", "solar@a", "load@b"], history_days=1
    )
    midnight = datetime(2025, 6, 1, tzinfo=UTC)
    await live_until(hass, clock_at_0020, freezer, midnight + timedelta(minutes=50))
    site = await add_site(hass, {CONF_GRID: [f"{meter.mac}:a"]})
    # Only the records since the meter's own day one (00:20) are read again.
    assert reader.calls == [None, int((midnight + timedelta(minutes=20)).timestamp())]
    await live_until(hass, clock_at_0020, freezer, midnight + timedelta(hours=1, minutes=25))
    grid = "sensor.home_grid_import_energy"
    grid_before = await bars(hass, grid)
    assert len(grid_before) == 25  # the records' day and the first live hour
    meter_grid = await bars(hass, "sensor.meter_phase_a_energy_imported")
    assert sum(grid_before.values()) == pytest.approx(sum(meter_grid.values()), abs=0.0011)
    hass.config_entries.async_update_entry(
        site,
        options={
            CONF_GRID: [f"{meter.mac}:a"],
            "solar": [f"{meter.mac}:b"],
            CONF_LOAD: [f"{meter.mac}:c"],
        },
    )
    await settle(hass)
    await live_until(hass, clock_at_0020, freezer, midnight + timedelta(hours=2, minutes=30))
    records = device_records(meter)
    hour1 = int((midnight + timedelta(hours=1)).timestamp())  # the hour they were added in
    load = await bars(hass, "sensor.home_meter_phase_c_energy")
    # Each hour before as the records tell it (the meter's own sensor counted its live hour
    # 00:00 to the poll at 00:55), then the live counters': in all, what the meter counted.
    assert {hour: kwh for hour, kwh in load.items() if hour < hour1} == rounded(
        {hour: kwh for hour, kwh in expected_hours(records, 2).items() if hour < hour1}
    )
    assert len(load) == 26
    meter_bars = await bars(hass, "sensor.meter_phase_c_energy_imported")
    assert load.keys() == meter_bars.keys()
    assert sum(load.values()) == pytest.approx(sum(meter_bars.values()), abs=0.0011)
    produced = production_hours(records, 1)
    solar = await bars(hass, "sensor.home_solar_energy")
    assert len(solar) == 26
    assert {hour: kwh for hour, kwh in solar.items() if hour < hour1} == pytest.approx(
        {hour: produced[hour] for hour in solar if hour < hour1}, abs=1e-6
    )
    assert sum(solar.values()) > 1.0  # a day's sun
    # The grid's hours are not imported a second time.
    assert {hour: kwh for hour, kwh in (await bars(hass, grid)).items() if hour < hour1} == {
        hour: kwh for hour, kwh in grid_before.items() if hour < hour1
    }
    assert not site.runtime_data.history.diagnostics()["stored"].get("pending_shifts")


async def test_a_site_sensor_enabled_later_starts_its_statistics_then(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    simulator: Simulator,
    reader: Reader,
    clock_at_0020: Clock,
    freezer: FrozenDateTimeFactory,
) -> None:
    """Its series published from the site's start: the recorder sums it from its first state
    since, so no hours are imported before it (they would be another series' start).

    The site's history was stored by a version that kept no series of its day one: it did
    those the site has.
    """
    meter, _ = await add_meter(hass, simulator, reader, history_days=1)
    site = MockConfigEntry(
        domain=DOMAIN,
        title="Home",
        data={CONF_KIND: KIND_SITE},
        options={CONF_GRID: [f"{meter.mac}:a"], CONF_LOAD: [f"{meter.mac}:c"]},
    )
    hass_storage[f"{DOMAIN}.history.{site.entry_id}"] = {
        "version": 1,
        "data": {"day_one_done": True},
    }
    await setup_entry(hass, site)
    await settle(hass)
    returned = "sensor.home_meter_phase_c_returned_energy"
    registry = er.async_get(hass)
    entity = registry.async_get(returned)
    assert entity is not None
    assert entity.disabled  # by default
    assert await rows(hass, "sensor.home_meter_phase_c_energy") == []  # done, says the store
    midnight = datetime(2025, 6, 1, tzinfo=UTC)
    await live_until(hass, clock_at_0020, freezer, midnight + timedelta(hours=1))
    registry.async_update_entity(returned, disabled_by=None)
    # Home Assistant reloads the entry 30 s later.
    await live_until(hass, clock_at_0020, freezer, midnight + timedelta(hours=3))
    assert hass.states.get(returned) is not None
    assert [row["start"] for row in await rows(hass, returned)] == [
        (midnight + timedelta(hours=hour)).timestamp() for hour in (1, 2)
    ]


async def test_a_site_fills_the_hours_one_of_its_meters_was_away_from_both_meters_records(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    simulator: Simulator,
    reader: Reader,
    clock_at_0020: Clock,
    freezer: FrozenDateTimeFactory,
) -> None:
    """The inverters' meter is away from 01:20 to 03:00: the site's consumption waits for it,
    then books what it missed in the hour it answers. The records give each hour its own (the
    mains' too, though it was read last at its day one), the hour it went away in included."""
    mains, _ = await add_meter(
        hass,
        simulator,
        reader,
        history_days=1,
        solar_peak_w=5000.0,
        battery_wh=8000.0,
        wiring=["grid@a", "grid@b", "grid@c"],
    )
    inverters = simulator.add_meter(
        "proem50",
        seed=mains.seed,
        mac="A0DD6C0000F1",
        wiring=["solar", "battery"],
        history_days=1,
        solar_peak_w=5000.0,
        battery_wh=8000.0,
    )
    await simulator.start()
    reader.meters[inverters.mac] = inverters
    await setup_entry(hass, meter_entry(simulator, inverters, title="Inverters"))
    await settle(hass)
    await add_site(
        hass,
        {
            CONF_GRID: [f"{mains.mac}:{phase}" for phase in "abc"],
            "solar": [f"{inverters.mac}:1"],
            "battery": [f"{inverters.mac}:2"],
        },
    )
    midnight = datetime(2025, 6, 1, tzinfo=UTC)
    away = midnight + timedelta(hours=1, minutes=20)
    await live_until(hass, clock_at_0020, freezer, away, by_the_minute=True)
    inverters.set_online(False)
    await live_until(
        hass, clock_at_0020, freezer, midnight + timedelta(hours=3), by_the_minute=True
    )
    inverters.set_online(True)
    await live_until(
        hass, clock_at_0020, freezer, midnight + timedelta(hours=4, minutes=30), by_the_minute=True
    )
    # Consumption: what the grid brought in net, and the inverters gave out net, each minute.
    truth: dict[int, float] = defaultdict(float)
    for meter, sign in ((mains, 1), (inverters, -1)):
        for record in device_records(meter):
            hour = record.ts - record.ts % HOUR
            truth[hour] += sign * (sum(record.energy_in) - sum(record.energy_out)) / 1000
    home = await bars(hass, "sensor.home_consumption_energy")
    hours = [int((midnight + timedelta(hours=hour)).timestamp()) for hour in range(4)]
    assert [hour for hour in home if hour >= hours[0]] == hours
    # Each hour within a Wh of what flowed in it (the published states are rounded to the Wh).
    assert home == pytest.approx({hour: truth[hour] for hour in home}, abs=0.0015)


async def test_a_meter_unloaded_while_its_site_reads_the_records_fails_the_run_clearly(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    simulator: Simulator,
    reader: Reader,
    clock_at_0020: Clock,
) -> None:
    """The site's run fails with the reason (and is run again later), nothing raised."""
    mains, mains_entry = await add_meter(hass, simulator, reader, history_days=1)
    inverters, inverters_entry = await add_meter(
        hass, simulator, reader, "proem50", mac="A0DD6C0000F1", history_days=1
    )
    site = await add_site(hass, {CONF_GRID: [f"{mains.mac}:a"], "solar": [f"{inverters.mac}:1"]})
    history = site.runtime_data.history
    assert history.progress.status == "done"
    # The meters are read in the order of their MACs: the other is unloaded meanwhile.
    first, second = sorted(
        [(mains.mac, mains_entry), (inverters.mac, inverters_entry)], key=lambda pair: pair[0]
    )
    read = first[1].runtime_data.history.async_intervals

    async def read_while_the_other_unloads(*args: Any) -> Any:
        await hass.config_entries.async_unload(second[1].entry_id)
        return await read(*args)

    with patch.object(
        first[1].runtime_data.history, "async_intervals", read_while_the_other_unloads
    ):
        await history.async_run(since=int(datetime(2025, 6, 1, tzinfo=UTC).timestamp()))
    assert history.progress.status == "failed"
    assert history.progress.error == f"the site's meters {second[0]} are not set up"


async def test_circuit_meters_without_records_leave_the_site_history_whole(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    simulator: Simulator,
    reader: Reader,
    clock_at_0020: Clock,
) -> None:
    mains, _ = await add_meter(hass, simulator, reader, history_days=1)
    # Two circuits' meters: one keeps no records at all, the other none yet.
    none_kept = simulator.add_meter("proem50", seed=mains.seed, mac="A0DD6C0000F1")
    none_yet = simulator.add_meter("proem50", seed=mains.seed, mac="A0DD6C0000F2")
    await simulator.start()
    reader.unsupported_macs.add(none_kept.mac)
    for meter, title in ((none_kept, "Old"), (none_yet, "New")):
        reader.meters[meter.mac] = meter
        await setup_entry(hass, meter_entry(simulator, meter, title=title))
    await settle(hass)
    site = await add_site(
        hass,
        {
            CONF_GRID: [f"{mains.mac}:{phase}" for phase in "abc"],
            CONF_LOAD: [f"{none_kept.mac}:2", f"{none_yet.mac}:2"],
        },
    )
    history = site.runtime_data.history
    assert history is not None
    assert history.progress.status == "done"
    # The grid's hours from the mains' records; the loads have none.
    total = "sensor.meter_total_energy_imported"
    assert await bars(hass, "sensor.home_grid_import_energy") == await bars(hass, total)
    assert len(await bars(hass, total)) == 24
    for load in ("sensor.home_old_channel_2_energy", "sensor.home_new_channel_2_energy"):
        assert await rows(hass, load) == [], load


async def test_backfill_action(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    simulator: Simulator,
    reader: Reader,
    clock_at_0020: Clock,
) -> None:
    meter, entry = await add_meter(hass, simulator, reader, history_days=2)
    device = device_with(hass, meter.mac)
    entity_id = "sensor.meter_phase_a_energy_imported"
    before = await rows(hass, entity_id)
    response = await hass.services.async_call(
        DOMAIN,
        "backfill",
        {"device_id": device.id, "since": "2025-05-31"},
        blocking=True,
        return_response=True,
    )
    assert response == {"records": 17 * 60 + 20, "hours": 0}  # since 07:00 UTC, local midnight
    assert reader.calls[-1] == int(datetime(2025, 5, 31, 7, tzinfo=UTC).timestamp())
    await settle(hass)
    assert await rows(hass, entity_id) == before
    # Errors: a device that is not a meter or site, and a meter without records.
    other = dr.async_get(hass).async_get_or_create(
        config_entry_id=entry.entry_id, identifiers={("other", "x")}
    )
    foreign_entry = MockConfigEntry(domain="other")
    foreign_entry.add_to_hass(hass)
    foreign = dr.async_get(hass).async_get_or_create(
        config_entry_id=foreign_entry.entry_id, identifiers={("other", "y")}
    )
    for device_id in (other.id, foreign.id, "unknown"):
        with pytest.raises(ServiceValidationError) as raised:
            await hass.services.async_call(
                DOMAIN, "backfill", {"device_id": device_id}, blocking=True
            )
        assert raised.value.translation_key == "not_a_history_device"
    reader.unsupported = True
    with pytest.raises(ServiceValidationError) as raised:
        await hass.services.async_call(
            DOMAIN, "backfill", {"device_id": device.id, "since": "2025-05-31"}, blocking=True
        )
    assert raised.value.translation_key == "no_stored_records"
    state = history_state(hass)
    assert state.attributes["status"] == "unsupported"
    assert entry.state is ConfigEntryState.LOADED
    calls = len(reader.calls)
    entry.runtime_data.history.run_in_background()  # the hourly check: no more tries
    await settle(hass)
    assert len(reader.calls) == calls


async def test_a_returning_meter_is_checked_and_diagnostics_tell(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    simulator: Simulator,
    reader: Reader,
    clock_at_0020: Clock,
    freezer: FrozenDateTimeFactory,
) -> None:
    events = async_capture_events(hass, EVENT_HISTORY_IMPORTED)
    meter, entry = await add_meter(hass, simulator, reader, history_days=1)
    diagnostics = await async_get_config_entry_diagnostics(hass, entry)
    assert diagnostics["history"]["status"] == "done"
    assert diagnostics["history"]["stored"]["day_one_done"] is True
    # The recorder's rows of the entity are moved once they exist (its first 5 minutes).
    assert diagnostics["history"]["stored"]["pending_shifts"]["a_energy_imported"][0] == int(
        datetime(2025, 6, 1, tzinfo=UTC).timestamp()
    )
    meter.set_online(False)
    await poll(hass, freezer)
    assert len(events) == 1
    meter.set_online(True)
    await poll(hass, freezer)
    await settle(hass)
    assert len(events) == 2  # checked again once it answered


async def test_no_run_starts_once_home_assistant_is_stopping(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    simulator: Simulator,
    reader: Reader,
    clock_at_0020: Clock,
) -> None:
    """A run started while the recorder closes its database could crash Home Assistant."""
    meter, _ = await add_meter(hass, simulator, reader, history_days=1)
    site = await add_site(hass, {CONF_GRID: [f"{meter.mac}:a"]})
    events = async_capture_events(hass, EVENT_HISTORY_IMPORTED)
    hass.set_state(CoreState.stopping)
    async_dispatcher_send(hass, SIGNAL_METER_HISTORY_DONE, meter.mac)  # the meter's run ended
    await settle(hass)
    assert events == []
    hass.set_state(CoreState.running)
    async_dispatcher_send(hass, SIGNAL_METER_HISTORY_DONE, meter.mac)
    await settle(hass)
    assert [event.data["entry_id"] for event in events] == [site.entry_id]


async def test_no_records_no_sensors_no_meter(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    simulator: Simulator,
    reader: Reader,
    clock_at_0020: Clock,
) -> None:
    events = async_capture_events(hass, EVENT_HISTORY_IMPORTED)
    meter, entry = await add_meter(hass, simulator, reader)  # no stored records yet
    assert events[-1].data["records"] == 0
    assert await rows(hass, "sensor.meter_phase_a_energy_imported") == []
    # A site over it and over a meter that is not set up: its history cannot be made.
    site = await add_site(hass, {CONF_GRID: [f"{meter.mac}:a"], "solar": ["AABBCCDDEEFF:1"]})
    # It waits for its meters rather than fail while Home Assistant starts.
    assert site.runtime_data.history.progress.status == "waiting"
    site_device = device_with(hass, f"site_{site.entry_id}")
    with pytest.raises(HomeAssistantError) as raised:
        await hass.services.async_call(
            DOMAIN, "backfill", {"device_id": site_device.id}, blocking=True
        )
    assert raised.value.translation_key == "backfill_failed"
    assert site.runtime_data.history.progress.status == "failed"
    # A site over the meter alone: nothing to import while it has no records.
    garage = await add_site(hass, {CONF_GRID: [f"{meter.mac}:b"]}, title="Garage")
    assert garage.runtime_data.history.progress.status == "done"
    calls = len(reader.calls)
    async_dispatcher_send(hass, SIGNAL_METER_HISTORY_DONE, "AABBCCDDEEFF")  # not its meter
    await settle(hass)
    assert len(reader.calls) == calls
    # Two runs asked for at once: one.
    count = len(events)
    entry.runtime_data.history.run_in_background()
    entry.runtime_data.history.run_in_background()
    await settle(hass)
    # The meter's run, then its sites' (the failing one fires nothing).
    assert [event.data["entry_id"] for event in events[count:]] == [
        entry.entry_id,
        garage.entry_id,
    ]
    # Without energy sensors there is nothing to import.
    registry = er.async_get(hass)
    for registered in er.async_entries_for_config_entry(registry, entry.entry_id):
        if "energy" in registered.entity_id:
            registry.async_remove(registered.entity_id)
    with patch(
        "custom_components.shelly_energy.history_import.statistics_during_period"
    ) as statistics:
        await entry.runtime_data.history.async_run()
    read = [call.args[3] for call in statistics.call_args_list]
    assert not [ids for ids in read if any(id_.startswith("sensor.meter_") for id_ in ids)]
    assert events[-1].data["hours"] == 0


@pytest.mark.parametrize(
    ("release", "unit_class"),
    [
        ((2025, 4), None),  # the oldest supported: its recorder would drop the rows
        ((2025, 10), None),
        ((2025, 11), "energy"),  # wanted from here on, required from 2026.11
        ((2026, 10), "energy"),  # the newest tested
    ],
)
async def test_metadata_for_both_ends_of_the_supported_range(
    release: tuple[int, int], unit_class: str | None
) -> None:
    # Both ends also import rows with it (test_day_one_import_gives_the_device_hours): 2025.4's
    # recorder would drop them with a unit class, 2026.10's reports an error without one.
    with (
        patch("custom_components.shelly_energy.history_import.MAJOR_VERSION", release[0]),
        patch("custom_components.shelly_energy.history_import.MINOR_VERSION", release[1]),
    ):
        metadata = statistic_metadata("sensor.x")
    assert metadata["mean_type"] == 0
    assert metadata["has_sum"] is True
    assert metadata.get("unit_class") == unit_class


async def test_a_saved_import_of_another_layout_starts_over(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    simulator: Simulator,
    reader: Reader,
    clock_at_0020: Clock,
) -> None:
    meter = await serve(simulator, "pro3em", history_days=1)
    entry = meter_entry(simulator, meter)
    reader.meters[meter.mac] = meter
    # Saved while the meter was in the single-phase profile.
    hass_storage[f"{DOMAIN}.history.{entry.entry_id}"] = {
        "version": 1,
        "data": {
            "partial": {"first_hour": 0, "end": 0, "records": 0, "wh": {"1_energy_imported": []}}
        },
    }
    await setup_entry(hass, entry)
    await settle(hass)
    assert reader.calls == [None]
    assert await bars(hass, "sensor.meter_phase_a_energy_imported") == rounded(
        expected_hours(device_records(meter), 0)
    )


# The hours of the simulated day of the settled-site tests (UTC).
AT = {hour: datetime(2025, 6, 1, tzinfo=UTC) + timedelta(hours=hour) for hour in range(10)}


async def test_a_settled_sites_first_live_hour_holds_what_its_periods_booked_before(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    simulator: Simulator,
    reader: Reader,
    clock_at_0020: Clock,
    freezer: FrozenDateTimeFactory,
) -> None:
    """A site settled each hour is set up at 00:20, on a meter with a day of records.

    Its grid sensors book each hour's net at the hour's end: the hour from 00:00 holds the net
    of 23:00, booked at midnight, before the site went live; what flowed from 00:00 to 00:20 is
    in the period booked at 01:00.
    """
    meter, _ = await add_meter(hass, simulator, reader, history_days=1)
    await add_site(
        hass, {CONF_GRID: [f"{meter.mac}:{phase}" for phase in "abc"], CONF_SETTLEMENT: "60"}
    )
    await live_until(hass, clock_at_0020, freezer, AT[1] + timedelta(minutes=10))
    nets: dict[int, float] = defaultdict(float)
    for record in device_records(meter):
        nets[record.ts - record.ts % HOUR] += sum(record.energy_in) - sum(record.energy_out)
    midnight = int(AT[0].timestamp())
    before = nets[midnight - HOUR]
    assert before > 0 and nets[midnight] > 0  # both hours import: a flow would differ
    result = await bars(hass, "sensor.home_grid_import_energy")
    assert result[midnight - HOUR] == pytest.approx(max(nets[midnight - 2 * HOUR], 0.0) / 1000)
    assert result[midnight] == pytest.approx(before / 1000)


async def site_down_at_0210(
    hass: HomeAssistant,
    simulator: Simulator,
    reader: Reader,
    clock: Clock,
    freezer: FrozenDateTimeFactory,
    options: dict[str, Any],
) -> tuple[SimulatedMeter, MockConfigEntry]:
    """Return a meter with a day of records and a site on its phases, settled each hour.

    The meter is live from 00:20, the site from 01:00 until it goes down at 02:10. The options
    may settle otherwise (`CONF_SETTLEMENT`).
    """
    meter, _ = await add_meter(hass, simulator, reader, history_days=1)
    await live_until(hass, clock, freezer, AT[1], by_the_minute=True)
    site = await add_site(
        hass,
        {
            CONF_GRID: [f"{meter.mac}:{phase}" for phase in "abc"],
            CONF_SETTLEMENT: "60",
            **options,
        },
    )
    assert clock.now() == AT[1].timestamp()
    await live_until(hass, clock, freezer, AT[2] + timedelta(minutes=10), by_the_minute=True)
    assert await hass.config_entries.async_unload(site.entry_id)
    return meter, site


async def test_periods_missed_while_down_are_rebuilt_from_the_records(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    simulator: Simulator,
    reader: Reader,
    clock_at_0020: Clock,
    freezer: FrozenDateTimeFactory,
) -> None:
    """An hourly-settled site with quarter-hour peaks is down from 02:10 to 04:40.

    The house runs on meanwhile: phase c feeds 4 kW back from 02:20 to 03:00, and phase a
    draws 9 kW from 03:15 to 03:30. Back, the site books the missed hours' nets as a guess
    (the gap's energy spread by time); its history then settles them, and measures the
    quarters, again from the meter's records: the sensors and the hourly statistics become
    each hour's net, the month's peak the quarter of 9 kW.
    """
    # Brussels (UTC+2): the hours and quarters are UTC's, the month is June all along.
    await hass.config.async_set_time_zone("Europe/Brussels")
    meter, site = await site_down_at_0210(
        hass,
        simulator,
        reader,
        clock_at_0020,
        freezer,
        {CONF_CAPACITY: {CONF_DEMAND_PERIOD: "15", CONF_PEAK_RULE: "highest", CONF_PEAK_DAYS: 3}},
    )
    start = AT[1].timestamp()
    await live_until(
        hass, clock_at_0020, freezer, AT[2] + timedelta(minutes=20), by_the_minute=True
    )
    meter.set_power("c", -4000.0)
    await live_until(hass, clock_at_0020, freezer, AT[3], by_the_minute=True)
    meter.release_power("c")
    await live_until(
        hass, clock_at_0020, freezer, AT[3] + timedelta(minutes=15), by_the_minute=True
    )
    meter.set_power("a", 9000.0)
    await live_until(
        hass, clock_at_0020, freezer, AT[3] + timedelta(minutes=30), by_the_minute=True
    )
    meter.release_power("a")
    await live_until(
        hass, clock_at_0020, freezer, AT[4] + timedelta(minutes=40), by_the_minute=True
    )
    assert await hass.config_entries.async_setup(site.entry_id)
    await settle(hass)
    coordinator = site.runtime_data.coordinator
    settlement = coordinator.accumulator._settlement
    assert settlement is not None
    # Back: 02:00 and 03:00 were booked as a guess at 04:40; 04:00 is running.
    assert sorted(settlement.provisional) == [AT[2].timestamp(), AT[3].timestamp()]
    guessed = {start: period.net for start, period in settlement.provisional.items()}
    # Until the hour they were booked in is compiled, the guesses stay; then the hourly runs
    # settle them (and 04:00, booked at 05:00, an hour later).
    await live_until(hass, clock_at_0020, freezer, AT[7] + timedelta(minutes=5), by_the_minute=True)
    assert settlement.provisional == {}
    assert coordinator.accumulator._capacity is not None
    assert coordinator.accumulator._capacity.pending == set()

    # The truth, from the meter's records: each hour's net over the three phases, booked at
    # its end; each quarter's import (per phase) as demand.
    nets: dict[int, float] = defaultdict(float)
    quarters: dict[int, float] = defaultdict(float)
    for record in device_records(meter):
        if start <= record.ts < AT[7].timestamp():
            nets[record.ts - record.ts % HOUR] += sum(record.energy_in) - sum(record.energy_out)
            quarters[record.ts - record.ts % 900] += sum(record.energy_in)
    assert len(nets) == 6 and len(quarters) == 24
    # The gap's hours: 02:00 exported, 03:00 imported; the guesses were far off.
    assert nets[int(AT[2].timestamp())] < -2000 < 0 < guessed[AT[2].timestamp()]
    assert nets[int(AT[3].timestamp())] > 2000 > guessed[AT[3].timestamp()]
    imported = {hour + HOUR: max(net, 0.0) / 1000 for hour, net in nets.items()}
    exported = {hour + HOUR: max(-net, 0.0) / 1000 for hour, net in nets.items()}
    starts = {index: int(moment.timestamp()) for index, moment in AT.items()}
    for entity_id, expected, hourly in (
        (
            "sensor.home_grid_import_energy",
            imported,
            {starts[2]: 0.194, starts[4]: 2.431, starts[5]: 0.124, starts[6]: 0.0},
        ),
        (
            "sensor.home_grid_export_energy",
            exported,
            {starts[2]: 0.0, starts[3]: 2.500962, starts[4]: 0.0, starts[5]: 0.0, starts[6]: 0.11},
        ),
    ):
        assert float(state_of(hass, entity_id)) == pytest.approx(
            sum(expected.values()), abs=0.002
        ), entity_id
        # The hours compiled so far (to 07:00) hold the net of the hour before each (an hour
        # without a row: none), and add up to the sensor's total then.
        compiled = {hour: kwh for hour, kwh in expected.items() if hour < AT[7].timestamp()}
        result = await bars(hass, entity_id)
        assert min(result.values()) >= 0, entity_id
        assert {start: kwh for start, kwh in result.items() if start > starts[1]} == hourly
        # The Energy dashboard's 5-minute bars too: the rise each rebuild published is taken
        # back in the 5-minute row that shows it, not from the start of its hour.
        assert min((await bars(hass, entity_id, "5minute")).values()) >= 0, entity_id
        assert {hour: result.get(hour, 0.0) for hour in compiled} == pytest.approx(
            compiled, abs=0.002
        ), entity_id
        sums = {int(row["start"]): row["sum"] or 0.0 for row in await rows(hass, entity_id)}
        assert max(sums) == AT[6].timestamp()
        assert sums[max(sums)] - sums[int(AT[1].timestamp())] == pytest.approx(
            sum(compiled.values()), abs=0.002
        )
        assert round(sums[max(sums)] - sums[starts[1]], 6) == round(sum(hourly.values()), 6)
    peak = max(quarters.values()) / 1000 / 0.25
    assert peak > 9.0  # the quarter from 03:15, missed live
    assert float(state_of(hass, "sensor.home_capacity_peak")) == pytest.approx(peak, abs=0.01)
    assert not site.runtime_data.history.diagnostics()["stored"].get("pending_shifts")


async def test_a_rebuilds_rise_taken_back_after_its_hour_moves_the_rows_as_one(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    simulator: Simulator,
    reader: Reader,
    clock_at_0020: Clock,
    freezer: FrozenDateTimeFactory,
) -> None:
    """An hourly-settled site down from 02:10 to 04:40, and again from 05:21 to 06:10.

    The rebuild at 05:20 raises the sensors; the site goes down before the recorder compiled
    the 5-minute row that shows the rise, and comes back after the hour was compiled: the
    take-back moves the 5-minute rows from 05:20 on, and the hour's row is written. Every hour
    stays the sum of its 5-minute rows, and none of those falls.
    """
    meter, site = await site_down_at_0210(hass, simulator, reader, clock_at_0020, freezer, {})
    meter.set_power("c", -4000.0)
    await live_until(hass, clock_at_0020, freezer, AT[3], by_the_minute=True)
    meter.release_power("c")
    await live_until(
        hass, clock_at_0020, freezer, AT[4] + timedelta(minutes=40), by_the_minute=True
    )
    assert await hass.config_entries.async_setup(site.entry_id)
    await settle(hass)
    await live_until(
        hass, clock_at_0020, freezer, AT[5] + timedelta(minutes=21), by_the_minute=True
    )
    # Taken back once the recorder compiled the 5-minute row from 05:20, that shows the rise.
    rebuilt_at = int((AT[5] + timedelta(minutes=20)).timestamp())
    pending = site.runtime_data.history.diagnostics()["stored"]["pending_shifts"]
    assert pending == {
        "grid_import_energy": [rebuilt_at, pytest.approx(-0.197)],
        "grid_export_energy": [rebuilt_at, pytest.approx(-1.09)],
    }
    assert await hass.config_entries.async_unload(site.entry_id)
    await live_until(
        hass, clock_at_0020, freezer, AT[6] + timedelta(minutes=10), by_the_minute=True
    )
    assert await hass.config_entries.async_setup(site.entry_id)
    await settle(hass)
    await live_until(hass, clock_at_0020, freezer, AT[9] + timedelta(minutes=5), by_the_minute=True)
    assert not site.runtime_data.history.diagnostics()["stored"].get("pending_shifts")
    starts = {index: int(moment.timestamp()) for index, moment in AT.items()}
    for entity_id, expected in (
        (
            "sensor.home_grid_import_energy",
            {starts[2]: 0.194, starts[4]: 0.197, starts[5]: 0.124}
            | dict.fromkeys((starts[6], starts[7], starts[8]), 0.0),
        ),
        (
            "sensor.home_grid_export_energy",
            {starts[3]: 3.174, starts[4]: 0.769, starts[6]: 0.093, starts[8]: 1.309}
            | dict.fromkeys((starts[2], starts[5], starts[7]), 0.0),
        ),
    ):
        hourly = await bars(hass, entity_id)
        assert {start: kwh for start, kwh in hourly.items() if start > starts[1]} == expected
        short = await bars(hass, entity_id, "5minute")
        assert min(short.values()) >= 0, entity_id
        assert min(hourly.values()) >= 0, entity_id
        # The hour of the take-back ends where its last 5-minute row does.
        five = await rows(hass, entity_id, "5minute", AT[5], AT[6])
        hour = await rows(hass, entity_id, "hour", AT[5], AT[6])
        assert hour[0]["sum"] == five[-1]["sum"], entity_id


async def test_a_rebuild_that_makes_up_a_surplus_leaves_no_5_minute_bar_negative(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    simulator: Simulator,
    reader: Reader,
    clock_at_0020: Clock,
    freezer: FrozenDateTimeFactory,
) -> None:
    """A site settled every 15 minutes is down from 02:10 to 04:50, and from 05:25 to 05:55.

    Each phase draws 9 kW from 04:40 to 04:50, while down: the guess spreads it over the gap's
    quarters. The rebuild at 05:20 settles those booked at 04:50 at 2.094 kWh less than the
    guess: the sensor keeps that surplus. The rebuild at 06:20 settles the quarter from 04:45
    (booked at 05:01, its exact net holds most of the 9 kW) and the two quarters the second gap
    covered (booked at 05:55): the exact nets rise in the 5-minute row from 05:00, the start of
    their hour, while what they raise the booked import by only makes up the surplus, taken from
    the row of the last booking, from 05:55, that never showed it. The hour keeps its total,
    and none of its 5-minute rows falls.
    """
    meter, site = await site_down_at_0210(
        hass, simulator, reader, clock_at_0020, freezer, {CONF_SETTLEMENT: "15"}
    )
    await live_until(
        hass, clock_at_0020, freezer, AT[4] + timedelta(minutes=40), by_the_minute=True
    )
    for phase in "abc":
        meter.set_power(phase, 9000.0)
    await live_until(
        hass, clock_at_0020, freezer, AT[4] + timedelta(minutes=50), by_the_minute=True
    )
    for phase in "abc":
        meter.release_power(phase)
    assert await hass.config_entries.async_setup(site.entry_id)
    await settle(hass)
    await live_until(
        hass, clock_at_0020, freezer, AT[5] + timedelta(minutes=25), by_the_minute=True
    )
    settlement = site.runtime_data.coordinator.accumulator._settlement
    assert settlement is not None
    surplus = settlement.imported - settlement.booked[0]
    assert round(surplus) == 2094
    assert await hass.config_entries.async_unload(site.entry_id)
    await live_until(
        hass, clock_at_0020, freezer, AT[5] + timedelta(minutes=55), by_the_minute=True
    )
    assert await hass.config_entries.async_setup(site.entry_id)
    await settle(hass)
    settlement = site.runtime_data.coordinator.accumulator._settlement
    assert settlement is not None
    assert {period.booked_at for period in settlement.provisional.values()} == {
        (AT[5] + timedelta(minutes=1)).timestamp(),
        (AT[5] + timedelta(minutes=55)).timestamp(),
    }
    assert settlement.imported - settlement.booked[0] == surplus  # no import booked since
    await live_until(hass, clock_at_0020, freezer, AT[8] + timedelta(minutes=5), by_the_minute=True)
    assert settlement.provisional == {}
    assert settlement.imported == settlement.booked[0]  # made up
    entity_id = "sensor.home_grid_import_energy"
    starts = {index: int(moment.timestamp()) for index, moment in AT.items()}
    hourly = await bars(hass, entity_id)
    assert {start: kwh for start, kwh in hourly.items() if start > starts[1]} == {
        starts[2]: 0.194663,
        starts[3]: 0.196104,
        starts[4]: 4.512233,
        starts[5]: 0.148,
        starts[6]: 0.001,
        starts[7]: 0.0,
    }
    # 05:55 showed no rise and loses none: the rows before it give the take-back, and 05:00
    # shows the hour's 0.148 kWh.
    short = await bars(hass, entity_id, "5minute")
    assert min(short.values()) >= 0
    assert {
        start: kwh for start, kwh in short.items() if starts[4] <= start < starts[6] and kwh
    } == {starts[4] + 50 * 60: 4.708337, starts[5]: 0.148}
    # Each hour ends where its last 5-minute row does.
    five = {int(row["start"]): row["sum"] for row in await rows(hass, entity_id, "5minute")}
    for row in await rows(hass, entity_id, "hour", AT[4], AT[8]):
        assert row["sum"] == pytest.approx(five[int(row["start"]) + HOUR - 300], abs=1e-9)
