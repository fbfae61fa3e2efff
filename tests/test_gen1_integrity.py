"""A polled Gen1 meter's counters against its own: every watt-hour counted once, end to end."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import HomeAssistant

from custom_components.shelly_energy.energy.counter import Verdict
from simulator import Clock, SimulatedMeter, Simulator

from .conftest import meter_entry, poll, serve, setup_entry
from .test_push import coordinator_of, published_import

STEP = 10  # seconds between polls


def meter_import(meter: SimulatedMeter, channel: str) -> float:
    """Return a channel's import counter as the Gen1 meter reports it (Wh, one decimal)."""
    return round(meter.counters(channel)[0], 1)


async def step(hass: HomeAssistant, clock: Clock, freezer: FrozenDateTimeFactory) -> None:
    """Let both clocks move on by a step, and poll."""
    clock.advance(STEP)
    await poll(hass, freezer, STEP)


async def test_a_reboot_rolling_back_under_a_watt_hour_behind_an_invalid_reading_is_no_jitter(
    hass: HomeAssistant, simulator: Simulator, sim_clock: Clock, freezer: FrozenDateTimeFactory
) -> None:
    """A Gen1 meter's counters read invalid right after a boot: the reboot the uptime told
    still holds for the first valid reading, whose small drop is a rollback, not jitter."""
    freezer.move_to(datetime.fromtimestamp(sim_clock.now(), UTC))  # both clocks agree
    meter = await serve(simulator, "gen1_em")
    meter.set_power("0", 60.0)  # 1 Wh a minute
    entry = meter_entry(simulator, meter, title="EM")
    await setup_entry(hass, entry)
    for _ in range(33):  # the meter saves its counters every 5 minutes: 30 s past a save
        await step(hass, sim_clock, freezer)
    before = meter_import(meter, "0")
    assert published_import(entry, "1") == before
    meter.reboot(rollback=True)  # counters invalid for the first read
    assert before - meter_import(meter, "0") == 0.5
    await step(hass, sim_clock, freezer)
    assert published_import(entry, "1") == before  # invalid: held
    await step(hass, sim_clock, freezer)
    first = meter_import(meter, "0")
    assert first < before  # still below: jitter would wait for the counter to pass it
    # A rollback: what flowed since the last reading before the reboot is a span for the
    # records; counting resumes from the first valid reading.
    assert published_import(entry, "1") == before
    for _ in range(6):
        await step(hass, sim_clock, freezer)
    assert published_import(entry, "1") == round(before + meter_import(meter, "0") - first, 1)


async def test_a_phase_reading_zero_for_a_moment_after_a_reboot_is_counted_once(
    hass: HomeAssistant, simulator: Simulator, sim_clock: Clock, freezer: FrozenDateTimeFactory
) -> None:
    """Counted live, and filled from the records over the spans: the truth, no more."""
    freezer.move_to(datetime.fromtimestamp(sim_clock.now(), UTC))
    meter = await serve(simulator, "gen1_3em")
    meter.set_power("a", 3600.0)  # 1 Wh a second
    meter.set_counters("a", 50_000.0, 0.0)  # far above what a phase counts from 0 in a step
    entry = meter_entry(simulator, meter, title="3EM")
    await setup_entry(hass, entry)
    truth: dict[str, dict[float, float]] = {"a": {}, "total": {}}
    published = {key: published_import(entry, key) for key in truth}

    def note_truth() -> None:
        imported = [meter.true_energy(phase)[0] for phase in "abc"]
        truth["a"][sim_clock.now()] = imported[0]
        truth["total"][sim_clock.now()] = sum(imported)

    async def read() -> None:
        await step(hass, sim_clock, freezer)
        note_truth()

    note_truth()
    await read()
    meter.reboot()
    await read()  # invalid
    meter.override_reply("set", path="emeters.0.total", value=0.0)
    await read()  # phase A reads 0, validly
    for _ in range(3):  # and its own value again
        await read()
    counters = coordinator_of(entry).counters
    assert counters is not None
    for key, energy in truth.items():
        diagnostics = counters.diagnostics()[f"{key}_in"]
        assert [decision["verdict"] for decision in diagnostics["decisions"]] == [
            Verdict.RESET,
            Verdict.RESTORED,
        ]
        live = published_import(entry, key) - published[key]
        filled = sum(
            energy[span.span.end] - energy[span.span.start] - span.span.counted
            for span in counters.spans
            if span.key == f"{key}_in"
        )
        flowed = max(energy.values()) - min(energy.values())
        assert live + filled == pytest.approx(flowed, abs=0.2), key  # Gen1 rounds to 0.1 Wh
