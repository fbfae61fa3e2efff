"""Constants of the Shelly Energy Monitor integration."""

from __future__ import annotations

from typing import Final

DOMAIN: Final = "shelly_energy"

# Config entry data of a meter
CONF_GENERATION: Final = "generation"
CONF_MODEL: Final = "model"

# Meter options
CONF_POLL_INTERVAL: Final = "poll_interval"
CONF_REVERSED_CHANNELS: Final = "reversed_channels"
CONF_DEADBAND: Final = "deadband"

DEFAULT_POLL_INTERVAL: Final = 5
MIN_POLL_INTERVAL: Final = 1
MAX_POLL_INTERVAL: Final = 300
DEFAULT_DEADBAND: Final = 0.0
MAX_DEADBAND: Final = 1000.0

DEFAULT_PORT: Final = 80

# What a config entry is: a meter, an energy site, or the Emoncms export.
CONF_KIND: Final = "kind"
KIND_METER: Final = "meter"
KIND_SITE: Final = "site"

# Energy site options
CONF_GRID_METERING: Final = "grid_metering"
CONF_GRID: Final = "grid"
CONF_SOLAR: Final = "solar"
CONF_BATTERY: Final = "battery"
CONF_LOAD: Final = "load"
ROLE_FIELDS: Final = (CONF_GRID, CONF_SOLAR, CONF_BATTERY, CONF_LOAD)
DEFAULT_SITE_NAME: Final = "Home"
# How often an energy site's totals are written to disk at most (they are also written on unload).
SITE_SAVE_DELAY_S: Final = 30
