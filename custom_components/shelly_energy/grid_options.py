"""A site's grid options beyond its roles: their forms, and the settings they describe.

Capacity peaks: the demand period (off, 15 minutes or an hour), the peak rule and its days.
Contracted power: the power (kW) and the fuse of each phase (A), either optional; up to three trip
rules (above a percentage of the power for minutes); when a limit counts as exceeded and cleared.
Each is stored under its own key of the site's options, absent while off.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import voluptuous as vol
from homeassistant.helpers.selector import (
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
)

from .const import (
    CONF_CAPACITY,
    CONF_CLEAR_DELAY,
    CONF_CONTRACT,
    CONF_CONTRACTED_POWER,
    CONF_DEMAND_PERIOD,
    CONF_FUSE,
    CONF_MARGIN,
    CONF_PEAK_DAYS,
    CONF_PEAK_RULE,
    CONF_START_DELAY,
    CONF_TARIFF,
    DEMAND_PERIOD_OFF,
    DEMAND_PERIODS,
    MAX_PEAK_DAYS,
    TRIP_RULES,
)
from .energy.capacity import DEFAULT_DAYS, CapacitySettings, PeakRule
from .energy.contract import ContractLimits, LimitEventType, TripRule
from .energy.tariff import BillingCycle, Tariff


def capacity_schema() -> vol.Schema:
    """Return the capacity form: the demand period, and which peak counts."""
    return vol.Schema(
        {
            vol.Required(CONF_DEMAND_PERIOD, default=DEMAND_PERIOD_OFF): SelectSelector(
                SelectSelectorConfig(
                    options=[DEMAND_PERIOD_OFF, *DEMAND_PERIODS],
                    translation_key=CONF_DEMAND_PERIOD,
                    mode=SelectSelectorMode.LIST,
                )
            ),
            vol.Required(CONF_PEAK_RULE, default=PeakRule.HIGHEST): SelectSelector(
                SelectSelectorConfig(
                    options=[rule.value for rule in PeakRule],
                    translation_key=CONF_PEAK_RULE,
                    mode=SelectSelectorMode.LIST,
                )
            ),
            vol.Required(CONF_PEAK_DAYS, default=DEFAULT_DAYS): NumberSelector(
                NumberSelectorConfig(min=1, max=MAX_PEAK_DAYS, step=1, mode=NumberSelectorMode.BOX)
            ),
        }
    )


def capacity_values(options: Mapping[str, Any]) -> dict[str, Any]:
    """Return what the capacity form shows for a site's options."""
    return dict(options.get(CONF_CAPACITY, {CONF_DEMAND_PERIOD: DEMAND_PERIOD_OFF}))


def with_capacity(options: Mapping[str, Any], form: Mapping[str, Any]) -> dict[str, Any]:
    """Return a site's options with the capacity form's answer (off: none stored)."""
    kept = {key: value for key, value in options.items() if key != CONF_CAPACITY}
    if form[CONF_DEMAND_PERIOD] == DEMAND_PERIOD_OFF:
        return kept
    return {
        **kept,
        CONF_CAPACITY: {
            CONF_DEMAND_PERIOD: form[CONF_DEMAND_PERIOD],
            CONF_PEAK_RULE: form[CONF_PEAK_RULE],
            CONF_PEAK_DAYS: int(form[CONF_PEAK_DAYS]),
        },
    }


def capacity_settings(options: Mapping[str, Any]) -> CapacitySettings | None:
    """Return how a site measures capacity peaks (None: it does not).

    A site with a tariff measures the peak per billing period of the tariff, since that is what
    a capacity charge is charged on; without one, per calendar month.
    """
    capacity = options.get(CONF_CAPACITY)
    if capacity is None:
        return None
    tariff = options.get(CONF_TARIFF)
    return CapacitySettings(
        int(capacity[CONF_DEMAND_PERIOD]),
        PeakRule(capacity[CONF_PEAK_RULE]),
        int(capacity[CONF_PEAK_DAYS]),
        BillingCycle() if tariff is None else Tariff.from_dict(tariff).billing,
    )


def _number(
    minimum: float, maximum: float, unit: str, step: float | Literal["any"] = "any"
) -> NumberSelector:
    return NumberSelector(
        NumberSelectorConfig(
            min=minimum,
            max=maximum,
            step=step,
            unit_of_measurement=unit,
            mode=NumberSelectorMode.BOX,
        )
    )


def contract_schema() -> vol.Schema:
    """Return the contracted power form: the limits, the trip rules and the timings."""
    defaults = ContractLimits()
    schema: dict[vol.Marker, Any] = {
        vol.Optional(CONF_CONTRACTED_POWER): _number(0.1, 10_000, "kW"),
        vol.Optional(CONF_FUSE): _number(1, 10_000, "A"),
    }
    for number in range(1, TRIP_RULES + 1):
        schema[vol.Optional(f"rule_{number}_above")] = _number(0, 1000, "%")
        schema[vol.Optional(f"rule_{number}_after")] = _number(0, 1440, "min")
    schema[vol.Required(CONF_START_DELAY, default=defaults.start_delay)] = _number(0, 3600, "s", 1)
    schema[vol.Required(CONF_CLEAR_DELAY, default=defaults.clear_delay)] = _number(0, 3600, "s", 1)
    schema[vol.Required(CONF_MARGIN, default=defaults.margin_percent)] = _number(0, 50, "%")
    return vol.Schema(schema)


def contract_values(options: Mapping[str, Any]) -> dict[str, Any]:
    """Return what the contracted power form shows for a site's options."""
    return dict(options.get(CONF_CONTRACT, {}))


def with_contract(options: Mapping[str, Any], form: Mapping[str, Any]) -> dict[str, Any]:
    """Return a site's options with the contracted power form's answer (no limit: none stored)."""
    kept = {key: value for key, value in options.items() if key != CONF_CONTRACT}
    if form.get(CONF_CONTRACTED_POWER) is None and form.get(CONF_FUSE) is None:
        return kept
    return {**kept, CONF_CONTRACT: dict(form)}


def contract_limits(options: Mapping[str, Any]) -> ContractLimits | None:
    """Return a site's contracted power and fuse limits (None: neither is set).

    A trip rule without both its percentage and its minutes is left out.
    """
    contract = options.get(CONF_CONTRACT)
    if contract is None:
        return None
    power = contract.get(CONF_CONTRACTED_POWER)
    fuse = contract.get(CONF_FUSE)
    return ContractLimits(
        power_w=None if power is None else float(power) * 1000,
        fuse_a=None if fuse is None else float(fuse),
        rules=tuple(
            TripRule(
                float(contract[f"rule_{number}_above"]),
                float(contract[f"rule_{number}_after"]) * 60,
            )
            for number in range(1, TRIP_RULES + 1)
            if contract.get(f"rule_{number}_above") is not None
            and contract.get(f"rule_{number}_after") is not None
        ),
        start_delay=float(contract[CONF_START_DELAY]),
        clear_delay=float(contract[CONF_CLEAR_DELAY]),
        margin_percent=float(contract[CONF_MARGIN]),
    )


def grid_event_types(options: Mapping[str, Any]) -> list[str]:
    """Return the grid events a site's options make possible (see `grid_watch.GridWatch`)."""
    limits = contract_limits(options)
    if limits is None:
        return []
    types = []
    if limits.power_w is not None:
        types += [LimitEventType.POWER_EXCEEDED, LimitEventType.POWER_CLEARED]
    if limits.fuse_a is not None:
        types += [LimitEventType.FUSE_EXCEEDED, LimitEventType.FUSE_CLEARED]
    return [event_type.value for event_type in types]
