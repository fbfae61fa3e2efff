"""Tariffs on an energy site end to end: options, costs as energy flows, bills and projections."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from unittest.mock import AsyncMock, patch

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.recorder.core import Recorder
from homeassistant.components.recorder.statistics import async_import_statistics
from homeassistant.core import CoreState, HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.exceptions import ServiceValidationError
from homeassistant.util import dt as dt_util
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
    CONF_KIND,
    CONF_SOLAR,
    CONF_TARIFF,
    DOMAIN,
    EVENT_TIER,
    KIND_SITE,
)
from custom_components.shelly_energy.energy.tariff import (
    BillingCycle,
    FlatPricing,
    Slab,
    SlabPricing,
    Tariff,
    TimeOfUsePricing,
    TimeWindow,
)
from custom_components.shelly_energy.history_import import statistic_metadata
from simulator import SimulatedMeter, Simulator

from .conftest import meter_entry, serve, setup_entry, state_of

FLAT = Tariff(FlatPricing(0.30), fixed_charge=5.0, tax_percent=10.0, export_price=0.08)


class House:
    """A Pro 3EM on the mains and a site "Home" over its phases."""

    def __init__(self, hass: HomeAssistant, meter: SimulatedMeter, site: MockConfigEntry) -> None:
        self.hass = hass
        self.meter = meter
        self.site = site
        self.imported = 1000.0  # Wh of phase a
        self.exported = 0.0

    async def uses(self, freezer: FrozenDateTimeFactory, kwh: float, exported: float = 0.0) -> None:
        """Phase a counts these kWh by the next poll (however many: one update)."""
        self.imported += kwh * 1000
        self.exported += exported * 1000
        # The meter's clock moves on as far as 10 kW take to count them: a plausible rise.
        self.meter.clock.advance(360 * (kwh + exported) + 1)
        self.meter.set_counters("a", self.imported, self.exported)
        freezer.tick(timedelta(seconds=6))
        async_fire_time_changed(self.hass)
        await self.hass.async_block_till_done(wait_background_tasks=True)


async def house(hass: HomeAssistant, simulator: Simulator, tariff: Tariff | None) -> House:
    meter = await serve(simulator, "pro3em")
    for phase in "abc":
        meter.set_power(phase, 0.0)
    meter.set_counters("a", 1000.0, 0.0)
    await setup_entry(hass, meter_entry(simulator, meter, title="Mains"))
    options: dict[str, Any] = {CONF_GRID: [f"{meter.mac}:{phase}" for phase in "abc"]}
    if tariff is not None:
        options[CONF_TARIFF] = tariff.to_dict()
    site = MockConfigEntry(
        domain=DOMAIN, title="Home", data={CONF_KIND: KIND_SITE}, options=options
    )
    await setup_entry(hass, site)
    return House(hass, meter, site)


def costs(hass: HomeAssistant) -> dict[str, str]:
    names = ("cost_today", "cost_this_period", "export_credit_this_period", "bill_so_far")
    return {name: state_of(hass, f"sensor.home_{name}") for name in names}


def local(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=dt_util.get_default_time_zone())


async def test_flat_tariff_costs(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory
) -> None:
    home = await house(hass, simulator, FLAT)
    await home.uses(freezer, 2.0, exported=0.5)
    # 2 kWh at 0.30 with 10 % tax = 0.66; credit 0.5 x 0.08 = 0.04;
    # bill = (0.60 + 5.00 fixed) x 1.10 - 0.04 = 6.12
    assert costs(hass) == {
        "cost_today": "0.66",
        "cost_this_period": "0.66",
        "export_credit_this_period": "0.04",
        "bill_so_far": "6.12",
    }
    # The price the Energy dashboard multiplies the import by gives the cost sensors' cost:
    # 2 kWh x 0.33 (0.30 with 10 % tax) = 0.66.
    assert state_of(hass, "sensor.home_effective_price") == "0.33"
    bill = hass.states.get("sensor.home_bill_so_far")
    assert bill is not None
    assert bill.attributes["unit_of_measurement"] == hass.config.currency
    assert bill.attributes["device_class"] == "monetary"
    assert bill.attributes["state_class"] == "total"
    price = hass.states.get("sensor.home_current_price")
    assert price is not None
    assert (price.state, price.attributes["unit_of_measurement"]) == (
        "0.3",
        f"{hass.config.currency}/kWh",
    )


@pytest.mark.parametrize(
    ("telescopic", "cost", "effective"),
    [(True, "525.0", "3.5"), (False, "675.0", "4.5")],
)
async def test_a_slab_limit_crossed_inside_one_update(
    hass: HomeAssistant,
    simulator: Simulator,
    freezer: FrozenDateTimeFactory,
    telescopic: bool,
    cost: str,
    effective: str,
) -> None:
    tariff = Tariff(SlabPricing((Slab(100, 3.0), Slab(None, 4.5)), telescopic=telescopic))
    home = await house(hass, simulator, tariff)
    await home.uses(freezer, 150.0)
    # Telescopic: 100 x 3.00 + 50 x 4.50 = 525; non-telescopic: 150 x 4.50 = 675.
    assert state_of(hass, "sensor.home_cost_this_period") == cost
    assert state_of(hass, "sensor.home_effective_price") == effective
    price = hass.states.get("sensor.home_current_price")
    assert price is not None
    assert (price.state, price.attributes["tier"]) == ("4.5", 2)


async def test_time_of_use_boundary_inside_an_update(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory
) -> None:
    freezer.move_to(local(2026, 1, 5, 16, 58))
    peak = TimeWindow("peak", time(17), time(22), 0.40)
    home = await house(hass, simulator, Tariff(TimeOfUsePricing((peak,), 0.20)))
    freezer.move_to(local(2026, 1, 5, 17, 1, 54))  # the next poll ends at 17:02
    await home.uses(freezer, 4.0)
    # 16:58 to 17:02: two minutes off-peak, two at peak: 2 x 0.20 + 2 x 0.40 = 1.20
    assert state_of(hass, "sensor.home_cost_today") == "1.2"
    assert state_of(hass, "sensor.home_current_price") == "0.4"


async def test_period_rollover_and_restart(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory
) -> None:
    freezer.move_to(local(2026, 1, 31, 23, 59))
    home = await house(hass, simulator, FLAT)
    await home.uses(freezer, 1.0)  # until 23:59:06, all in January
    freezer.move_to(local(2026, 2, 1, 0, 0, 0))  # the next poll ends at 00:00:06
    await home.uses(freezer, 1.0)  # 54 s of January, 6 s of February
    period = hass.states.get("sensor.home_cost_this_period")
    assert period is not None
    assert period.state == "0.03"  # 0.1 kWh x 0.30 x 1.10 = 0.033
    assert period.attributes["last_reset"] == local(2026, 2, 1).isoformat()
    assert await hass.config_entries.async_unload(home.site.entry_id)
    assert await hass.config_entries.async_setup(home.site.entry_id)
    await hass.async_block_till_done()
    await home.uses(freezer, 1.0)
    assert state_of(hass, "sensor.home_cost_this_period") == "0.36"  # 1.1 kWh so far
    assert state_of(hass, "sensor.home_cost_today") == "0.36"


async def test_tariff_options(hass: HomeAssistant, simulator: Simulator) -> None:
    home = await house(hass, simulator, None)
    assert hass.states.get("sensor.home_bill_so_far") is None
    flow = hass.config_entries.options
    result: Any = await flow.async_init(home.site.entry_id)
    result = await flow.async_configure(result["flow_id"], {"next_step_id": "tariff"})
    assert result["step_id"] == "tariff"
    billing = {
        "pricing": "slabs",
        "billing_months": "2",
        "start_day": 15,
        "anchor_month": 1,
        "fixed_charge": 50,
        "tax_percent": 5,
        "export_price": 0,
    }
    result = await flow.async_configure(result["flow_id"], billing)
    assert result["step_id"] == "prices_slabs"
    bad = {"telescopic": True, "slab_1_up_to": 200, "slab_1_price": 3, "slab_2_up_to": 100,
           "slab_2_price": 4, "above_price": 6}  # fmt: skip
    result = await flow.async_configure(result["flow_id"], bad)
    assert result["errors"] == {"base": "tariff_slab_order"}
    good = {**bad, "slab_2_up_to": 300}
    result = await flow.async_configure(result["flow_id"], good)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    tariff = Tariff.from_dict(home.site.options[CONF_TARIFF])
    assert tariff == Tariff(
        SlabPricing((Slab(200, 3.0), Slab(300, 4.0), Slab(None, 6.0))),
        BillingCycle(2, 15, 1),
        fixed_charge=50.0,
        tax_percent=5.0,
    )
    assert home.site.options[CONF_GRID]  # the roles stay
    assert state_of(hass, "sensor.home_bill_so_far") == "52.5"

    # Editing shows the stored tariff; time of use; then no tariff at all.
    result = await flow.async_init(home.site.entry_id)
    result = await flow.async_configure(result["flow_id"], {"next_step_id": "tariff"})
    schema = result["data_schema"].schema
    shown = {key: key.description["suggested_value"] for key in schema}
    assert shown["pricing"] == "slabs" and shown["start_day"] == 15
    result = await flow.async_configure(result["flow_id"], {**billing, "pricing": "time_of_use"})
    assert result["step_id"] == "prices_time_of_use"
    result = await flow.async_configure(result["flow_id"], {"default_price": 0.2})
    assert result["errors"] == {"base": "tariff_no_windows"}
    window = {"window_1_start": "22:00:00", "window_1_end": "06:00:00",
              "window_1_days": ["5", "6"], "window_1_price": 0.1}  # fmt: skip
    result = await flow.async_configure(result["flow_id"], {"default_price": 0.2, **window})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert Tariff.from_dict(home.site.options[CONF_TARIFF]).pricing == TimeOfUsePricing(
        (TimeWindow("window_1", time(22), time(6), 0.1, frozenset({5, 6})),), 0.2
    )
    result = await flow.async_init(home.site.entry_id)
    result = await flow.async_configure(result["flow_id"], {"next_step_id": "tariff"})
    result = await flow.async_configure(result["flow_id"], {**billing, "pricing": "flat"})
    assert result["step_id"] == "prices_flat"
    result = await flow.async_configure(result["flow_id"], {"price": 0.25})
    assert Tariff.from_dict(home.site.options[CONF_TARIFF]).pricing == FlatPricing(0.25)
    await hass.async_block_till_done()
    result = await flow.async_init(home.site.entry_id)
    result = await flow.async_configure(result["flow_id"], {"next_step_id": "tariff"})
    result = await flow.async_configure(result["flow_id"], {**billing, "pricing": "none"})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert CONF_TARIFF not in home.site.options


def hourly_rows(start: datetime, hours: int, kwh: float, total: float) -> list[dict[str, Any]]:
    """Return `hours` rows of statistics from `start`, `kwh` in each (real hours, across DST)."""
    rows = []
    for hour in range(hours):
        total += kwh
        moment = start.astimezone(UTC) + timedelta(hours=hour)
        rows.append({"start": moment, "state": total, "sum": total})
    return rows


def import_statistics(hass: HomeAssistant, entity_id: str, rows: list[dict[str, Any]]) -> None:
    # The metadata the running release's recorder wants, as the history import writes it.
    async_import_statistics(hass, statistic_metadata(entity_id), rows)  # type: ignore[arg-type]


async def test_bill_of_a_past_period_from_statistics(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    simulator: Simulator,
    freezer: FrozenDateTimeFactory,
) -> None:
    freezer.move_to(local(2026, 3, 10, 12))
    tariff = Tariff(
        SlabPricing((Slab(100, 3.0), Slab(None, 4.5))), fixed_charge=50.0, tax_percent=10.0,
        export_price=1.0,
    )  # fmt: skip
    home = await house(hass, simulator, tariff)
    february = local(2026, 2, 1)
    hours = 28 * 24
    import_statistics(hass, "sensor.home_grid_import_energy", hourly_rows(february, hours, 0.25, 0))
    import_statistics(hass, "sensor.home_grid_export_energy", hourly_rows(february, hours, 0.01, 0))
    await async_wait_recording_done(hass)
    response: Any = await hass.services.async_call(
        DOMAIN,
        "get_bill",
        {"site": home.site.entry_id, "date": "2026-02-14"},
        blocking=True,
        return_response=True,
    )
    # 672 h x 0.25 = 168 kWh: 100 x 3.00 + 68 x 4.50 = 606; with the fixed 50, tax 10 % =
    # 65.60; export 6.72 kWh x 1.00 = 6.72: total 606 + 50 + 65.6 - 6.72 = 714.88.
    assert response is not None
    assert response["site"] == "Home"
    assert response["import_kwh"] == pytest.approx(168.0)
    assert [(line["name"], line["kwh"], line["price"]) for line in response["lines"]] == [
        ("tier_1", 100.0, 3.0),
        ("tier_2", pytest.approx(68.0), 4.5),
    ]
    assert response["fixed_charge"] == 50.0
    assert response["tax"] == pytest.approx(65.6)
    assert response["export_credit"] == pytest.approx(6.72)
    assert response["total"] == pytest.approx(714.88)
    # Without a date: the last complete period, February again.
    response = await hass.services.async_call(
        DOMAIN, "get_bill", {"site": home.site.entry_id}, blocking=True, return_response=True
    )
    assert response is not None
    assert response["total"] == pytest.approx(714.88)


async def test_bill_action_errors(hass: HomeAssistant, simulator: Simulator) -> None:
    home = await house(hass, simulator, None)
    meter_entry_id = hass.config_entries.async_entries(DOMAIN)[0].entry_id
    for site, key in ((meter_entry_id, "not_a_site"), (home.site.entry_id, "no_tariff")):
        with pytest.raises(ServiceValidationError) as raised:
            await hass.services.async_call(
                DOMAIN, "get_bill", {"site": site}, blocking=True, return_response=True
            )
        assert raised.value.translation_key == key
    hass.config_entries.async_update_entry(
        home.site, options={**home.site.options, CONF_TARIFF: FLAT.to_dict()}
    )
    await hass.async_block_till_done()
    with pytest.raises(ServiceValidationError) as raised:  # no recorder here
        await hass.services.async_call(
            DOMAIN, "get_bill", {"site": home.site.entry_id}, blocking=True, return_response=True
        )
    assert raised.value.translation_key == "no_statistics"


async def test_projection_and_the_next_slab_event(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    simulator: Simulator,
    freezer: FrozenDateTimeFactory,
) -> None:
    freezer.move_to(local(2026, 3, 11, 0, 30))
    tariff = Tariff(SlabPricing((Slab(300, 3.0), Slab(None, 4.5))))
    home = await house(hass, simulator, tariff)
    projected = hass.states.get("sensor.home_projected_bill")
    assert projected is not None
    assert (projected.state, projected.attributes["reason"]) == ("unknown", "not_yet")
    # Four weeks and ten days at 0.25 kWh an hour: March projects to 185.75 kWh (743 hours:
    # Home Assistant's tests run in US/Pacific, where March 8 has 23 hours).
    start = local(2026, 1, 31)
    hours = int((local(2026, 3, 11) - start).total_seconds() // 3600)
    import_statistics(hass, "sensor.home_grid_import_energy", hourly_rows(start, hours, 0.25, 0))
    await async_wait_recording_done(hass)
    events = async_capture_events(hass, EVENT_TIER)
    billing = home.site.runtime_data.coordinator.billing
    await billing.async_refresh_projection()
    await hass.async_block_till_done()
    assert state_of(hass, "sensor.home_projected_consumption") == "185.75"
    assert state_of(hass, "sensor.home_projected_bill") == "557.25"  # 185.75 x 3.00
    projected = hass.states.get("sensor.home_projected_bill")
    assert projected is not None
    assert projected.attributes["tier"] == 1
    assert projected.attributes["method"] == "weekly_profile"
    assert events == []
    # A heavy morning (20 kWh an hour for 10 hours) lifts the projection into the second slab:
    # 59.75 + 200 so far, and the profile's 0.25 kWh an hour for the rest.
    more = hourly_rows(local(2026, 3, 11), 10, 20.0, hours * 0.25)
    import_statistics(hass, "sensor.home_grid_import_energy", more)
    await async_wait_recording_done(hass)
    freezer.move_to(local(2026, 3, 11, 10, 30))
    await billing.async_refresh_projection()
    await hass.async_block_till_done()
    assert [(event.data["site"], event.data["tier"]) for event in events] == [("Home", 2)]
    tier_event = hass.states.get("event.home_tariff")
    assert tier_event is not None
    assert tier_event.attributes["event_type"] == "projected_tier"
    assert tier_event.attributes["tier"] == 2


async def test_no_projection_starts_once_home_assistant_is_stopping(
    hass: HomeAssistant, simulator: Simulator, freezer: FrozenDateTimeFactory
) -> None:
    """A projection started while the recorder closes its database could crash Home Assistant."""
    home = await house(hass, simulator, FLAT)
    billing = home.site.runtime_data.coordinator.billing
    with patch.object(billing, "async_refresh_projection", AsyncMock()) as refresh:
        hass.set_state(CoreState.stopping)
        freezer.tick(timedelta(seconds=11))  # the first projection is due 10 s after the setup
        async_fire_time_changed(hass)
        await hass.async_block_till_done()
        assert refresh.await_count == 0
        hass.set_state(CoreState.running)
        freezer.tick(timedelta(hours=1))  # then every hour
        async_fire_time_changed(hass)
        await hass.async_block_till_done()
        assert refresh.await_count == 1


async def test_unreadable_saved_costs_restart(
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    simulator: Simulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    meter = await serve(simulator, "pro3em")
    await setup_entry(hass, meter_entry(simulator, meter, title="Mains"))
    site = MockConfigEntry(
        domain=DOMAIN,
        title="Home",
        data={CONF_KIND: KIND_SITE},
        options={CONF_GRID: [f"{meter.mac}:a"], CONF_TARIFF: FLAT.to_dict()},
    )
    hass_storage[f"{DOMAIN}.billing.{site.entry_id}"] = {
        "version": 1,
        "key": f"{DOMAIN}.billing.{site.entry_id}",
        "data": {"accumulator": {"version": 99}},
    }
    await setup_entry(hass, site)
    assert "unreadable" in caplog.text
    assert state_of(hass, "sensor.home_cost_today") == "0.0"


async def test_no_bill_without_a_grid(
    recorder_mock: Recorder, hass: HomeAssistant, simulator: Simulator
) -> None:
    meter = await serve(simulator, "gen1_em")
    await setup_entry(hass, meter_entry(simulator, meter, title="EM"))
    site = MockConfigEntry(
        domain=DOMAIN,
        title="Solar only",
        data={CONF_KIND: KIND_SITE},
        options={CONF_SOLAR: [f"{meter.mac}:2"], CONF_TARIFF: FLAT.to_dict()},
    )
    await setup_entry(hass, site)
    with pytest.raises(ServiceValidationError) as raised:
        await hass.services.async_call(
            DOMAIN, "get_bill", {"site": site.entry_id}, blocking=True, return_response=True
        )
    assert raised.value.translation_key == "no_statistics"
