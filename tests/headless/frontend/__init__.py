"""A stand-in for Home Assistant's frontend in the crash test's headless instance.

Home Assistant goes into recovery mode when its frontend does not load, and the frontend's
package is large; nothing a headless instance runs needs it. Never shipped.
"""

from __future__ import annotations

from homeassistant.core import HomeAssistant
from homeassistant.helpers.typing import ConfigType


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Set up nothing."""
    return True
