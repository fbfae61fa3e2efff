"""A site's grid options beyond its roles: their forms, and the settings they describe.

Capacity peaks: the demand period (off, 15 minutes or an hour), the peak rule and its days. They
are stored under their own key of the site's options, absent while off.
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
    CONF_DEMAND_PERIOD,
    CONF_PEAK_DAYS,
    CONF_PEAK_RULE,
    CONF_TARIFF,
    DEMAND_PERIOD_OFF,
    DEMAND_PERIODS,
    MAX_PEAK_DAYS,
)
from .energy.capacity import DEFAULT_DAYS, CapacitySettings, PeakRule
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
