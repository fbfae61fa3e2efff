"""A day of a two-meter house billed on hourly nets and its quarter-hour peak, end to end.

A Pro 3EM on the mains and a Pro EM-50 on the solar and battery inverters of one simulated
household (a June day: night loads, the day's production charging a small battery and exported,
an evening that empties the battery and imports), polled every five minutes. The site settles
every hour and measures quarter-hour peaks under a capacity tariff. The test computes each hour's
net and each quarter's demand from the simulator's own truth, independently of the integration,
and the sensors must show them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.shelly_energy.const import (
    CONF_BATTERY,
    CONF_CAPACITY,
    CONF_DEMAND_PERIOD,
    CONF_GRID,
    CONF_KIND,
    CONF_PEAK_DAYS,
    CONF_PEAK_RULE,
    CONF_POLL_INTERVAL,
    CONF_SETTLEMENT,
    CONF_SOLAR,
    CONF_TARIFF,
    DOMAIN,
    KIND_SITE,
)
from custom_components.shelly_energy.energy.tariff import FlatPricing, PerKwCapacity, Tariff
from simulator import Clock, Simulator

from .conftest import meter_entry, poll, setup_entry, state_of

STEP = 300  # the polling interval; hours and quarters begin at a poll
# Mid-June in every time zone the tests may run in: the month's peak is this day's.
DAY_START = datetime(2025, 6, 12, tzinfo=UTC)
TARIFF = Tariff(FlatPricing(0.30), tax_percent=10.0, capacity=PerKwCapacity(4.0, 2.0))


async def test_a_day_settled_hourly_with_its_quarter_hour_peak(
    hass: HomeAssistant, simulator: Simulator, sim_clock: Clock, freezer: FrozenDateTimeFactory
) -> None:
    freezer.move_to(DAY_START)
    sim_clock.advance(DAY_START.timestamp() - sim_clock.now())
    # One household (the same seed and sizes) seen by two devices.
    household: dict[str, Any] = {"seed": 11, "solar_peak_w": 5000.0, "battery_wh": 3000.0}
    mains = simulator.add_meter("pro3em", wiring=["grid@a", "grid@b", "grid@c"], **household)
    inverters = simulator.add_meter(
        "proem50", mac="A0DD6C000002", wiring=["solar", "battery"], **household
    )
    await simulator.start()
    options = {CONF_POLL_INTERVAL: STEP}
    await setup_entry(hass, meter_entry(simulator, mains, title="Mains", options=options))
    await setup_entry(hass, meter_entry(simulator, inverters, title="Inverters", options=options))
    await setup_entry(
        hass,
        MockConfigEntry(
            domain=DOMAIN,
            title="Home",
            data={CONF_KIND: KIND_SITE},
            options={
                CONF_GRID: [f"{mains.mac}:{phase}" for phase in "abc"],
                CONF_SOLAR: [f"{inverters.mac}:1"],
                CONF_BATTERY: [f"{inverters.mac}:2"],
                CONF_SETTLEMENT: "60",
                CONF_CAPACITY: {
                    CONF_DEMAND_PERIOD: "15",
                    CONF_PEAK_RULE: "highest",
                    CONF_PEAK_DAYS: 3,
                },
                CONF_TARIFF: TARIFF.to_dict(),
            },
        ),
    )

    def grid_truth() -> tuple[float, float]:
        """Return what flowed in and out over the three phases so far (Wh), phase by phase."""
        flows = [mains.true_energy(phase) for phase in "abc"]
        return sum(flow[0] for flow in flows), sum(flow[1] for flow in flows)

    truth = [grid_truth()]  # at each poll
    for _ in range(24 * 3600 // STEP):
        sim_clock.advance(STEP)
        await poll(hass, freezer, STEP)
        truth.append(grid_truth())

    per_hour = 3600 // STEP
    nets = [
        (truth[start + per_hour][0] - truth[start + per_hour][1])
        - (truth[start][0] - truth[start][1])
        for start in range(0, 24 * per_hour, per_hour)
    ]
    # The simulated day both imports and exports on the balance of some hours.
    assert any(net > 100 for net in nets) and any(net < -100 for net in nets)
    settled_import = sum(max(net, 0.0) for net in nets) / 1000
    settled_export = sum(max(-net, 0.0) for net in nets) / 1000
    per_quarter = 900 // STEP
    demands = [
        (truth[start + per_quarter][0] - truth[start][0]) / 1000 / 0.25
        for start in range(0, 24 * 3600 // STEP, per_quarter)
    ]
    peak = max(demands)
    # Displayed to the Wh (energy) and to 10 W (power): half of that either way, and no more.
    assert float(state_of(hass, "sensor.home_grid_import_energy")) == pytest.approx(
        settled_import, abs=0.0005
    )
    assert float(state_of(hass, "sensor.home_grid_export_energy")) == pytest.approx(
        settled_export, abs=0.0005
    )
    assert float(state_of(hass, "sensor.home_capacity_peak")) == pytest.approx(peak, abs=0.005)
    # 4.00 per kW of the peak (above the 2 kW minimum), with 10 % tax.
    assert peak > 2.0
    assert float(state_of(hass, "sensor.home_capacity_charge_this_period")) == pytest.approx(
        round(peak * 4.0 * 1.1, 2)
    )
