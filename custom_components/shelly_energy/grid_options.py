"""A site's grid options beyond its roles: their forms, and the settings they describe.

Capacity peaks: the demand period (off, 15 minutes or an hour), the peak rule and its days.
Contracted power: the power (kW) and the fuse of each phase (A), either optional; up to three trip
rules (above a percentage of the power for minutes); when a limit counts as exceeded and cleared.
Warnings: minutes before a settlement period closes with a net import above a threshold, and
before a demand period closes with its headroom below one.
Each is stored under its own key of the site's options, absent while off.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
    CONF_PEAK_WARNING_KW,
    CONF_PEAK_WARNING_MINUTES,
    CONF_PERIOD_WARNING_KWH,
    CONF_PERIOD_WARNING_MINUTES,
    CONF_SETTLEMENT,
    CONF_START_DELAY,
    CONF_TARIFF,
    CONF_WARNINGS,
    DEMAND_PERIOD_OFF,
    DEMAND_PERIODS,
    MAX_PEAK_DAYS,
    TRIP_RULES,
)
from .energy.alerts import ClosingWarning
from .energy.capacity import DEFAULT_DAYS, CapacitySettings, PeakRule
from .energy.contract import ContractLimits, LimitEventType, TripRule
from .energy.settlement import Settlement
from .energy.tariff import BillingCycle, Tariff
from .form_fields import number_box


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


def contract_schema() -> vol.Schema:
    """Return the contracted power form: the limits, the trip rules and the timings."""
    defaults = ContractLimits()
    schema: dict[vol.Marker, Any] = {
        vol.Optional(CONF_CONTRACTED_POWER): number_box(0.1, 10_000, "kW"),
        vol.Optional(CONF_FUSE): number_box(1, 10_000, "A"),
    }
    for number in range(1, TRIP_RULES + 1):
        schema[vol.Optional(f"rule_{number}_above")] = number_box(0, 1000, "%")
        schema[vol.Optional(f"rule_{number}_after")] = number_box(0, 1440, "min")
    schema[vol.Required(CONF_START_DELAY, default=defaults.start_delay)] = number_box(
        0, 3600, "s", 1
    )
    schema[vol.Required(CONF_CLEAR_DELAY, default=defaults.clear_delay)] = number_box(
        0, 3600, "s", 1
    )
    schema[vol.Required(CONF_MARGIN, default=defaults.margin_percent)] = number_box(0, 50, "%")
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


PERIOD_CLOSING = "period_closing"
PEAK_IMMINENT = "peak_imminent"


def grid_event_types(options: Mapping[str, Any]) -> list[str]:
    """Return the grid events a site's options make possible (see `grid_watch.GridWatch`)."""
    types: list[str] = []
    if (limits := contract_limits(options)) is not None:
        if limits.power_w is not None:
            types += [LimitEventType.POWER_EXCEEDED, LimitEventType.POWER_CLEARED]
        if limits.fuse_a is not None:
            types += [LimitEventType.FUSE_EXCEEDED, LimitEventType.FUSE_CLEARED]
    if period_warning(options) is not None:
        types.append(PERIOD_CLOSING)
    if peak_warning(options) is not None:
        types.append(PEAK_IMMINENT)
    return [str(event_type) for event_type in types]


def warnings_schema() -> vol.Schema:
    """Return the warnings form: the lead time and the threshold of each."""
    return vol.Schema(
        {
            vol.Optional(CONF_PERIOD_WARNING_MINUTES): number_box(0.5, 60, "min"),
            vol.Required(CONF_PERIOD_WARNING_KWH, default=0): number_box(0, 1000, "kWh"),
            vol.Optional(CONF_PEAK_WARNING_MINUTES): number_box(0.5, 60, "min"),
            vol.Required(CONF_PEAK_WARNING_KW, default=0): number_box(-1000, 1000, "kW"),
        }
    )


def warnings_values(options: Mapping[str, Any]) -> dict[str, Any]:
    """Return what the warnings form shows for a site's options."""
    return dict(options.get(CONF_WARNINGS, {}))


def _settled(options: Mapping[str, Any]) -> bool:
    return Settlement(options.get(CONF_SETTLEMENT, Settlement.INSTANT)) is not Settlement.INSTANT


def warnings_errors(options: Mapping[str, Any], form: Mapping[str, Any]) -> dict[str, str]:
    """Return the warnings form's errors: a warning needs what it watches."""
    if form.get(CONF_PERIOD_WARNING_MINUTES) is not None and not _settled(options):
        return {CONF_PERIOD_WARNING_MINUTES: "needs_settlement"}
    if form.get(CONF_PEAK_WARNING_MINUTES) is not None and CONF_CAPACITY not in options:
        return {CONF_PEAK_WARNING_MINUTES: "needs_capacity"}
    return {}


def with_warnings(options: Mapping[str, Any], form: Mapping[str, Any]) -> dict[str, Any]:
    """Return a site's options with the warnings form's answer (no warning: none stored)."""
    kept = {key: value for key, value in options.items() if key != CONF_WARNINGS}
    if (
        form.get(CONF_PERIOD_WARNING_MINUTES) is None
        and form.get(CONF_PEAK_WARNING_MINUTES) is None
    ):
        return kept
    return {**kept, CONF_WARNINGS: dict(form)}


def period_warning(options: Mapping[str, Any]) -> ClosingWarning | None:
    """Return the warning of a settlement period closing with import (kWh; None: none).

    None too while the site has no settlement period: there is nothing to warn of.
    """
    if not _settled(options):
        return None
    return _warning(options, CONF_PERIOD_WARNING_MINUTES, CONF_PERIOD_WARNING_KWH, below=False)


def peak_warning(options: Mapping[str, Any]) -> ClosingWarning | None:
    """Return the warning of a new capacity peak imminent (headroom in kW; None: none).

    None too while the site measures no capacity peaks.
    """
    if CONF_CAPACITY not in options:
        return None
    return _warning(options, CONF_PEAK_WARNING_MINUTES, CONF_PEAK_WARNING_KW, below=True)


def _warning(
    options: Mapping[str, Any], minutes_key: str, threshold_key: str, *, below: bool
) -> ClosingWarning | None:
    minutes = options.get(CONF_WARNINGS, {}).get(minutes_key)
    if minutes is None:
        return None
    return ClosingWarning(float(minutes) * 60, float(options[CONF_WARNINGS][threshold_key]), below)
