"""Capacity peaks of a site end to end: the options, the simulated house's demand, the sensors."""

from __future__ import annotations

from typing import Any

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.util import dt as dt_util

from custom_components.shelly_energy.const import (
    CONF_CAPACITY,
    CONF_DEMAND_PERIOD,
    CONF_PEAK_DAYS,
    CONF_PEAK_RULE,
    CONF_TARIFF,
)
from custom_components.shelly_energy.energy.tariff import (
    BandedCapacity,
    CapacityBand,
    FlatPricing,
    PerKwCapacity,
    Tariff,
)
from simulator import Simulator

from . import test_site
from .conftest import poll, state_of
from .test_site import House, add_site, roles, site_states

house = test_site.house  # the fixture: the site tests' two-meter house

CAPACITY_SENSORS = (
    "capacity_period_demand",
    "capacity_peak",
    "headroom_before_a_new_capacity_peak",
)
STEP_S = 300
# Quarter-hours of the simulated house, 5 minutes a step: the pins of phases a, b and c (W).
QUARTERS: list[list[tuple[float, float, float]]] = [
    # Phase a imports 3 kW for ten minutes while b exports: per phase, b nets nothing away.
    [(3000.0, -1000.0, 0.0), (3000.0, -1000.0, 0.0), (0.0, 0.0, 0.0)],
    # 1.2 kW on each phase all quarter.
    [(1200.0, 1200.0, 1200.0)] * 3,
    # The running quarter: 2.4 kW on a for its first five minutes.
    [(2400.0, 0.0, 0.0)],
]


QUARTER_PEAKS = {CONF_DEMAND_PERIOD: "15", CONF_PEAK_RULE: "highest", CONF_PEAK_DAYS: 3}
BANDS = BandedCapacity(
    (CapacityBand(2.0, 120.0), CapacityBand(5.0, 190.0), CapacityBand(None, 305.0))
)


async def run_quarters(
    hass: HomeAssistant,
    simulator: Simulator,
    freezer: FrozenDateTimeFactory,
    house: House,
    quarters: list[list[tuple[float, float, float]]],
) -> None:
    for quarter in quarters:
        for a, b, c in quarter:
            house.set(a, b, c, solar=-800.0, battery=300.0)
            simulator.clock.advance(STEP_S)
            await poll(hass, freezer, STEP_S)


async def configure(hass: HomeAssistant, entry_id: str, step: str, answer: dict[str, Any]) -> Any:
    """Open a site's options, choose a step and answer it; return the last result."""
    result: Any = await hass.config_entries.options.async_init(entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"next_step_id": step}
    )
    assert result["step_id"] == step
    result = await hass.config_entries.options.async_configure(result["flow_id"], answer)
    await hass.async_block_till_done()
    return result


async def test_capacity_peaks_over_the_simulator(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory, house: House
) -> None:
    # From a whole quarter (the house stands still until then).
    await poll(hass, freezer, 900 - dt_util.utcnow().timestamp() % 900)
    site = await add_site(hass, roles(house))
    assert hass.states.get("sensor.home_capacity_peak") is None  # off by default
    # The form shows off; the answer turns quarter-hour peaks on.
    result: Any = await hass.config_entries.options.async_init(site.entry_id)
    assert result["menu_options"] == ["roles", "tariff", "capacity", "contract", "warnings"]
    answer = QUARTER_PEAKS
    result = await configure(hass, site.entry_id, "capacity", answer)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert site.options[CONF_CAPACITY] == answer
    await run_quarters(hass, simulator, freezer, house, QUARTERS)
    # Each quarter's demand, from the pins: import per phase over a quarter of an hour.
    demands = [
        sum(max(pin, 0.0) for pins in quarter for pin in pins) * STEP_S / 3600 / 0.25 / 1000
        for quarter in QUARTERS
    ]
    assert demands == [2.0, 3.6, 0.8]
    peak = max(demands[:2])
    # The running quarter at 2.4 kW: 200 Wh so far and 400 Wh to come is 2.4 kW; the peak of
    # 3.6 kW allows 900 Wh, 700 Wh in the 10 minutes left: 4.2 kW, 1.8 kW above the 2.4 kW.
    assert site_states(hass, *CAPACITY_SENSORS) == {
        "capacity_period_demand": "2.4",
        "capacity_peak": str(peak),
        "headroom_before_a_new_capacity_peak": "1.8",
    }
    peak_sensor = hass.states.get("sensor.home_capacity_peak")
    assert peak_sensor is not None
    assert peak_sensor.attributes["unit_of_measurement"] == "kW"
    # Turned off again: the sensors go, the site's totals stay.
    result = await configure(hass, site.entry_id, "capacity", {**answer, CONF_DEMAND_PERIOD: "off"})
    assert CONF_CAPACITY not in site.options
    assert all(hass.states.get(f"sensor.home_{name}") is None for name in CAPACITY_SENSORS)
    assert state_of(hass, "sensor.home_grid_import_energy") == "1.6"


@pytest.mark.parametrize(
    ("capacity", "first_charge", "charge", "band"),
    [
        # 4.00 per kW, on at least 2.5 kW: 2.5 x 4.00 after the first quarter's 2.0 kW, then
        # 3.6 x 4.00 = 14.40; with 10 % tax.
        (PerKwCapacity(4.0, 2.5), "11.0", "15.84", None),
        # In bands: 2.0 kW is in the first (a limit belongs to its band), 3.6 kW in the second.
        (BANDS, "132.0", "209.0", 2),
    ],
)
async def test_the_capacity_charge_over_the_simulator(
    hass: HomeAssistant,
    simulator: Simulator,
    freezer: FrozenDateTimeFactory,
    house: House,
    capacity: PerKwCapacity | BandedCapacity,
    first_charge: str,
    charge: str,
    band: int | None,
) -> None:
    await poll(hass, freezer, 900 - dt_util.utcnow().timestamp() % 900)
    tariff = Tariff(FlatPricing(0.30), tax_percent=10.0, capacity=capacity)
    await add_site(
        hass, roles(house, **{CONF_CAPACITY: QUARTER_PEAKS, CONF_TARIFF: tariff.to_dict()})
    )
    # No quarter has closed: no peak to charge yet.
    assert state_of(hass, "sensor.home_capacity_charge_this_period") == "unknown"
    await run_quarters(hass, simulator, freezer, house, QUARTERS[:1])
    assert state_of(hass, "sensor.home_capacity_charge_this_period") == first_charge
    await run_quarters(hass, simulator, freezer, house, QUARTERS[1:])
    sensor = hass.states.get("sensor.home_capacity_charge_this_period")
    assert sensor is not None
    assert sensor.state == charge
    assert sensor.attributes.get("band") == band
    assert (sensor.attributes["device_class"], sensor.attributes["state_class"]) == (
        "monetary",
        "total",
    )
    # The bill so far: 1.6 kWh at 0.30 = 0.48, and the capacity charge, with 10 % tax.
    capacity_charge = capacity.charge(3.6)
    assert state_of(hass, "sensor.home_bill_so_far") == str(
        round((0.48 + capacity_charge) * 1.1, 2)
    )
    assert state_of(hass, "sensor.home_cost_this_period") == "0.53"  # energy only


async def test_the_tariff_form_takes_a_capacity_charge(
    hass: HomeAssistant, simulator: Simulator, house: House
) -> None:
    site = await add_site(hass, roles(house))
    assert hass.states.get("sensor.home_capacity_charge_this_period") is None
    flow = hass.config_entries.options
    billing = {"pricing": "flat", "billing_months": "1", "start_day": 1, "anchor_month": 1,
               "fixed_charge": 0, "tax_percent": 0, "export_price": 0}  # fmt: skip
    # A capacity charge needs the peak measured.
    result: Any = await configure(
        hass, site.entry_id, "tariff", {**billing, "capacity_pricing": "per_kw"}
    )
    assert result["errors"] == {"capacity_pricing": "capacity_not_measured"}
    await configure(hass, site.entry_id, "capacity", QUARTER_PEAKS)
    result = await configure(
        hass, site.entry_id, "tariff", {**billing, "capacity_pricing": "per_kw"}
    )
    assert result["step_id"] == "prices_flat"
    result = await flow.async_configure(result["flow_id"], {"price": 0.3})
    assert result["step_id"] == "capacity_per_kw"
    result = await flow.async_configure(
        result["flow_id"], {"capacity_price": 4.0, "minimum_kw": 2.5}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert Tariff.from_dict(site.options[CONF_TARIFF]) == Tariff(
        FlatPricing(0.3), capacity=PerKwCapacity(4.0, 2.5)
    )
    assert site.options[CONF_CAPACITY] == QUARTER_PEAKS  # the peaks stay measured
    assert state_of(hass, "sensor.home_capacity_charge_this_period") == "unknown"
    # Editing shows the stored charge; then bands, whose limits must rise.
    result = await configure(
        hass, site.entry_id, "tariff", {**billing, "capacity_pricing": "per_kw"}
    )
    result = await flow.async_configure(result["flow_id"], {"price": 0.3})
    shown = {str(key): key.description["suggested_value"] for key in result["data_schema"].schema}
    assert shown == {"capacity_price": 4.0, "minimum_kw": 2.5}
    result = await configure(
        hass, site.entry_id, "tariff", {**billing, "capacity_pricing": "bands"}
    )
    result = await flow.async_configure(result["flow_id"], {"price": 0.3})
    assert result["step_id"] == "capacity_bands"
    bad = {"band_1_up_to": 5, "band_1_charge": 120, "band_2_up_to": 2, "band_2_charge": 190,
           "above_charge": 305}  # fmt: skip
    result = await flow.async_configure(result["flow_id"], bad)
    assert result["errors"] == {"base": "tariff_band_order"}
    result = await flow.async_configure(
        result["flow_id"], {**bad, "band_1_up_to": 2, "band_2_up_to": 5}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert Tariff.from_dict(site.options[CONF_TARIFF]).capacity == BANDS
    result = await configure(
        hass, site.entry_id, "tariff", {**billing, "capacity_pricing": "bands"}
    )
    result = await flow.async_configure(result["flow_id"], {"price": 0.3})
    shown = {str(key): key.description["suggested_value"] for key in result["data_schema"].schema
             if key.description}  # fmt: skip
    assert shown == {"band_1_up_to": 2.0, "band_1_charge": 120.0, "band_2_up_to": 5.0,
                     "band_2_charge": 190.0, "above_charge": 305.0}  # fmt: skip
