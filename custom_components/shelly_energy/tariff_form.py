"""The tariff form of an energy site: its fields, and the Tariff they describe.

The form has two steps: the billing (pricing kind, period, fixed charge, tax, export price,
capacity charge kind) and the prices of the chosen kind (one price; up to five slabs and the price
above them; or up to three time-of-use windows and the price outside them); and a third for a
capacity charge (a price per kW of the peak and a minimum; or up to five bands of the peak and
the charge above them).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import time
from typing import Any

import voluptuous as vol
from homeassistant.helpers.selector import (
    BooleanSelector,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
    TimeSelector,
)

from .const import PRICING_NONE
from .energy.tariff import (
    BandedCapacity,
    BillingCycle,
    CapacityBand,
    CapacityPricing,
    FlatPricing,
    PerKwCapacity,
    Pricing,
    Slab,
    SlabPricing,
    Tariff,
    TimeOfUsePricing,
    TimeWindow,
)

PRICING = "pricing"
BILLING_MONTHS = "billing_months"
START_DAY = "start_day"
ANCHOR_MONTH = "anchor_month"
FIXED_CHARGE = "fixed_charge"
TAX_PERCENT = "tax_percent"
EXPORT_PRICE = "export_price"
PRICE = "price"
TELESCOPIC = "telescopic"
ABOVE_PRICE = "above_price"
DEFAULT_PRICE = "default_price"
CAPACITY_PRICING = "capacity_pricing"
CAPACITY_PRICE = "capacity_price"
MINIMUM_KW = "minimum_kw"
ABOVE_CHARGE = "above_charge"
SLABS = 5
WINDOWS = 3
BANDS = 5
PRICING_KINDS = (PRICING_NONE, FlatPricing.KIND, SlabPricing.KIND, TimeOfUsePricing.KIND)
CAPACITY_KINDS = (PRICING_NONE, PerKwCapacity.KIND, BandedCapacity.KIND)
WEEKDAYS = [str(day) for day in range(7)]


def _money(maximum: float = 1_000_000) -> NumberSelector:
    return NumberSelector(
        NumberSelectorConfig(min=0, max=maximum, step="any", mode=NumberSelectorMode.BOX)
    )


def _whole(minimum: int, maximum: int) -> NumberSelector:
    return NumberSelector(
        NumberSelectorConfig(min=minimum, max=maximum, step=1, mode=NumberSelectorMode.BOX)
    )


def billing_schema() -> vol.Schema:
    """Return the first step: the pricing kind and how the period is billed."""
    return vol.Schema(
        {
            vol.Required(PRICING, default=FlatPricing.KIND): SelectSelector(
                SelectSelectorConfig(
                    options=list(PRICING_KINDS),
                    translation_key=PRICING,
                    mode=SelectSelectorMode.LIST,
                )
            ),
            vol.Required(BILLING_MONTHS, default="1"): SelectSelector(
                SelectSelectorConfig(
                    options=["1", "2"], translation_key=BILLING_MONTHS, mode=SelectSelectorMode.LIST
                )
            ),
            vol.Required(START_DAY, default=1): _whole(1, 28),
            vol.Required(ANCHOR_MONTH, default=1): _whole(1, 12),
            vol.Required(FIXED_CHARGE, default=0): _money(),
            vol.Required(TAX_PERCENT, default=0): _money(100),
            vol.Required(EXPORT_PRICE, default=0): _money(),
            vol.Required(CAPACITY_PRICING, default=PRICING_NONE): SelectSelector(
                SelectSelectorConfig(
                    options=list(CAPACITY_KINDS),
                    translation_key=CAPACITY_PRICING,
                    mode=SelectSelectorMode.LIST,
                )
            ),
        }
    )


def prices_schema(kind: str) -> vol.Schema:
    """Return the second step: the prices of a pricing kind."""
    if kind == FlatPricing.KIND:
        return vol.Schema({vol.Required(PRICE): _money()})
    if kind == SlabPricing.KIND:
        slabs: dict[vol.Marker, Any] = {vol.Required(TELESCOPIC, default=True): BooleanSelector()}
        for number in range(1, SLABS + 1):
            slabs[vol.Optional(f"slab_{number}_up_to")] = _money()
            slabs[vol.Optional(f"slab_{number}_price")] = _money()
        slabs[vol.Required(ABOVE_PRICE)] = _money()
        return vol.Schema(slabs)
    windows: dict[vol.Marker, Any] = {vol.Required(DEFAULT_PRICE): _money()}
    for number in range(1, WINDOWS + 1):
        windows[vol.Optional(f"window_{number}_start")] = TimeSelector()
        windows[vol.Optional(f"window_{number}_end")] = TimeSelector()
        windows[vol.Optional(f"window_{number}_days", default=WEEKDAYS)] = SelectSelector(
            SelectSelectorConfig(options=WEEKDAYS, multiple=True, translation_key="weekday")
        )
        windows[vol.Optional(f"window_{number}_price")] = _money()
    return vol.Schema(windows)


def capacity_schema(kind: str) -> vol.Schema:
    """Return the third step: the capacity charge of a kind."""
    if kind == PerKwCapacity.KIND:
        return vol.Schema(
            {vol.Required(CAPACITY_PRICE): _money(), vol.Required(MINIMUM_KW, default=0): _money()}
        )
    bands: dict[vol.Marker, Any] = {}
    for number in range(1, BANDS + 1):
        bands[vol.Optional(f"band_{number}_up_to")] = _money()
        bands[vol.Optional(f"band_{number}_charge")] = _money()
    bands[vol.Required(ABOVE_CHARGE)] = _money()
    return vol.Schema(bands)


def tariff_from_form(
    billing: Mapping[str, Any],
    prices: Mapping[str, Any],
    capacity: Mapping[str, Any] | None = None,
) -> Tariff:
    """Return the tariff the steps describe; raise TariffError when it cannot be right.

    `capacity`: the third step's answer, for a capacity charge (None: none, or not asked yet).
    """
    kind = billing.get(CAPACITY_PRICING, PRICING_NONE)
    return Tariff(
        _pricing(billing[PRICING], prices),
        BillingCycle(
            int(billing[BILLING_MONTHS]), int(billing[START_DAY]), int(billing[ANCHOR_MONTH])
        ),
        float(billing[FIXED_CHARGE]),
        float(billing[TAX_PERCENT]),
        float(billing[EXPORT_PRICE]),
        None if capacity is None or kind == PRICING_NONE else _capacity(kind, capacity),
    )


def _capacity(kind: str, charges: Mapping[str, Any]) -> CapacityPricing:
    if kind == PerKwCapacity.KIND:
        return PerKwCapacity(float(charges[CAPACITY_PRICE]), float(charges[MINIMUM_KW]))
    bands = [
        CapacityBand(
            float(charges[f"band_{number}_up_to"]), float(charges[f"band_{number}_charge"])
        )
        for number in range(1, BANDS + 1)
        if charges.get(f"band_{number}_up_to") is not None
        and charges.get(f"band_{number}_charge") is not None
    ]
    bands.append(CapacityBand(None, float(charges[ABOVE_CHARGE])))
    return BandedCapacity(tuple(bands))


def _pricing(kind: str, prices: Mapping[str, Any]) -> Pricing:
    if kind == FlatPricing.KIND:
        return FlatPricing(float(prices[PRICE]))
    if kind == SlabPricing.KIND:
        slabs = [
            Slab(float(prices[f"slab_{number}_up_to"]), float(prices[f"slab_{number}_price"]))
            for number in range(1, SLABS + 1)
            if prices.get(f"slab_{number}_up_to") is not None
            and prices.get(f"slab_{number}_price") is not None
        ]
        slabs.append(Slab(None, float(prices[ABOVE_PRICE])))
        return SlabPricing(tuple(slabs), telescopic=bool(prices[TELESCOPIC]))
    windows = tuple(
        TimeWindow(
            f"window_{number}",
            time.fromisoformat(prices[f"window_{number}_start"]),
            time.fromisoformat(prices[f"window_{number}_end"]),
            float(prices[f"window_{number}_price"]),
            frozenset(int(day) for day in prices.get(f"window_{number}_days", WEEKDAYS)),
        )
        for number in range(1, WINDOWS + 1)
        if all(
            prices.get(f"window_{number}_{field}") is not None
            for field in ("start", "end", "price")
        )
    )
    return TimeOfUsePricing(windows, float(prices[DEFAULT_PRICE]))


def form_values(tariff: Tariff | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return what the two steps show for a tariff (nothing for no tariff)."""
    if tariff is None:
        return {}, {}
    billing = {
        PRICING: tariff.pricing.KIND,
        BILLING_MONTHS: str(tariff.billing.months),
        START_DAY: tariff.billing.start_day,
        ANCHOR_MONTH: tariff.billing.anchor_month,
        FIXED_CHARGE: tariff.fixed_charge,
        TAX_PERCENT: tariff.tax_percent,
        EXPORT_PRICE: tariff.export_price,
        CAPACITY_PRICING: PRICING_NONE if tariff.capacity is None else tariff.capacity.KIND,
    }
    pricing = tariff.pricing
    prices: dict[str, Any] = {}
    if isinstance(pricing, FlatPricing):
        prices[PRICE] = pricing.price
    elif isinstance(pricing, SlabPricing):
        prices[TELESCOPIC] = pricing.telescopic
        for number, slab in enumerate(pricing.slabs[:-1], 1):
            prices[f"slab_{number}_up_to"] = slab.up_to_kwh
            prices[f"slab_{number}_price"] = slab.price
        prices[ABOVE_PRICE] = pricing.slabs[-1].price
    else:
        prices[DEFAULT_PRICE] = pricing.default_price
        for number, window in enumerate(pricing.windows, 1):
            prices[f"window_{number}_start"] = window.start.isoformat()
            prices[f"window_{number}_end"] = window.end.isoformat()
            prices[f"window_{number}_days"] = [str(day) for day in sorted(window.weekdays)]
            prices[f"window_{number}_price"] = window.price
    return billing, prices


def capacity_values(capacity: CapacityPricing | None) -> dict[str, Any]:
    """Return what the third step shows for a capacity charge (nothing for none)."""
    if isinstance(capacity, PerKwCapacity):
        return {CAPACITY_PRICE: capacity.price, MINIMUM_KW: capacity.minimum_kw}
    if capacity is None:
        return {}
    values: dict[str, Any] = {ABOVE_CHARGE: capacity.bands[-1].charge}
    for number, band in enumerate(capacity.bands[:-1], 1):
        values[f"band_{number}_up_to"] = band.up_to_kw
        values[f"band_{number}_charge"] = band.charge
    return values
