"""History from the meters' stored records, end to end: statistics, progress, the action."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest.mock import patch

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.recorder.core import Recorder
from homeassistant.components.recorder.statistics import (
    async_import_statistics,
    statistics_during_period,
)
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.recorder import get_instance
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_capture_events,
    async_fire_time_changed,
)
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
)

from custom_components.shelly_energy.const import (
    CONF_GRID,
    CONF_GRID_METERING,
    CONF_KIND,
    CONF_REVERSED_CHANNELS,
    DOMAIN,
    EVENT_HISTORY_IMPORTED,
    KIND_SITE,
)
from custom_components.shelly_energy.history import statistic_metadata
from custom_components.shelly_energy.meter.gen1 import Gen1Client
from custom_components.shelly_energy.meter.records import EnergyRecord, NoStoredRecordsError
from custom_components.shelly_energy.meter.rpc import RpcClient
from simulator import Clock, SimulatedMeter, Simulator

from .conftest import meter_entry, serve, setup_entry, state_of

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
    """The meters' record reader, serving the simulator's stores (until the real one lands)."""

    def __init__(self) -> None:
        self.meters: dict[str, SimulatedMeter] = {}
        self.calls: list[int | None] = []
        self.gate: Gate | None = None
        self.unsupported = False

    def records_method(self) -> Callable[..., AsyncIterator[list[EnergyRecord]]]:
        reader = self

        async def records(
            client: Any, since: int | None = None
        ) -> AsyncIterator[list[EnergyRecord]]:
            reader.calls.append(since)
            if reader.unsupported:
                raise NoStoredRecordsError("no records")
            found = device_records(reader.meters[client.info.mac], since)
            for index in range(0, len(found), 500):
                if reader.gate is not None:
                    await reader.gate(index)
                yield found[index : index + 500]

        return records


@pytest.fixture
def reader() -> Iterator[Reader]:
    fake = Reader()
    with (
        patch.object(RpcClient, "records", fake.records_method(), create=True),
        patch.object(Gen1Client, "records", fake.records_method(), create=True),
    ):
        yield fake


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


async def rows(hass: HomeAssistant, entity_id: str) -> list[dict[str, Any]]:
    found = await get_instance(hass).async_add_executor_job(
        statistics_during_period,
        hass,
        START,
        None,
        {entity_id},
        "hour",
        None,
        {"state", "sum"},
    )
    return found.get(entity_id, [])


async def bars(hass: HomeAssistant, entity_id: str) -> dict[int, float]:
    """Return each hour's bar (its sum minus the previous hour's), rounded to the mWh."""
    found = await rows(hass, entity_id)
    return {
        int(row["start"]): round(row["sum"] - before["sum"], 6)
        for before, row in zip(found, found[1:], strict=False)
    }


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
    assert rounded(hours) == {
        hour: bar
        for hour, bar in (await bars(hass, "sensor.meter_phase_a_energy_imported")).items()
    }
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
    assert found[-1]["sum"] == 0.0  # provisional: ends at 0 until a live hour anchors it
    # The progress and the event.
    state = hass.states.get("sensor.meter_history_import")
    assert state is not None
    assert state.state == "100.0"
    assert state.attributes["status"] == "done"
    assert state.attributes["records"] == len(records)
    device = dr.async_get(hass).async_get_device(identifiers={(DOMAIN, meter.mac)})
    assert device is not None
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
