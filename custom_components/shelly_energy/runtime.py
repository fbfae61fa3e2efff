"""What each kind of loaded entry holds (its `runtime_data`), and the config entry typed with it.

The modules that make these things never import this one, so no import goes in a circle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeassistant.config_entries import ConfigEntry

from .coordinator import MeterCoordinator, SiteCoordinator
from .export_entry import ExportCoordinator
from .history_import import MeterHistory, SiteHistory
from .virtual_meter_entry import VirtualMeterCoordinator


@dataclass
class MeterRuntime:
    """What a loaded meter entry holds."""

    coordinator: MeterCoordinator
    options: dict[str, Any]  # as the entry was set up with: a change reloads it
    history: MeterHistory | None = None  # with the recorder: the stored records' import


type MeterConfigEntry = ConfigEntry[MeterRuntime]


@dataclass
class SiteRuntime:
    """What a loaded energy site entry holds."""

    coordinator: SiteCoordinator
    history: SiteHistory | None = None  # with the recorder: history from the meters' records


type SiteConfigEntry = ConfigEntry[SiteRuntime]


@dataclass
class ExportRuntime:
    """What a loaded export entry holds."""

    coordinator: ExportCoordinator


type ExportConfigEntry = ConfigEntry[ExportRuntime]


@dataclass
class VirtualMeterRuntime:
    """What a loaded virtual meter entry holds."""

    coordinator: VirtualMeterCoordinator


type VirtualMeterConfigEntry = ConfigEntry[VirtualMeterRuntime]
