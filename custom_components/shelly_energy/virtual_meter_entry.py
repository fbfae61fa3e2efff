"""Virtual meter entries: an energy site's grid power served as a Shelly meter, in Home Assistant.

The protocol lives in `virtual_meter/` (no Home Assistant there); this module feeds it and runs
it. The value follows the site's grid inputs directly, not the site's own updates: a site waits
for a round of all its meters before it computes, so a slow solar meter would delay the grid
value and make it look stale. For each grid channel of the site the latest reading of its meter
(already corrected: reversed CTs, deadband) goes onto its phase (a phase channel) or phase A (a
single channel, a Home Assistant power sensor); the sum is the site's net grid power
(`SitePower.grid_net`). A reading is as old as the oldest of its inputs, timed when each arrived
here (the meters' own clocks may be unsynchronised), and due again one polling interval later; a
sensor's time is its last report, and it is due at once (sensors report at no known interval).

Transports (UDP ports, the HTTP/WebSocket port) start on their own: one that cannot bind raises
a repair issue and is retried every minute while the others serve. The mDNS announcement goes
through Home Assistant's own zeroconf instance.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from homeassistant.components import network, zeroconf
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import CALLBACK_TYPE, Event, HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.helpers.event import (
    async_call_later,
    async_track_state_change_event,
    async_track_state_report_event,
    async_track_time_interval,
)
from homeassistant.util import dt as dt_util
from zeroconf import NonUniqueNameException
from zeroconf.asyncio import AsyncServiceInfo

from .const import (
    CONF_HTTP_PORT,
    CONF_MAC,
    CONF_MAX_RATE,
    CONF_MDNS_GENERATION,
    CONF_MODEL,
    CONF_REGULATION,
    CONF_SHARE,
    CONF_SITE,
    CONF_SMOOTHING,
    CONF_STALE_AFTER,
    CONF_TRANSPORTS,
    CONF_UDP_PORTS,
    DEFAULT_HTTP_PORT,
    DEFAULT_SHARE,
    DEFAULT_STALE_AFTER,
    DEFAULT_UDP_PORTS,
    DOMAIN,
    TRANSPORT_HTTP,
    TRANSPORT_MDNS,
    TRANSPORT_UDP,
)
from .coordinator import (
    SENSOR_METER_ID,
    SIGNAL_METERS_CHANGED,
    SIGNAL_SITES_CHANGED,
    EntityCoordinator,
    loaded_meters,
    loaded_sites,
    sensor_power,
)
from .energy.site import ChannelRef, Role
from .meter.snapshot import PHASE_IDS, MeterSnapshot
from .virtual_meter.guard import GridReading, GuardSettings, Refusal, ServedValue
from .virtual_meter.http import HttpServer
from .virtual_meter.identity import Identity, MeterModel
from .virtual_meter.meter import MinuteStats, Transport, VirtualMeter
from .virtual_meter.udp import UdpServer

_LOGGER = logging.getLogger(__name__)

# Where the servers listen: every IPv4 address, as batteries broadcast to find the meter (the
# tests put loopback addresses here).
HTTP_HOST: Final = "0.0.0.0"
UDP_HOSTS: Final[tuple[str, ...]] = ("0.0.0.0",)
PORT_RETRY_INTERVAL: Final = timedelta(minutes=1)
STATUS_INTERVAL: Final = timedelta(seconds=30)  # the request counts, when nothing else changes
MDNS_TYPES: Final = ("_shelly._tcp.local.", "_http._tcp.local.")
ISSUE_PORT_IN_USE: Final = "virtual_meter_port_in_use"
ISSUE_PORT_DENIED: Final = "virtual_meter_port_denied"


def _monotonic() -> float:
    return time.monotonic()


def guard_settings(options: Mapping[str, Any]) -> GuardSettings:
    """Return how the served value follows the site, from a virtual meter's options."""
    regulation = options.get(CONF_REGULATION, {})
    return GuardSettings(
        stale_after=float(regulation.get(CONF_STALE_AFTER, DEFAULT_STALE_AFTER)),
        share=float(regulation.get(CONF_SHARE, DEFAULT_SHARE)) / 100,
        smoothing=float(regulation.get(CONF_SMOOTHING, 0.0)),
        max_rate=float(regulation.get(CONF_MAX_RATE, 0.0)),
    )


def udp_ports(options: Mapping[str, Any]) -> list[int]:
    """Return the UDP ports a virtual meter listens on (none without the UDP transport)."""
    if TRANSPORT_UDP not in options.get(CONF_TRANSPORTS, ()):
        return []
    return sorted({int(port) for port in options.get(CONF_UDP_PORTS, DEFAULT_UDP_PORTS)})


def http_port(options: Mapping[str, Any]) -> int | None:
    """Return the TCP port of a virtual meter's HTTP server (None without it)."""
    if TRANSPORT_HTTP not in options.get(CONF_TRANSPORTS, ()):
        return None
    return int(options.get(CONF_HTTP_PORT, DEFAULT_HTTP_PORT))


@dataclass(frozen=True, slots=True)
class VirtualMeterStatus:
    """What the entities show: the value served or why none is, and last minute's requests."""

    state: ServedValue | Refusal
    last_minute: MinuteStats


class _Endpoint:
    """One listening transport: a UDP port or the HTTP server, and why it does not listen."""

    def __init__(self, transport: str, server: UdpServer | HttpServer) -> None:
        self.transport = transport
        self.server = server
        self.requested_port = server.port
        self.listening = False
        self.error: OSError | None = None

    @property
    def issue_id(self) -> str:
        return f"{self.transport}_{self.requested_port}"

    async def start(self) -> None:
        await self.server.start()
        self.listening = True
        self.error = None

    async def stop(self) -> None:
        if not self.listening:
            return
        self.listening = False
        if isinstance(self.server, HttpServer):
            await self.server.stop()
        else:
            self.server.close()


class VirtualMeterCoordinator(EntityCoordinator[VirtualMeterStatus]):
    """Serve a site's grid power as a Shelly meter, and tell the entities how it goes."""

    def __init__(self, hass: HomeAssistant, entry: ConfigEntry) -> None:
        """Prepare the meter of an entry; nothing listens before `async_start`."""
        super().__init__(hass, entry, update_interval=STATUS_INTERVAL)
        options = entry.options
        self.meter = VirtualMeter(
            Identity(MeterModel(options[CONF_MODEL]), entry.data[CONF_MAC]),
            guard_settings(options),
            clock=_monotonic,
        )
        self.site_id: str = options[CONF_SITE]
        self.mdns_generation = str(options.get(CONF_MDNS_GENERATION, "2"))
        self.announced: list[AsyncServiceInfo] = []
        self.endpoints = [
            _Endpoint(TRANSPORT_UDP, UdpServer(self._datagram, UDP_HOSTS, port))
            for port in udp_ports(options)
        ]
        port = http_port(options)
        if port is not None:
            self.endpoints.append(
                _Endpoint(TRANSPORT_HTTP, HttpServer(self.meter, HTTP_HOST, port))
            )
        self._announce = port is not None and TRANSPORT_MDNS in options.get(CONF_TRANSPORTS, ())
        self._unsubscribe_inputs: list[CALLBACK_TYPE] = []
        self._unsubscribe_retry: CALLBACK_TYPE | None = None
        self._unsubscribe_expiry: CALLBACK_TYPE | None = None
        # The snapshot of each grid meter last seen, and when it arrived (None: before we
        # followed the meter, so its age is unknown and it is not served).
        self._arrivals: dict[str, tuple[MeterSnapshot | None, float | None]] = {}
        self._grid: tuple[ChannelRef, ...] = ()
        self._silent: Refusal | None = Refusal.NO_READING  # as it starts: nothing read yet
        self.data = self._status()

    def _datagram(self, data: bytes, client: str) -> str | None:
        return self.meter.frame(data, client=client, transport=Transport.UDP)

    # --- life cycle ---------------------------------------------------------------------------

    async def async_start(self) -> None:
        """Follow the site, open the transports and announce the meter."""
        self._follow_site()
        for signal in (SIGNAL_SITES_CHANGED, SIGNAL_METERS_CHANGED):
            self.config_entry.async_on_unload(
                async_dispatcher_connect(self.hass, signal, self._follow_site)
            )
        await self._async_start_endpoints()
        if self._announce:
            await self._async_announce()

    async def async_stop(self) -> None:
        """Withdraw the announcement, close every transport and stop following the site."""
        self._unfollow()
        for unsubscribe in (self._unsubscribe_retry, self._unsubscribe_expiry):
            if unsubscribe is not None:
                unsubscribe()
        self._unsubscribe_retry = self._unsubscribe_expiry = None
        if self.announced:
            instance = await zeroconf.async_get_async_instance(self.hass)
            for info in self.announced:
                await instance.async_unregister_service(info)
            self.announced = []
        for endpoint in self.endpoints:
            await endpoint.stop()
            ir.async_delete_issue(self.hass, DOMAIN, self._issue_id(endpoint))

    async def _async_start_endpoints(self, _now: Any = None) -> None:
        """Start what does not listen yet; retry every minute while any cannot."""
        for endpoint in self.endpoints:
            if endpoint.listening:
                continue
            try:
                await endpoint.start()
            except OSError as err:
                self._port_failed(endpoint, err)
            else:
                ir.async_delete_issue(self.hass, DOMAIN, self._issue_id(endpoint))
        waiting = any(not endpoint.listening for endpoint in self.endpoints)
        if waiting and self._unsubscribe_retry is None:
            self._unsubscribe_retry = async_track_time_interval(
                self.hass, self._async_start_endpoints, PORT_RETRY_INTERVAL
            )
        elif not waiting and self._unsubscribe_retry is not None:
            self._unsubscribe_retry()
            self._unsubscribe_retry = None

    def _issue_id(self, endpoint: _Endpoint) -> str:
        return f"virtual_meter_port_{self.config_entry.entry_id}_{endpoint.issue_id}"

    def _port_failed(self, endpoint: _Endpoint, err: OSError) -> None:
        if endpoint.error is None:  # once per outage, not at every retry
            _LOGGER.warning(
                "%s cannot listen on %s port %s: %s",
                self.config_entry.title,
                endpoint.transport.upper(),
                endpoint.requested_port,
                err,
            )
        endpoint.error = err
        denied = err.errno in (errno.EACCES, errno.EPERM)
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            self._issue_id(endpoint),
            is_fixable=False,
            severity=ir.IssueSeverity.ERROR,
            translation_key=ISSUE_PORT_DENIED if denied else ISSUE_PORT_IN_USE,
            translation_placeholders={
                "name": self.config_entry.title,
                "transport": endpoint.transport.upper(),
                "port": str(endpoint.requested_port),
                "error": os.strerror(err.errno) if err.errno else str(err),
            },
        )

    async def _async_announce(self) -> None:
        """Announce the meter by mDNS as a Shelly would, through Home Assistant's zeroconf."""
        identity = self.meter.identity
        port = http_port(self.config_entry.options)
        # The servers listen on IPv4 only: an IPv6 address would lead batteries nowhere.
        addresses = [
            address
            for address in await network.async_get_announce_addresses(self.hass)
            if ":" not in address
        ]
        gen3 = self.mdns_generation == "3"
        properties = {
            "id": identity.device_id,
            "mac": identity.mac,
            "gen": self.mdns_generation,
            # Solakon pairs only with gen 3, as uni-meter announces it (app: the id's prefix).
            "app": identity.device_id.rpartition("-")[0] if gen3 else identity.app,
            "ver": self.meter.replies.device_info()["ver"],
            "fw_id": self.meter.replies.device_info()["fw_id"],
            "model": identity.model_id,
            "arch": "esp32",
        }
        instance = await zeroconf.async_get_async_instance(self.hass)
        for service_type in MDNS_TYPES:
            info = AsyncServiceInfo(
                service_type,
                f"{identity.device_id}.{service_type}",
                port=port,
                properties=properties,
                server=f"{identity.device_id}.local.",
                parsed_addresses=addresses,
            )
            try:
                await instance.async_register_service(info)
            except NonUniqueNameException:
                _LOGGER.warning(
                    "%s: another device on the network announces %s",
                    self.config_entry.title,
                    identity.device_id,
                )
                continue
            self.announced.append(info)

    # --- following the site -------------------------------------------------------------------

    @callback
    def _follow_site(self) -> None:
        """Listen to the site's grid inputs as they are now (sites and meters come and go)."""
        self._unfollow()
        site = loaded_sites(self.hass).get(self.site_id)
        self._grid = () if site is None else site.config.channels(Role.GRID)
        meters = loaded_meters(self.hass)
        for mac in {ref.meter_id for ref in self._grid}:
            if mac == SENSOR_METER_ID:
                continue
            if (meter := meters.get(mac)) is not None:
                self._unsubscribe_inputs.append(meter.async_add_listener(self._grid_changed))
                arrival = self._arrivals.get(mac)
                if arrival is None or arrival[0] is not meter.data:
                    self._arrivals[mac] = (meter.data, None)
        sensors = [ref.channel_id for ref in self._grid if ref.meter_id == SENSOR_METER_ID]
        if sensors:
            self._unsubscribe_inputs += [
                async_track_state_change_event(self.hass, sensors, self._grid_sensor_changed),
                async_track_state_report_event(self.hass, sensors, self._grid_sensor_changed),
            ]
        self._grid_changed()

    @callback
    def _unfollow(self) -> None:
        for unsubscribe in self._unsubscribe_inputs:
            unsubscribe()
        self._unsubscribe_inputs = []

    @callback
    def _grid_sensor_changed(self, _event: Event[Any]) -> None:
        self._grid_changed()

    @callback
    def _grid_changed(self) -> None:
        """Serve the newest grid reading, and show it."""
        self.meter.update(self._grid_reading())
        if self._unsubscribe_expiry is not None:
            self._unsubscribe_expiry()
            self._unsubscribe_expiry = None
        reading = self.meter.guard.reading
        if reading is not None:
            # Tell the entities when the reading goes stale, unless a newer one comes first.
            left = reading.overdue_from + self.meter.guard.settings.stale_after - _monotonic()
            self._unsubscribe_expiry = async_call_later(
                self.hass, max(left, 0) + 0.01, self._expired
            )
        self.async_set_updated_data(self._status())

    @callback
    def _expired(self, _now: Any) -> None:
        self._unsubscribe_expiry = None
        self.async_set_updated_data(self._status())

    def _grid_reading(self) -> GridReading | None:
        """Return the site's grid power per phase now; None when any grid input is missing."""
        if not self._grid:
            return None
        now = _monotonic()
        power = [0.0, 0.0, 0.0]
        voltage: list[float | None] = [None, None, None]
        frequency: float | None = None
        oldest, due = now, math.inf
        meters = loaded_meters(self.hass)
        for ref in self._grid:
            phase = PHASE_IDS.index(ref.channel_id) if ref.channel_id in PHASE_IDS else 0
            if ref.meter_id == SENSOR_METER_ID:
                state = self.hass.states.get(ref.channel_id)
                watts = sensor_power(state)
                if state is None or watts is None:
                    return None
                age = (dt_util.utcnow() - state.last_reported).total_seconds()
                reported = now - max(age, 0.0)
                oldest, due = min(oldest, reported), min(due, reported)
            else:
                meter = meters.get(ref.meter_id)
                if meter is None or not meter.last_update_success or meter.data is None:
                    return None
                arrived = self._arrival(ref.meter_id, meter.data, now)
                reading = meter.data.channel(ref.channel_id)
                if arrived is None or reading is None or reading.power is None:
                    return None
                oldest = min(oldest, arrived)
                due = min(due, arrived + meter.poll_interval.total_seconds())
                watts = reading.power
                voltage[phase] = voltage[phase] or reading.voltage
                frequency = frequency or reading.frequency
            power[phase] += watts
        return GridReading(
            power=(power[0], power[1], power[2]),
            time=oldest,
            due=due,
            voltage=(voltage[0], voltage[1], voltage[2]),
            frequency=frequency,
        )

    def _arrival(self, mac: str, snapshot: MeterSnapshot, now: float) -> float | None:
        """Return when a meter's snapshot arrived (None: unknown); a new one arrives now."""
        seen = self._arrivals.get(mac)
        if seen is None or seen[0] is not snapshot:
            self._arrivals[mac] = seen = (snapshot, now)
        return seen[1]

    # --- the entities' data -------------------------------------------------------------------

    def _status(self) -> VirtualMeterStatus:
        status = VirtualMeterStatus(self.meter.state(), self.meter.last_minute())
        # Logged once when the meter goes silent and once when it serves again.
        silent = None if isinstance(status.state, ServedValue) else status.state
        if silent != self._silent:
            if silent is None:
                _LOGGER.info("%s serves again", self.config_entry.title)
            else:
                _LOGGER.info("%s is silent: %s", self.config_entry.title, silent.value)
            self._silent = silent
        return status

    async def _async_update_data(self) -> VirtualMeterStatus:
        """Return the status now (the request counts move every minute)."""
        return self._status()

    @callback
    def async_set_paused(self, paused: bool) -> None:
        """Pause or resume serving."""
        self.meter.paused = paused
        self.async_set_updated_data(self._status())

    def diagnostics(self) -> dict[str, Any]:
        """Return what the meter is, what it serves and who asked for what lately."""
        meter = self.meter
        identity = meter.identity
        state = meter.state()
        reading = meter.guard.reading
        return {
            "identity": {
                "device_id": identity.device_id,
                "mac": identity.mac,
                "model": identity.model_id,
                "generation": identity.generation,
            },
            "serving": isinstance(state, ServedValue),
            "refusal": None if isinstance(state, ServedValue) else state.value,
            "served": None
            if not isinstance(state, ServedValue)
            else {"power": list(state.power), "total": state.total},
            "reading": None
            if reading is None
            else {"power": list(reading.power), "age_s": round(_monotonic() - reading.time, 3)},
            "settings": {
                "stale_after": meter.guard.settings.stale_after,
                "share": meter.guard.settings.share,
                "smoothing": meter.guard.settings.smoothing,
                "max_rate": meter.guard.settings.max_rate,
            },
            "endpoints": [
                {
                    "transport": endpoint.transport,
                    "port": endpoint.server.port if endpoint.listening else endpoint.requested_port,
                    "listening": endpoint.listening,
                    "error": None if endpoint.error is None else str(endpoint.error),
                }
                for endpoint in self.endpoints
            ],
            "mdns": [info.name for info in self.announced],
            "requests_total": meter.requests_total,
            "last_requests": [
                {
                    "time": dt_util.utc_from_timestamp(seen.time).isoformat(),
                    "client": seen.client,
                    "transport": seen.transport.value,
                    "method": seen.method,
                    "answered": seen.answered,
                }
                for seen in meter.recent
            ],
        }
