"""Fields the integration's forms share."""

from __future__ import annotations

from typing import Literal

from homeassistant.helpers.selector import (
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
)


def number_box(
    minimum: float, maximum: float, unit: str, step: float | Literal["any"] = "any"
) -> NumberSelector:
    """Return a typed-in number field with its unit."""
    return NumberSelector(
        NumberSelectorConfig(
            min=minimum,
            max=maximum,
            step=step,
            unit_of_measurement=unit,
            mode=NumberSelectorMode.BOX,
        )
    )
