"""Constants of the Shelly Energy Monitor integration."""

from __future__ import annotations

from datetime import timedelta
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
# A meter pushing its readings is read whole this often (or at its interval, if longer): only
# what it does not push (Wi-Fi signal, firmware updates) is read, as Home Assistant's shelly does.
PUSHING_READ_INTERVAL: Final = 60
DEFAULT_DEADBAND: Final = 0.0
MAX_DEADBAND: Final = 1000.0

# A meter's energy counters reach the disk within this many seconds of a change, and within
# COUNTER_URGENT_SAVE_S when a rollback, reset or new level moved a counter's offset, a span was
# noted, a counter refused its first reading since its base or the meter rebooted.
COUNTER_SAVE_S: Final = 600
COUNTER_URGENT_SAVE_S: Final = 1

# What a config entry is: a meter, an energy site, or the Emoncms export.
CONF_KIND: Final = "kind"
KIND_METER: Final = "meter"
KIND_SITE: Final = "site"

# Energy site options
CONF_GRID_METERING: Final = "grid_metering"
# How often the utility settles the grid energy: "instant" or a period in minutes.
CONF_SETTLEMENT: Final = "settlement"
# Capacity peaks of a site, stored under CONF_CAPACITY while measured: the demand period (minutes),
# which peak a capacity tariff charges, and over how many days' peaks for the mean.
CONF_CAPACITY: Final = "capacity"
CONF_DEMAND_PERIOD: Final = "demand_period"
CONF_PEAK_RULE: Final = "peak_rule"
CONF_PEAK_DAYS: Final = "peak_days"
DEMAND_PERIOD_OFF: Final = "off"
DEMAND_PERIODS: Final = ("15", "60")
MAX_PEAK_DAYS: Final = 31
# Contracted power of a site, stored under CONF_CONTRACT while a limit is set: the power (kW), the
# fuse of each phase (A), trip rules (above a percentage of the power for minutes; the supply's
# time left before it trips), and when a limit counts as exceeded and cleared (CONF_START_DELAY,
# CONF_CLEAR_DELAY in s, CONF_MARGIN in percent).
CONF_CONTRACT: Final = "contract"
CONF_CONTRACTED_POWER: Final = "contracted_power"
CONF_FUSE: Final = "fuse"
CONF_MARGIN: Final = "margin_percent"
TRIP_RULES: Final = 3
# Warnings of a site, stored under CONF_WARNINGS while one is set: minutes before a settlement
# period ends with a net import above kWh; minutes before a demand period ends with a headroom
# before a new capacity peak below kW.
CONF_WARNINGS: Final = "warnings"
CONF_PERIOD_WARNING_MINUTES: Final = "period_minutes"
CONF_PERIOD_WARNING_KWH: Final = "period_import_kwh"
CONF_PEAK_WARNING_MINUTES: Final = "peak_minutes"
CONF_PEAK_WARNING_KW: Final = "peak_headroom_kw"
# A Home Assistant power sensor in the grid role (import positive), for a site without a Shelly
# meter on its grid connection.
CONF_GRID_SENSOR: Final = "grid_sensor"
CONF_GRID: Final = "grid"
CONF_SOLAR: Final = "solar"
CONF_BATTERY: Final = "battery"
CONF_LOAD: Final = "load"
ROLE_FIELDS: Final = (CONF_GRID, CONF_SOLAR, CONF_BATTERY, CONF_LOAD)
DEFAULT_SITE_NAME: Final = "Home"
# How often an energy site's totals are written to disk at most (they are also written on unload).
SITE_SAVE_DELAY_S: Final = 30

# Supply monitoring options of a meter, in their own section of the options form
CONF_SUPPLY: Final = "supply"
CONF_NOMINAL_VOLTAGE: Final = "nominal_voltage"
CONF_NOMINAL_FREQUENCY: Final = "nominal_frequency"
CONF_OVERVOLTAGE: Final = "overvoltage_percent"
CONF_UNDERVOLTAGE: Final = "undervoltage_percent"
CONF_SPIKE: Final = "spike_percent"
CONF_INTERRUPTION: Final = "interruption_percent"
CONF_FREQUENCY_DEVIATION: Final = "frequency_percent"
CONF_IMBALANCE: Final = "imbalance_percent"
CONF_START_DELAY: Final = "start_delay"
CONF_CLEAR_DELAY: Final = "clear_delay"
NOMINAL_VOLTAGES: Final = ("120", "220", "230", "240")
MIN_NOMINAL_VOLTAGE: Final = 50.0
MAX_NOMINAL_VOLTAGE: Final = 500.0
NOMINAL_FREQUENCIES: Final = ("50", "60")

# Fired on the event bus for every supply anomaly and its end, with the meter's device id.
EVENT_ANOMALY: Final = "shelly_energy_anomaly"
# Fired on the event bus for a site's grid events (a contracted power or fuse exceeded or cleared,
# a settlement period closing with import, a new capacity peak imminent), with the site's device id.
EVENT_GRID: Final = "shelly_energy_grid"

# The Emoncms export entry
KIND_EMONCMS: Final = "emoncms"
CONF_API_KEY: Final = "api_key"
CONF_URL: Final = "url"
CONF_INTERVAL: Final = "interval"
CONF_VALUES: Final = "values"
CONF_NODES: Final = "nodes"
DEFAULT_EMONCMS_URL: Final = "https://emoncms.org"
DEFAULT_EXPORT_INTERVAL: Final = 10
MIN_EXPORT_INTERVAL: Final = 5
MAX_EXPORT_INTERVAL: Final = 3600
# What can be sent: power per channel and totals, energy counters, voltages, and site flows.
EXPORT_VALUES: Final = ("power", "energy", "voltage", "site")
# The queue holds this much at the configured interval before the oldest samples are dropped.
EXPORT_QUEUE_DAYS: Final = 7
EXPORT_SAVE_DELAY_S: Final = 60

# The tariff of an energy site (stored in its options as Tariff.to_dict())
CONF_TARIFF: Final = "tariff"
PRICING_NONE: Final = "none"
PROJECTION_WEEKS: Final = 4
PROJECTION_REFRESH_S: Final = 3600
BILLING_SAVE_DELAY_S: Final = 60
# Fired when a site's projected consumption rises into the next slab of its tariff.
EVENT_TIER: Final = "shelly_energy_projected_tier"

# History from the meters' stored records: the event fired when a run completes, and how often
# the statistics are checked for gaps.
EVENT_HISTORY_IMPORTED: Final = "shelly_energy_history_imported"
HISTORY_CHECK_INTERVAL: Final = timedelta(hours=1)

# The virtual meter entry: a site's grid power served as a Shelly meter that batteries read.
KIND_VIRTUAL_METER: Final = "virtual_meter"
CONF_MAC: Final = "mac"  # entry data: the random MAC the meter's identity derives from
CONF_SITE: Final = "site"  # the served site's config entry id
CONF_TRANSPORTS: Final = "transports"
TRANSPORT_UDP: Final = "udp"
TRANSPORT_HTTP: Final = "http"
TRANSPORT_MDNS: Final = "mdns"
TRANSPORTS: Final = (TRANSPORT_UDP, TRANSPORT_HTTP, TRANSPORT_MDNS)
CONF_UDP_PORTS: Final = "udp_ports"
CONF_HTTP_PORT: Final = "http_port"
CONF_MDNS_GENERATION: Final = "mdns_generation"
MDNS_GENERATIONS: Final = ("2", "3")
# Marstek batteries poll 1010 (older B2500 firmware, Venus, Jupiter) or 2220 (B2500 from fw 226);
# 2222 and 2223 are their ports for the EM1 meters (EM Gen3, Pro EM-50).
UDP_PORT_CHOICES: Final = ("1010", "2220", "2222", "2223")
DEFAULT_UDP_PORTS: Final = ("1010", "2220")
DEFAULT_HTTP_PORT: Final = 80  # fixed in Hoymiles and Growatt batteries
CONF_REGULATION: Final = "regulation"  # the options section of the value's behaviour
CONF_SHARE: Final = "share"  # percent of the site's power
CONF_STALE_AFTER: Final = "stale_after"
CONF_SMOOTHING: Final = "smoothing"
CONF_MAX_RATE: Final = "max_rate"
DEFAULT_SHARE: Final = 100.0
DEFAULT_STALE_AFTER: Final = 3.0
MIN_STALE_AFTER: Final = 1.0
MAX_STALE_AFTER: Final = 60.0
MAX_SMOOTHING: Final = 60.0
MAX_RATE: Final = 100_000.0
DEFAULT_VIRTUAL_METER_NAME: Final = "Virtual meter"
