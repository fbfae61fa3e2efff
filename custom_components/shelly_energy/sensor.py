"""Sensors: a meter's readings and diagnostics, a site's flows and costs, the export's state."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.config_entries import ConfigEntry
from homeassistant.const import (
    PERCENTAGE,
    SIGNAL_STRENGTH_DECIBELS_MILLIWATT,
    EntityCategory,
    UnitOfApparentPower,
    UnitOfElectricCurrent,
    UnitOfElectricPotential,
    UnitOfEnergy,
    UnitOfFrequency,
    UnitOfPower,
    UnitOfReactivePower,
    UnitOfTime,
)
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.util import dt as dt_util

from .billing import SiteBilling
from .const import KIND_EMONCMS, KIND_SITE, KIND_VIRTUAL_METER
from .coordinator import (
    MeterCoordinator,
    SiteCoordinator,
    channel_key,
    channel_label,
    entry_kind,
    load_series,
)
from .energy.anomalies import VoltageRange
from .energy.capacity import CapacityState
from .energy.projection import Projection
from .energy.settlement import Settlement
from .energy.site import ChannelRef, LoadEnergy, Role, RunningPeriod, SiteState
from .energy.tariff import BandedCapacity, SlabPricing
from .entity import ExportEntity, MeterEntity, SiteEntity, VirtualMeterEntity, channel_naming
from .export.emoncms import ExportStatus
from .history_import import MeterHistory, signal_history_updated
from .meter.snapshot import ChannelKind, ChannelReading, MeterSnapshot
from .meter.values import timestamp
from .runtime import MeterConfigEntry, SiteConfigEntry
from .virtual_meter.guard import ServedValue
from .virtual_meter_entry import VirtualMeterStatus

# Polling happens in the coordinator; entities only read its data.
PARALLEL_UPDATES = 0


def _kwh(wh: float | None) -> float | None:
    # Whole Wh, as displayed: a counter at finer resolution changes at every poll, and each
    # change is a row the recorder writes and compiles (sums of float deltas also show noise).
    return None if wh is None else round(wh / 1000, 3)


@dataclass(frozen=True, kw_only=True)
class ChannelSensorDescription(SensorEntityDescription):
    """A quantity measured per phase, per channel or as a three-phase total."""

    value_fn: Callable[[ChannelReading], float | None]
    # Created for every phase and channel; the others only where the meter reports the quantity.
    always_present: bool = False


CHANNEL_SENSORS: tuple[ChannelSensorDescription, ...] = (
    ChannelSensorDescription(
        key="power",
        device_class=SensorDeviceClass.POWER,
        native_unit_of_measurement=UnitOfPower.WATT,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        value_fn=lambda r: r.power,
        always_present=True,
    ),
    ChannelSensorDescription(
        key="apparent_power",
        device_class=SensorDeviceClass.APPARENT_POWER,
        native_unit_of_measurement=UnitOfApparentPower.VOLT_AMPERE,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        entity_registry_enabled_default=False,
        value_fn=lambda r: r.apparent_power,
    ),
    ChannelSensorDescription(
        key="reactive_power",
        device_class=SensorDeviceClass.REACTIVE_POWER,
        native_unit_of_measurement=UnitOfReactivePower.VOLT_AMPERE_REACTIVE,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        entity_registry_enabled_default=False,
        value_fn=lambda r: r.reactive_power,
    ),
    ChannelSensorDescription(
        key="current",
        device_class=SensorDeviceClass.CURRENT,
        native_unit_of_measurement=UnitOfElectricCurrent.AMPERE,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=2,
        entity_registry_enabled_default=False,
        value_fn=lambda r: r.current,
    ),
    ChannelSensorDescription(
        key="voltage",
        device_class=SensorDeviceClass.VOLTAGE,
        native_unit_of_measurement=UnitOfElectricPotential.VOLT,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        # Changes at every reading: a state (and a database row) a second per phase. The voltage
        # problem sensors and the Supply event watch it either way.
        entity_registry_enabled_default=False,
        value_fn=lambda r: r.voltage,
        always_present=True,
    ),
    ChannelSensorDescription(
        key="power_factor",
        device_class=SensorDeviceClass.POWER_FACTOR,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=2,
        entity_registry_enabled_default=False,
        value_fn=lambda r: r.power_factor,
    ),
    ChannelSensorDescription(
        key="frequency",
        device_class=SensorDeviceClass.FREQUENCY,
        native_unit_of_measurement=UnitOfFrequency.HERTZ,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=2,
        entity_registry_enabled_default=False,
        value_fn=lambda r: r.frequency,
    ),
    ChannelSensorDescription(
        key="energy_imported",
        device_class=SensorDeviceClass.ENERGY,
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        state_class=SensorStateClass.TOTAL_INCREASING,
        suggested_display_precision=3,
        value_fn=lambda r: _kwh(r.energy_in),
        always_present=True,
    ),
    ChannelSensorDescription(
        key="energy_exported",
        device_class=SensorDeviceClass.ENERGY,
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        state_class=SensorStateClass.TOTAL_INCREASING,
        suggested_display_precision=3,
        value_fn=lambda r: _kwh(r.energy_out),
        always_present=True,
    ),
)

# Three-phase totals are what most people look at: enabled where the quantity is. (The total
# current is a sum over phases, which no fuse sees: disabled like the phases' own currents.)
_TOTALS_ENABLED = frozenset({"power", "energy_imported", "energy_exported"})


@dataclass(frozen=True, kw_only=True)
class MeterSensorDescription(SensorEntityDescription):
    """A quantity of the whole meter."""

    value_fn: Callable[[MeterSnapshot], float | None]


METER_SENSORS: tuple[MeterSensorDescription, ...] = (
    MeterSensorDescription(
        key="neutral_current",
        translation_key="neutral_current",
        device_class=SensorDeviceClass.CURRENT,
        native_unit_of_measurement=UnitOfElectricCurrent.AMPERE,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=2,
        entity_registry_enabled_default=False,
        value_fn=lambda s: s.neutral_current,
    ),
    MeterSensorDescription(
        key="rssi",
        translation_key="rssi",
        device_class=SensorDeviceClass.SIGNAL_STRENGTH,
        native_unit_of_measurement=SIGNAL_STRENGTH_DECIBELS_MILLIWATT,
        state_class=SensorStateClass.MEASUREMENT,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        value_fn=lambda s: s.rssi,
    ),
)


@dataclass(frozen=True, kw_only=True)
class VoltageRangeDescription(SensorEntityDescription):
    """The lowest or highest voltage of a phase or channel since midnight."""

    value_fn: Callable[[VoltageRange], float]


VOLTAGE_RANGE_SENSORS = tuple(
    VoltageRangeDescription(
        key=key,
        device_class=SensorDeviceClass.VOLTAGE,
        native_unit_of_measurement=UnitOfElectricPotential.VOLT,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        entity_registry_enabled_default=False,
        value_fn=value_fn,
    )
    for key, value_fn in (
        ("voltage_min_today", lambda r: r.minimum),
        ("voltage_max_today", lambda r: r.maximum),
    )
)

LAST_RESTART = SensorEntityDescription(
    key="last_restart",
    translation_key="last_restart",
    device_class=SensorDeviceClass.TIMESTAMP,
    entity_category=EntityCategory.DIAGNOSTIC,
    entity_registry_enabled_default=False,
)
# Sensors added per turn of the event loop: Home Assistant registers each in about a millisecond,
# and a Pro 3EM's 40-odd sensors added at once held the loop for about 50 ms.
SENSORS_PER_TURN = 10
# The restart time is now minus the uptime: both jitter, so move it only for a real restart.
RESTART_TOLERANCE_S = 60


async def async_setup_entry(
    hass: HomeAssistant,
    entry: ConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Create the sensors of a meter or an energy site."""
    kind = entry_kind(entry)
    if kind == KIND_SITE:
        _add_site_sensors(hass, entry, async_add_entities)
    elif kind == KIND_EMONCMS:
        coordinator = entry.runtime_data.coordinator
        async_add_entities(ExportSensor(coordinator, description) for description in EXPORT_SENSORS)
    elif kind == KIND_VIRTUAL_METER:
        coordinator = entry.runtime_data.coordinator
        async_add_entities(
            VirtualMeterSensor(coordinator, description) for description in VIRTUAL_METER_SENSORS
        )
    else:
        await _add_meter_sensors(entry, async_add_entities)


async def _add_meter_sensors(
    entry: MeterConfigEntry, async_add_entities: AddConfigEntryEntitiesCallback
) -> None:
    """Create the sensors of what the meter reports."""
    coordinator = entry.runtime_data.coordinator
    snapshot = coordinator.data
    readings = (*snapshot.channels, *((snapshot.total,) if snapshot.total else ()))
    entities: list[SensorEntity] = [
        ChannelSensor(coordinator, description, reading)
        for reading in readings
        for description in CHANNEL_SENSORS
        if (description.always_present and reading.kind is not ChannelKind.TOTAL)
        or description.value_fn(reading) is not None
    ]
    entities.extend(
        MeterSensor(coordinator, description)
        for description in METER_SENSORS
        if description.value_fn(snapshot) is not None
    )
    if snapshot.uptime is not None:
        entities.append(LastRestartSensor(coordinator, LAST_RESTART))
    entities.extend(
        VoltageRangeSensor(coordinator, description, reading)
        for reading in snapshot.channels
        for description in VOLTAGE_RANGE_SENSORS
    )
    history = entry.runtime_data.history
    if history is not None:
        entities.append(HistoryImportSensor(coordinator, history))
    for first in range(0, len(entities), SENSORS_PER_TURN):
        async_add_entities(entities[first : first + SENSORS_PER_TURN])
        await asyncio.sleep(0)


class ChannelSensor(MeterEntity[float], SensorEntity):
    """One quantity of one phase, channel or the three-phase total."""

    entity_description: ChannelSensorDescription

    def __init__(
        self,
        coordinator: MeterCoordinator,
        description: ChannelSensorDescription,
        reading: ChannelReading,
    ) -> None:
        """Name the sensor after its phase or channel ("Phase A power", "Channel 1 power")."""
        self._channel_id = reading.id
        super().__init__(coordinator, description, f"{reading.id}_{description.key}")
        self._attr_translation_key, self._attr_translation_placeholders = channel_naming(
            reading, description.key
        )
        if reading.kind is ChannelKind.TOTAL and description.key in _TOTALS_ENABLED:
            self._attr_entity_registry_enabled_default = True

    def _read(self) -> float | None:
        reading = self.coordinator.data.channel(self._channel_id)
        return None if reading is None else self.entity_description.value_fn(reading)

    @property
    def native_value(self) -> float | None:
        """Return the reading."""
        return self._value


class MeterSensor(MeterEntity[float], SensorEntity):
    """A quantity of the whole meter."""

    entity_description: MeterSensorDescription

    def _read(self) -> float | None:
        return self.entity_description.value_fn(self.coordinator.data)

    @property
    def native_value(self) -> float | None:
        """Return the value the meter reports."""
        return self._value


class VoltageRangeSensor(MeterEntity[float], SensorEntity):
    """A phase's or channel's lowest or highest voltage today."""

    entity_description: VoltageRangeDescription

    def __init__(
        self,
        coordinator: MeterCoordinator,
        description: VoltageRangeDescription,
        reading: ChannelReading,
    ) -> None:
        """Name the sensor after its phase or channel ("Phase A lowest voltage today")."""
        self._channel_id = reading.id
        super().__init__(coordinator, description, f"{reading.id}_{description.key}")
        self._attr_translation_key, self._attr_translation_placeholders = channel_naming(
            reading, description.key
        )

    def _read(self) -> float | None:
        voltage_range = self.coordinator.supply.voltage_range.voltage_range(self._channel_id)
        return None if voltage_range is None else self.entity_description.value_fn(voltage_range)

    @property
    def native_value(self) -> float | None:
        """Return the voltage."""
        return self._value


class LastRestartSensor(MeterEntity[datetime], SensorEntity):
    """When the meter last started: its uptime as a stable timestamp."""

    def __init__(self, coordinator: MeterCoordinator, description: SensorEntityDescription) -> None:
        """Describe the sensor."""
        self._restarted_at: datetime | None = None
        super().__init__(coordinator, description)

    def _read(self) -> datetime | None:
        """Return the restart time, moved only when the meter really restarted."""
        snapshot = self.coordinator.data
        if snapshot.uptime is None:
            return None
        started = timestamp(snapshot.time - snapshot.uptime)
        if started is None:  # before any synced clock: the uptime or the time is garbage
            return None
        restarted_at = dt_util.utc_from_timestamp(started)
        previous = self._restarted_at
        if previous is None or abs((restarted_at - previous).total_seconds()) > RESTART_TOLERANCE_S:
            self._restarted_at = previous = restarted_at
        return previous

    @property
    def native_value(self) -> datetime | None:
        """Return when the meter last started."""
        return self._value


HISTORY_IMPORT = SensorEntityDescription(
    key="history_import",
    translation_key="history_import",
    native_unit_of_measurement=PERCENTAGE,
    entity_category=EntityCategory.DIAGNOSTIC,
    suggested_display_precision=0,
)


class HistoryImportSensor(MeterEntity[float], SensorEntity):
    """How far the import of the meter's stored records got, and how it went."""

    def __init__(self, coordinator: MeterCoordinator, history: MeterHistory) -> None:
        """Follow the meter's history import."""
        self._history = history
        super().__init__(coordinator, HISTORY_IMPORT)

    async def async_added_to_hass(self) -> None:
        """Write the state whenever the import moves on."""
        await super().async_added_to_hass()
        self.async_on_remove(
            async_dispatcher_connect(
                self.hass,
                signal_history_updated(self.coordinator.config_entry.entry_id),
                self._history_updated,
            )
        )

    @callback
    def _history_updated(self) -> None:
        # The attributes change without the percentage: always write.
        self._value = self._read()
        self.async_write_ha_state()

    def _read(self) -> float | None:
        return self._history.progress.percent

    @property
    def available(self) -> bool:
        """Return True: the import's state is known while the meter is away too."""
        return True

    @property
    def native_value(self) -> float | None:
        """Return the progress in percent."""
        return self._value

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        """Return the status, how far the records were read and how many."""
        progress = self._history.progress
        until = progress.imported_until
        return {
            "status": progress.status.value,
            "imported_until": None if until is None else until.isoformat(),
            "records": progress.records,
        }


@dataclass(frozen=True, kw_only=True)
class SiteSensorDescription(SensorEntityDescription):
    """A flow or ratio of an energy site."""

    value_fn: Callable[[SiteState], float | None]
    # Created when the site has a channel with one of these roles (empty: always).
    roles: frozenset[Role] = frozenset()
    settled: bool = False  # created only with a settlement period
    capacity: bool = False  # created only with capacity peaks measured


def _power(**kwargs: Any) -> SiteSensorDescription:
    return SiteSensorDescription(
        device_class=SensorDeviceClass.POWER,
        native_unit_of_measurement=UnitOfPower.WATT,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=0,
        **kwargs,
    )


def _energy(**kwargs: Any) -> SiteSensorDescription:
    return SiteSensorDescription(
        device_class=SensorDeviceClass.ENERGY,
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        state_class=SensorStateClass.TOTAL_INCREASING,
        suggested_display_precision=3,
        **kwargs,
    )


def _ratio(**kwargs: Any) -> SiteSensorDescription:
    return SiteSensorDescription(
        native_unit_of_measurement=PERCENTAGE,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=0,
        **kwargs,
    )


def _period_energy(key: str, energy_of: Callable[[RunningPeriod], float]) -> SiteSensorDescription:
    """Describe an energy (kWh) of the running settlement period."""
    return SiteSensorDescription(
        key=key,
        roles=_GRID,
        settled=True,
        device_class=SensorDeviceClass.ENERGY,
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        suggested_display_precision=3,
        value_fn=lambda s: None if s.period is None else _kwh(energy_of(s.period)),
    )


def _capacity_power(
    key: str, power_of: Callable[[CapacityState], float | None]
) -> SiteSensorDescription:
    """Describe a power (kW) of capacity peaks."""
    return SiteSensorDescription(
        key=key,
        roles=_GRID,
        capacity=True,
        device_class=SensorDeviceClass.POWER,
        native_unit_of_measurement=UnitOfPower.KILO_WATT,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=2,
        value_fn=lambda s: None if s.capacity is None else _kw(power_of(s.capacity)),
    )


def _kw(value: float | None) -> float | None:
    # Whole W, as for energy: finer changes would be rows the recorder writes for nothing.
    return None if value is None else round(value, 3)


def _percent(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


_GRID = frozenset({Role.GRID})
_SOLAR = frozenset({Role.SOLAR})
_BATTERY = frozenset({Role.BATTERY})

SITE_SENSORS: tuple[SiteSensorDescription, ...] = (
    _power(key="grid_net_power", roles=_GRID, value_fn=lambda s: s.power.grid_net),
    _power(key="grid_import_power", roles=_GRID, value_fn=lambda s: s.power.grid_import),
    _power(key="grid_export_power", roles=_GRID, value_fn=lambda s: s.power.grid_export),
    _power(key="solar_power", roles=_SOLAR, value_fn=lambda s: s.power.solar_production),
    _power(
        key="battery_charging_power", roles=_BATTERY, value_fn=lambda s: s.power.battery_charging
    ),
    _power(
        key="battery_discharging_power",
        roles=_BATTERY,
        value_fn=lambda s: s.power.battery_discharging,
    ),
    _power(key="battery_net_power", roles=_BATTERY, value_fn=lambda s: s.power.battery_net),
    _power(key="home_power", value_fn=lambda s: s.power.home_consumption),
    _power(key="self_consumed_power", roles=_SOLAR, value_fn=lambda s: s.power.self_consumed_solar),
    _energy(key="grid_import_energy", roles=_GRID, value_fn=lambda s: _kwh(s.energy.grid_import)),
    _energy(key="grid_export_energy", roles=_GRID, value_fn=lambda s: _kwh(s.energy.grid_export)),
    _energy(key="solar_energy", roles=_SOLAR, value_fn=lambda s: _kwh(s.energy.solar_production)),
    _energy(
        key="battery_charged_energy",
        roles=_BATTERY,
        value_fn=lambda s: _kwh(s.energy.battery_charged),
    ),
    _energy(
        key="battery_discharged_energy",
        roles=_BATTERY,
        value_fn=lambda s: _kwh(s.energy.battery_discharged),
    ),
    _energy(key="home_energy", value_fn=lambda s: _kwh(s.energy.home_consumption)),
    _energy(
        key="self_consumed_energy",
        roles=_SOLAR,
        value_fn=lambda s: _kwh(s.energy.self_consumed_solar),
    ),
    _ratio(
        key="self_consumption_rate",
        roles=_SOLAR,
        value_fn=lambda s: _percent(s.self_consumption_rate),
    ),
    _ratio(key="self_sufficiency", roles=_GRID, value_fn=lambda s: _percent(s.self_sufficiency)),
    _period_energy("period_net_energy", lambda period: period.net),
    _period_energy("period_offset_energy", lambda period: period.to_offset),
    SiteSensorDescription(
        key="period_time_left",
        roles=_GRID,
        settled=True,
        device_class=SensorDeviceClass.DURATION,
        native_unit_of_measurement=UnitOfTime.SECONDS,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=0,
        value_fn=lambda s: None if s.period is None else s.period.seconds_left,
    ),
    _capacity_power("capacity_demand", lambda capacity: capacity.demand_kw),
    _capacity_power("capacity_peak", lambda capacity: capacity.peak_kw),
    _capacity_power("capacity_headroom", lambda capacity: capacity.headroom_kw),
)


def _add_site_sensors(
    hass: HomeAssistant,
    entry: SiteConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Create the flows of the roles the site has, and power and energy sensors per load."""
    coordinator = entry.runtime_data.coordinator
    config = coordinator.config
    entities: list[SensorEntity] = [
        SiteSensor(coordinator, description)
        for description in SITE_SENSORS
        if (not description.roles or any(config.has_role(role) for role in description.roles))
        and (not description.settled or config.settlement is not Settlement.INSTANT)
        and (not description.capacity or config.capacity is not None)
    ]
    for ref in config.channels(Role.LOAD):
        label = channel_label(hass, ref)
        entities.append(LoadPowerSensor(coordinator, ref, label))
        entities.extend(
            LoadEnergySensor(coordinator, ref, label, field, description)
            for field, description in LOAD_ENERGY.items()
        )
    if (grid_watch := coordinator.grid_watch) is not None:
        if grid_watch.watches_power():
            entities.append(HeadroomSensor(coordinator))
        entities.extend(
            HeadroomSensor(coordinator, key, label) for key, label in grid_watch.fused.items()
        )
    if coordinator.billing is not None:
        currency = hass.config.currency
        capacity_charge = coordinator.billing.tariff.capacity is not None
        entities.extend(
            CostSensor(coordinator, description, currency)
            for description in COST_SENSORS
            if not description.capacity or capacity_charge
        )
    async_add_entities(entities)


class SiteSensor(SiteEntity[float], SensorEntity):
    """A flow or ratio of an energy site."""

    entity_description: SiteSensorDescription

    def __init__(self, coordinator: SiteCoordinator, description: SiteSensorDescription) -> None:
        """Describe the sensor."""
        self._attr_translation_key = description.key
        super().__init__(coordinator, description)

    def _read(self) -> float | None:
        return self.entity_description.value_fn(self.coordinator.data)

    @property
    def native_value(self) -> float | None:
        """Return the site's value."""
        return self._value


LOAD_POWER = _power(key="load_power", translation_key="load_power", value_fn=lambda s: None)


class LoadPowerSensor(SiteEntity[float], SensorEntity):
    """The power of one circuit (a channel with the load role)."""

    def __init__(self, coordinator: SiteCoordinator, ref: ChannelRef, label: str) -> None:
        """Name the sensor after the circuit's channel."""
        self._ref = ref
        self._attr_translation_placeholders = {"load": label}
        super().__init__(coordinator, LOAD_POWER, f"load_{channel_key(ref)}")

    def _read(self) -> float | None:
        return self.coordinator.data.power.loads.get(self._ref)

    @property
    def native_value(self) -> float | None:
        """Return the circuit's power."""
        return self._value


# By `LoadEnergy` field. Few circuits ever feed energy back (a plug-in solar panel, a vehicle
# that powers the home): their owners enable the returned energy.
LOAD_ENERGY = {
    "consumed": _energy(key="load_energy", translation_key="load_energy", value_fn=lambda s: None),
    "returned": _energy(
        key="load_returned_energy",
        translation_key="load_returned_energy",
        entity_registry_enabled_default=False,
        value_fn=lambda s: None,
    ),
}


class LoadEnergySensor(SiteEntity[float], SensorEntity):
    """The energy one circuit consumed, or returned, since the site first saw it (kWh)."""

    def __init__(
        self,
        coordinator: SiteCoordinator,
        ref: ChannelRef,
        label: str,
        field: str,
        description: SiteSensorDescription,
    ) -> None:
        """Name the sensor after the circuit's channel."""
        self._ref = ref
        self._field = field
        self._attr_translation_placeholders = {"load": label}
        super().__init__(coordinator, description, load_series(ref)[field])

    def _read(self) -> float | None:
        load: LoadEnergy | None = self.coordinator.data.loads.get(self._ref)
        return None if load is None else _kwh(getattr(load, self._field))

    @property
    def native_value(self) -> float | None:
        """Return the circuit's energy total."""
        return self._value


CONTRACT_HEADROOM = SensorEntityDescription(
    key="contract_headroom",
    translation_key="contract_headroom",
    device_class=SensorDeviceClass.POWER,
    native_unit_of_measurement=UnitOfPower.KILO_WATT,
    state_class=SensorStateClass.MEASUREMENT,
    suggested_display_precision=2,
)
FUSE_HEADROOM = SensorEntityDescription(
    key="fuse_headroom",
    translation_key="fuse_headroom",
    device_class=SensorDeviceClass.CURRENT,
    native_unit_of_measurement=UnitOfElectricCurrent.AMPERE,
    state_class=SensorStateClass.MEASUREMENT,
    suggested_display_precision=1,
)


class HeadroomSensor(SiteEntity[float], SensorEntity):
    """How far the grid import stays below the contracted power, or a phase below its fuse."""

    def __init__(
        self, coordinator: SiteCoordinator, key: str | None = None, label: str = ""
    ) -> None:
        """Describe the contracted power's headroom, or a grid channel's fuse's (by its key)."""
        self._key = key
        if key is None:
            super().__init__(coordinator, CONTRACT_HEADROOM)
            return
        self._attr_translation_placeholders = {"channel": label}
        super().__init__(coordinator, FUSE_HEADROOM, f"fuse_headroom_{key}")

    def _read(self) -> float | None:
        watch = self.coordinator.grid_watch
        if watch is None:
            return None
        headroom = (
            watch.power_headroom_kw() if self._key is None else watch.fuse_headroom_a(self._key)
        )
        return None if headroom is None else round(headroom, 3)

    @property
    def native_value(self) -> float | None:
        """Return the headroom."""
        return self._value


@dataclass(frozen=True, kw_only=True)
class ExportSensorDescription(SensorEntityDescription):
    """A diagnostic value of the Emoncms export."""

    value_fn: Callable[[ExportStatus], float | datetime | None]


EXPORT_SENSORS: tuple[ExportSensorDescription, ...] = (
    ExportSensorDescription(
        key="queue_length",
        translation_key="queue_length",
        native_unit_of_measurement="samples",
        state_class=SensorStateClass.MEASUREMENT,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda status: status.queued,
    ),
    ExportSensorDescription(
        key="last_send",
        translation_key="last_send",
        device_class=SensorDeviceClass.TIMESTAMP,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda status: (
            None if status.last_success is None else dt_util.utc_from_timestamp(status.last_success)
        ),
    ),
)


class ExportSensor(ExportEntity, SensorEntity):
    """How the Emoncms export is doing."""

    entity_description: ExportSensorDescription

    @property
    def native_value(self) -> float | datetime | None:
        """Return the value from the exporter's state."""
        return self.entity_description.value_fn(self.coordinator.data)


@dataclass(frozen=True, kw_only=True)
class CostSensorDescription(SensorEntityDescription):
    """A cost, a price or the projection of a site with a tariff.

    `per_kwh`: a price, in currency per kWh; otherwise an amount of money (device class monetary)
    unless the description has a device class of its own. `resets`: when the amount restarts.
    """

    value_fn: Callable[[SiteBilling], float | None]
    attributes_fn: Callable[[SiteBilling], dict[str, Any]] = lambda _: {}
    per_kwh: bool = False
    resets: Callable[[SiteBilling], datetime] | None = None
    capacity: bool = False  # created only for a tariff with a capacity charge


def _projection(billing: SiteBilling) -> Projection | None:
    projection = billing.projection
    return projection if isinstance(projection, Projection) else None


def _projected_bill(billing: SiteBilling) -> float | None:
    projection = _projection(billing)
    return None if projection is None else round(projection.bill.total, 2)


def _projected_kwh(billing: SiteBilling) -> float | None:
    projection = _projection(billing)
    return None if projection is None else round(projection.import_kwh, 3)


def _projection_attributes(billing: SiteBilling) -> dict[str, Any]:
    projection = billing.projection
    if not isinstance(projection, Projection):
        return {"reason": "not_yet" if projection is None else projection.reason}
    return {
        "bill_low": round(projection.bill_low.total, 2),
        "bill_high": round(projection.bill_high.total, 2),
        "consumption_low": round(projection.import_low_kwh, 3),
        "consumption_high": round(projection.import_high_kwh, 3),
        "consumption_so_far": round(projection.import_so_far_kwh, 3),
        "tier": projection.tier,
        "method": projection.method.value,
        "trend": round(projection.trend, 3),
        "period_start": projection.period.start.isoformat(),
        "period_end": projection.period.end.isoformat(),
    }


def _tier(billing: SiteBilling) -> dict[str, Any]:
    pricing = billing.tariff.pricing
    if not isinstance(pricing, SlabPricing):
        return {}
    return {"tier": pricing.tier_of(billing.accumulator.bill.import_kwh)}


def _capacity_charge(billing: SiteBilling) -> float | None:
    bill = billing.accumulator.bill
    return None if bill.capacity_kw is None else _with_tax(billing, bill.capacity_charge)


def _capacity_band(billing: SiteBilling) -> dict[str, Any]:
    capacity, peak = billing.tariff.capacity, billing.accumulator.bill.capacity_kw
    if not isinstance(capacity, BandedCapacity) or peak is None:
        return {}
    return {"band": capacity.band_of(peak)}


def _with_tax(billing: SiteBilling, amount: float) -> float:
    return round(amount * (1 + billing.tariff.tax_percent / 100), 2)


def _day_start(billing: SiteBilling) -> datetime:
    return dt_util.start_of_local_day(billing.accumulator.today.day)


def _period_start(billing: SiteBilling) -> datetime:
    return billing.accumulator.bill.period.start


COST_SENSORS: tuple[CostSensorDescription, ...] = (
    CostSensorDescription(
        key="cost_today",
        translation_key="cost_today",
        value_fn=lambda b: _with_tax(b, b.accumulator.today.energy_charge),
        resets=_day_start,
    ),
    CostSensorDescription(
        key="period_cost",
        translation_key="period_cost",
        value_fn=lambda b: _with_tax(b, b.accumulator.bill.energy_charge),
        resets=_period_start,
    ),
    CostSensorDescription(
        key="capacity_charge",
        translation_key="capacity_charge",
        capacity=True,
        value_fn=_capacity_charge,
        attributes_fn=_capacity_band,
        resets=_period_start,
    ),
    CostSensorDescription(
        key="export_credit",
        translation_key="export_credit",
        value_fn=lambda b: round(b.accumulator.bill.export_credit, 2),
        resets=_period_start,
    ),
    CostSensorDescription(
        key="net_bill",
        translation_key="net_bill",
        value_fn=lambda b: round(b.accumulator.bill.total, 2),
        resets=_period_start,
    ),
    CostSensorDescription(
        key="projected_bill",
        translation_key="projected_bill",
        value_fn=_projected_bill,
        attributes_fn=_projection_attributes,
    ),
    CostSensorDescription(
        key="projected_consumption",
        translation_key="projected_consumption",
        device_class=SensorDeviceClass.ENERGY,
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        value_fn=_projected_kwh,
        attributes_fn=_projection_attributes,
    ),
    CostSensorDescription(
        key="marginal_price",
        translation_key="marginal_price",
        per_kwh=True,
        value_fn=lambda b: b.accumulator.marginal_price,
        attributes_fn=_tier,
    ),
    CostSensorDescription(
        key="effective_price",
        translation_key="effective_price",
        per_kwh=True,
        # What the Energy dashboard multiplies each kWh by: the cost sensors' tax included.
        value_fn=lambda b: round(
            b.accumulator.effective_price * (1 + b.tariff.tax_percent / 100), 6
        ),
    ),
)


class CostSensor(SiteEntity[float], SensorEntity):
    """What a site's energy costs, will cost, and the price of the next kWh."""

    entity_description: CostSensorDescription

    def __init__(
        self, coordinator: SiteCoordinator, description: CostSensorDescription, currency: str
    ) -> None:
        """Describe the sensor in the currency of Home Assistant's configuration."""
        super().__init__(coordinator, description)
        if description.per_kwh:
            self._attr_native_unit_of_measurement = f"{currency}/{UnitOfEnergy.KILO_WATT_HOUR}"
            self._attr_state_class = SensorStateClass.MEASUREMENT
        elif description.device_class is None:
            self._attr_device_class = SensorDeviceClass.MONETARY
            self._attr_native_unit_of_measurement = currency
            if description.resets is not None:
                self._attr_state_class = SensorStateClass.TOTAL

    def _read(self) -> float | None:
        billing = self.coordinator.billing
        return None if billing is None else self.entity_description.value_fn(billing)

    @property
    def native_value(self) -> float | None:
        """Return the amount, price or projection."""
        return self._value

    @property
    def available(self) -> bool:
        """Return True: a projection not made yet is unknown, with the reason as attribute."""
        return self.coordinator.last_update_success

    @property
    def last_reset(self) -> datetime | None:
        """Return when the amount restarted from zero (a day or a billing period began)."""
        billing = self.coordinator.billing
        resets = self.entity_description.resets
        return None if billing is None or resets is None else resets(billing)

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        """Return the projection's range and details, or the tier the period is in."""
        billing = self.coordinator.billing
        return {} if billing is None else self.entity_description.attributes_fn(billing)


@dataclass(frozen=True, kw_only=True)
class VirtualMeterSensorDescription(SensorEntityDescription):
    """What a virtual meter serves, and to how many."""

    value_fn: Callable[[VirtualMeterStatus], float | None]
    attributes_fn: Callable[[VirtualMeterStatus], dict[str, Any]] = lambda _: {}


VIRTUAL_METER_SENSORS: tuple[VirtualMeterSensorDescription, ...] = (
    VirtualMeterSensorDescription(
        key="served_power",
        translation_key="served_power",
        device_class=SensorDeviceClass.POWER,
        native_unit_of_measurement=UnitOfPower.WATT,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=0,
        value_fn=lambda status: (
            status.state.total if isinstance(status.state, ServedValue) else None
        ),
    ),
    VirtualMeterSensorDescription(
        key="requests_per_minute",
        translation_key="requests_per_minute",
        native_unit_of_measurement="requests/min",
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda status: status.last_minute.requests,
    ),
    VirtualMeterSensorDescription(
        key="clients",
        translation_key="clients",
        native_unit_of_measurement="clients",
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda status: len(status.last_minute.clients),
        attributes_fn=lambda status: {"addresses": sorted(status.last_minute.clients)},
    ),
)


class VirtualMeterSensor(VirtualMeterEntity[float], SensorEntity):
    """A virtual meter's served power (unavailable while it serves none), requests or clients."""

    entity_description: VirtualMeterSensorDescription

    def _read(self) -> float | None:
        return self.entity_description.value_fn(self.coordinator.data)

    @property
    def native_value(self) -> float | None:
        """Return the value."""
        return self._value

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        """Return the client addresses of the clients sensor."""
        return self.entity_description.attributes_fn(self.coordinator.data)
