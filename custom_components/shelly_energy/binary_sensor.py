"""Binary sensors: a meter's voltage problems and firmware updates; a virtual meter serving."""

from __future__ import annotations

from typing import Any

from homeassistant.components.binary_sensor import (
    BinarySensorDeviceClass,
    BinarySensorEntity,
    BinarySensorEntityDescription,
)
from homeassistant.config_entries import ConfigEntry
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.util import dt as dt_util

from .const import KIND_VIRTUAL_METER
from .coordinator import MeterCoordinator, entry_kind
from .energy.anomalies import SupplyStatus
from .entity import MeterEntity, VirtualMeterEntity, channel_naming
from .meter.snapshot import ChannelReading
from .runtime import MeterConfigEntry
from .virtual_meter.guard import ServedValue

PARALLEL_UPDATES = 0

FIRMWARE_UPDATE = BinarySensorEntityDescription(
    key="firmware_update",
    translation_key="firmware_update",
    device_class=BinarySensorDeviceClass.UPDATE,
    entity_category=EntityCategory.DIAGNOSTIC,
)
VOLTAGE_PROBLEM = BinarySensorEntityDescription(
    key="voltage_problem", device_class=BinarySensorDeviceClass.PROBLEM
)


SERVING = BinarySensorEntityDescription(key="serving", translation_key="serving")
SERVING_STATE = "serving"  # the value of a serving meter's sensor; else the reason it is silent


async def async_setup_entry(
    hass: HomeAssistant,
    entry: ConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Create a meter's binary sensors, or a virtual meter's "serving"."""
    if entry_kind(entry) == KIND_VIRTUAL_METER:
        async_add_entities([ServingSensor(entry.runtime_data.coordinator, SERVING)])
    else:
        _add_meter_binary_sensors(entry, async_add_entities)


def _add_meter_binary_sensors(
    entry: MeterConfigEntry, async_add_entities: AddConfigEntryEntitiesCallback
) -> None:
    """Create a voltage problem sensor per phase or channel, and the update sensor."""
    coordinator = entry.runtime_data.coordinator
    entities: list[BinarySensorEntity] = [
        VoltageProblemSensor(coordinator, reading) for reading in coordinator.data.channels
    ]
    if coordinator.data.update_available is not None:
        entities.append(FirmwareUpdateSensor(coordinator, FIRMWARE_UPDATE))
    async_add_entities(entities)


class FirmwareUpdateSensor(MeterEntity[bool], BinarySensorEntity):
    """Whether the meter offers a newer stable firmware."""

    def _read(self) -> bool | None:
        return self.coordinator.data.update_available

    @property
    def is_on(self) -> bool | None:
        """Return whether an update is available."""
        return self._value


type ShownProblem = tuple[bool, dict[str, Any]]  # on, and the attributes
_NO_PROBLEM: ShownProblem = (False, {"kind": None, "value": None, "limit": None, "since": None})


def shown_problem(status: SupplyStatus) -> ShownProblem:
    """Return what a voltage problem sensor shows of a status: on, and its worst anomaly."""
    worst = status.worst
    if worst is None:
        return _NO_PROBLEM
    return (
        status.problem,
        {
            "kind": worst.type.value,
            "value": round(worst.value, 2),
            "limit": round(worst.limit, 2),
            "since": dt_util.utc_from_timestamp(worst.since).isoformat(),
        },
    )


class VoltageProblemSensor(MeterEntity[ShownProblem], BinarySensorEntity):
    """On while the supply of a phase (or the whole meter's frequency or balance) is anomalous.

    Its value is what it shows (not the status itself): an anomaly whose worst reading moves
    only beyond the rounding of the attributes writes no state.
    """

    def __init__(self, coordinator: MeterCoordinator, reading: ChannelReading) -> None:
        """Name the sensor after its phase or channel ("Phase A voltage problem")."""
        self._phase = reading.id
        super().__init__(coordinator, VOLTAGE_PROBLEM, f"{reading.id}_{VOLTAGE_PROBLEM.key}")
        self._attr_translation_key, self._attr_translation_placeholders = channel_naming(
            reading, VOLTAGE_PROBLEM.key
        )

    def _read(self) -> ShownProblem:
        return shown_problem(self.coordinator.supply.detector.status(self._phase))

    @property
    def is_on(self) -> bool | None:
        """Return whether an anomaly is in progress."""
        return None if self._value is None else self._value[0]

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        """Return the worst anomaly in progress: its kind, value, limit and start."""
        return (_NO_PROBLEM if self._value is None else self._value)[1]


class ServingSensor(VirtualMeterEntity[str], BinarySensorEntity):
    """On while a virtual meter answers with a value; off (and why) while it stays silent."""

    def _read(self) -> str:
        state = self.coordinator.data.state
        return SERVING_STATE if isinstance(state, ServedValue) else state.value

    @property
    def is_on(self) -> bool:
        """Return whether the meter serves a value."""
        return self._value == SERVING_STATE

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        """Return why the meter is silent: no reading, stale, implausible or paused."""
        return {"reason": None if self._value == SERVING_STATE else self._value}
