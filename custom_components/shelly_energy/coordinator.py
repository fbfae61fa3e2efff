"""Coordinators: meters polled and cleaned, energy sites derived from them, and their registry."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from homeassistant.config_entries import ConfigEntry, ConfigEntryState
from homeassistant.const import UnitOfPower
from homeassistant.core import (
    CALLBACK_TYPE,
    Event,
    EventStateChangedData,
    HomeAssistant,
    State,
    callback,
)
from homeassistant.exceptions import ConfigEntryAuthFailed, HomeAssistantError
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.dispatcher import async_dispatcher_connect, async_dispatcher_send
from homeassistant.helpers.event import async_track_state_change_event
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator, UpdateFailed
from homeassistant.util import dt as dt_util
from homeassistant.util.hass_dict import HassKey
from homeassistant.util.unit_conversion import PowerConverter

from .billing import SiteBilling
from .const import (
    CONF_DEADBAND,
    CONF_GRID_METERING,
    CONF_GRID_SENSOR,
    CONF_KIND,
    CONF_POLL_INTERVAL,
    CONF_REVERSED_CHANNELS,
    CONF_SETTLEMENT,
    COUNTER_SAVE_S,
    COUNTER_URGENT_SAVE_S,
    DEFAULT_DEADBAND,
    DEFAULT_POLL_INTERVAL,
    DOMAIN,
    KIND_METER,
    PUSHING_READ_INTERVAL,
    ROLE_FIELDS,
    SITE_SAVE_DELAY_S,
)
from .energy.history_plan import SITE_SERIES
from .energy.settlement import Settlement
from .energy.site import (
    ChannelInput,
    ChannelRef,
    GridMetering,
    Role,
    SettlementRebuild,
    ShortCount,
    SiteAccumulator,
    SiteConfig,
    SiteState,
)
from .grid_options import (
    capacity_settings,
    contract_limits,
    grid_event_types,
    peak_warning,
    period_warning,
)
from .grid_watch import GridWatch
from .meter.client import MeterClient
from .meter.corrections import Corrections
from .meter.counters import MeterCounters, counter_key
from .meter.errors import MeterAuthError, MeterError
from .meter.models import max_channel_power_w
from .meter.snapshot import PHASE_IDS, TOTAL_ID, MeterChange, MeterInfo, MeterSnapshot
from .meter.stability import ChangeWatch
from .recorded_states import async_last_recorded_totals
from .storage import DurableStore
from .supply import SupplyWatch, limits_from_options

_LOGGER = logging.getLogger(__name__)


# The loaded meters by MAC, shared by the energy sites; a signal tells when the set changes.
_METERS: HassKey[dict[str, MeterCoordinator]] = HassKey(f"{DOMAIN}_meters")
SIGNAL_METERS_CHANGED = f"{DOMAIN}_meters_changed"


# What each meter entry reported at its polls, kept across its setups (see ChangeWatch).
_CHANGE_WATCHES: HassKey[dict[str, ChangeWatch]] = HassKey(f"{DOMAIN}_change_watches")
ISSUE_UNSTABLE = "meter_unstable"


def unstable_issue_id(entry_id: str) -> str:
    """Return the repair issue id of a meter entry that keeps changing."""
    return f"{ISSUE_UNSTABLE}_{entry_id}"


@callback
def async_forget_meter(hass: HomeAssistant, entry_id: str) -> None:
    """Drop what is kept of a removed meter entry across its setups, and its repair issue."""
    hass.data.setdefault(_CHANGE_WATCHES, {}).pop(entry_id, None)
    ir.async_delete_issue(hass, DOMAIN, unstable_issue_id(entry_id))


def loaded_meters(hass: HomeAssistant) -> dict[str, MeterCoordinator]:
    """Return the meters that are set up, by MAC."""
    return hass.data.setdefault(_METERS, {})


@callback
def async_register_meter(hass: HomeAssistant, coordinator: MeterCoordinator) -> CALLBACK_TYPE:
    """Make a meter known to the energy sites until the returned callback removes it."""
    mac = coordinator.info.mac
    loaded_meters(hass)[mac] = coordinator
    async_dispatcher_send(hass, SIGNAL_METERS_CHANGED)

    @callback
    def unregister() -> None:
        loaded_meters(hass).pop(mac, None)
        async_dispatcher_send(hass, SIGNAL_METERS_CHANGED)

    return unregister


class EntityCoordinator[DataT](DataUpdateCoordinator[DataT]):
    """A coordinator that knows the entities made for it, so that stale ones can be removed."""

    config_entry: ConfigEntry  # never None: every coordinator is an entry's

    def __init__(self, hass: HomeAssistant, entry: ConfigEntry, **kwargs: Any) -> None:
        """Set up the coordinator of an entry."""
        super().__init__(hass, _LOGGER, config_entry=entry, name=entry.title, **kwargs)
        self.unique_ids: set[str] = set()


def poll_interval(options: Mapping[str, Any]) -> timedelta:
    """Return a meter's polling interval: the longest its readings may be stale."""
    return timedelta(seconds=options.get(CONF_POLL_INTERVAL, DEFAULT_POLL_INTERVAL))


class MeterCoordinator(EntityCoordinator[MeterSnapshot]):
    """Follow one meter: what it pushes as it comes, its whole status when needed.

    Gen2+ meters push every change of their readings; each pushed snapshot is accepted at
    once. The polling interval is the longest a reading may be stale:
    - while the meter pushes, its WebSocket is known alive within the interval (a silent one
      is pinged), so its readings are current: its whole status is read only every minute,
      for what it does not push, and at once when the WebSocket is lost;
    - a meter that does not push (Gen1, or a Gen2+ that has not pushed since connecting) is
      read at the interval.
    Pushed or polled, every snapshot takes the same way (`_accept_snapshot`).
    """

    def __init__(self, hass: HomeAssistant, entry: ConfigEntry, client: MeterClient) -> None:
        """Set up following a meter; nothing is read before the first refresh."""
        options = entry.options
        self.poll_interval = poll_interval(options)
        self._pushing_interval = max(self.poll_interval, timedelta(seconds=PUSHING_READ_INTERVAL))
        super().__init__(hass, entry, update_interval=self.poll_interval)
        self._read_once = False  # pushed snapshots are taken after the first whole read
        self.client = client
        self.supply = SupplyWatch(hass, entry, limits_from_options(options))
        self._changes = hass.data.setdefault(_CHANGE_WATCHES, {}).setdefault(
            entry.entry_id, ChangeWatch()
        )
        self._setting_up_again = False
        self._unstable_reported: MeterChange | None = None
        self.counters: MeterCounters | None = None  # once connected: the layout is known
        self.counter_store: DurableStore[dict[str, Any]] = DurableStore(
            hass,
            counter_store_key(entry),
            within=COUNTER_SAVE_S,
            snapshot=self._counter_state,
        )
        self._corrections = Corrections(
            reversed_channels=frozenset(options.get(CONF_REVERSED_CHANNELS, ())),
            deadband=float(options.get(CONF_DEADBAND, DEFAULT_DEADBAND)),
        )

    @property
    def info(self) -> MeterInfo:
        """Return what the meter is."""
        return self.client.info

    async def _async_setup(self) -> None:
        """Connect once before the first read, so the entities know the meter's layout.

        The counters continue from what was stored, and never below what Home Assistant last
        recorded (a crash may have cut the stored state short). Pushed snapshots are taken
        once the counters are there.
        """
        with self._meter_errors():
            info = await self.client.connect()
        counters = MeterCounters(
            self.config_entry.title,
            max_channel_power_w(info.model),
            len(info.channel_ids),
            self._corrections.reversed_channels,
        )
        saved = await self.counter_store.async_load()
        if saved is not None:
            try:
                counters.restore(saved)
            except ValueError:
                _LOGGER.exception(
                    "The stored energy counters of %s are unreadable: they start anew",
                    self.config_entry.title,
                )
        recorded = await async_last_recorded_totals(self.hass, self._energy_unique_ids(info))
        for key, (shown, since) in recorded.items():
            counters.hold_at_least(key, shown, since)
        self.counters = counters
        self.client.listen(self._pushed, self._connection_lost)

    def _energy_unique_ids(self, info: MeterInfo) -> dict[str, str]:
        """Return the unique id of the energy sensor showing each counter, by counter key."""
        ids = (*info.channel_ids, TOTAL_ID) if info.three_phase else info.channel_ids
        return {
            counter_key(channel_id, imported): (
                f"{info.mac}_{channel_id}_energy_{'imported' if imported else 'exported'}"
            )
            for channel_id in ids
            for imported in (True, False)
        }

    def _counter_state(self) -> dict[str, Any]:
        return {} if self.counters is None else self.counters.to_dict()

    async def _async_update_data(self) -> MeterSnapshot:
        """Read the meter's whole status, and accept it."""
        try:
            with self._meter_errors():
                snapshot = await self.client.fetch()
        except UpdateFailed:
            self.update_interval = self.poll_interval
            self.supply.update(self.info.mac, None)
            raise
        self._read_once = True
        self.update_interval = self._pushing_interval if self.client.pushing else self.poll_interval
        return self._accept_snapshot(snapshot)

    @callback
    def _pushed(self, snapshot: MeterSnapshot) -> None:
        """Accept a snapshot the meter pushed, and update the entities in this loop turn.

        The next read stays where it was scheduled, an interval after the last read (the
        coordinator's `async_set_updated_data` would move it, at a cost, for every push).
        """
        if not self._read_once:  # the first read comes first
            return
        self.data = self._accept_snapshot(snapshot)
        self.last_update_success = True
        self.async_update_listeners()

    @callback
    def _connection_lost(self) -> None:
        """Read the meter at once (connecting again) when the WebSocket it pushed over is lost.

        A failed read shows the meter unavailable; it is then read at the interval.
        """
        self.update_interval = self.poll_interval
        self.config_entry.async_create_background_task(
            self.hass, self.async_request_refresh(), f"{DOMAIN} read after a lost connection"
        )

    def _accept_snapshot(self, snapshot: MeterSnapshot) -> MeterSnapshot:
        """Take in one snapshot, pushed or polled, in the order the meter measured them.

        Notice a changed meter, apply the user's corrections, publish its counters' totals of
        the corrected snapshot (each snapshot exactly once), and watch the supply; return what
        the entities show.
        The meter was away when the last read failed and nothing came since: a failed read
        leaves `last_update_success` false until a read or a push succeeds.
        """
        self._watch_changes(snapshot.changed)
        assert self.counters is not None
        # Corrected first: the counters count what their sensors show.
        snapshot, urgent = self.counters.apply(
            self._corrections.apply(snapshot), away=not self.last_update_success
        )
        self.counter_store.changed(COUNTER_URGENT_SAVE_S if urgent else None)
        self.supply.update(self.info.mac, snapshot)
        return snapshot

    @contextmanager
    def _meter_errors(self) -> Iterator[None]:
        """Turn the meter's errors into what Home Assistant acts on, with translated messages."""
        try:
            yield
        except MeterAuthError as err:
            raise ConfigEntryAuthFailed(
                translation_domain=DOMAIN, translation_key="invalid_auth"
            ) from err
        except MeterError as err:
            raise UpdateFailed(
                translation_domain=DOMAIN,
                translation_key="cannot_connect",
                translation_placeholders={"error": str(err)},
            ) from err

    def _watch_changes(self, change: MeterChange | None) -> None:
        """Set the meter up again after it changed, but never from a setup nor in a loop.

        A new firmware or profile can change the entities. A meter that keeps changing stays
        as set up (readings it gives in another layout are unavailable) with a repair issue.
        """
        if self._setting_up_again:
            return
        entry = self.config_entry
        if self._changes.observe(
            change,
            dt_util.utcnow().timestamp(),
            can_set_up=entry.state is ConfigEntryState.LOADED,
        ):
            self._setting_up_again = True
            _LOGGER.info("%s changed (%s): setting it up again", entry.title, change)
            self.hass.config_entries.async_schedule_reload(entry.entry_id)
        self._report_instability(self._changes.unstable)

    def _report_instability(self, unstable: MeterChange | None) -> None:
        if unstable == self._unstable_reported:
            return
        self._unstable_reported = unstable
        issue_id = unstable_issue_id(self.config_entry.entry_id)
        if unstable is None:
            ir.async_delete_issue(self.hass, DOMAIN, issue_id)
            return
        _LOGGER.warning(
            "%s keeps changing (%s); it stays set up as it was", self.config_entry.title, unstable
        )
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            issue_id,
            is_fixable=False,
            severity=ir.IssueSeverity.WARNING,
            translation_key=ISSUE_UNSTABLE,
            translation_placeholders={
                "name": self.config_entry.title,
                "what": unstable.what,
                "was": unstable.was,
                "now": unstable.now,
            },
        )

    @callback
    def clear_repairs(self) -> None:
        """Withdraw the meter's repair issues (it is unloaded; a new setup raises them again)."""
        self.supply.clear_repairs()
        self._report_instability(None)


def site_store_key(entry: ConfigEntry) -> str:
    """Return where an energy site's totals are stored."""
    return f"{DOMAIN}.site.{entry.entry_id}"


def counter_store_key(entry: ConfigEntry) -> str:
    """Return where a meter's energy counters are stored."""
    return f"{DOMAIN}.counters.{entry.entry_id}"


def entry_kind(entry: ConfigEntry) -> str:
    """Return whether an entry is a meter or an energy site."""
    kind: str = entry.data.get(CONF_KIND, KIND_METER)
    return kind


def channel_label(hass: HomeAssistant, ref: ChannelRef) -> str:
    """Return a channel's name for people: its meter's name and the phase or channel."""
    entry = hass.config_entries.async_entry_for_domain_unique_id(DOMAIN, ref.meter_id)
    meter = entry.title if entry else ref.meter_id
    if ref.channel_id in PHASE_IDS:
        return f"{meter} phase {ref.channel_id.upper()}"
    return f"{meter} channel {ref.channel_id}"


def channel_key(ref: ChannelRef) -> str:
    """Return how a channel is stored in options: "<MAC>:<channel id>"."""
    return f"{ref.meter_id}:{ref.channel_id}"


def load_series(ref: ChannelRef) -> dict[str, str]:
    """Return a load's energy sensors' keys by `LoadEnergy` field."""
    key = f"load_{channel_key(ref)}"
    return {"consumed": f"{key}_energy", "returned": f"{key}_returned_energy"}


def parse_channel_key(key: str) -> ChannelRef:
    """Return the channel an options value names."""
    meter_id, _, channel_id = key.partition(":")
    return ChannelRef(meter_id, channel_id)


# The meter id of a Home Assistant power sensor in a site's grid role: its channel id is the
# sensor's entity id. It has power only: the site's energy flows that need the grid's counters
# stay unavailable.
SENSOR_METER_ID = "entity"


def grid_sensor_channel(entity_id: str) -> ChannelRef:
    """Return the channel standing for a Home Assistant power sensor in the grid role."""
    return ChannelRef(SENSOR_METER_ID, entity_id)


def sensor_power(state: State | None) -> float | None:
    """Return a power sensor's state in W; None: unavailable, not a number or not a power."""
    if state is None:
        return None
    try:
        value = float(state.state)
        watts = PowerConverter.convert(
            value, state.attributes.get("unit_of_measurement"), UnitOfPower.WATT
        )
    except (ValueError, HomeAssistantError):
        return None
    return watts if math.isfinite(watts) else None


def site_config(options: Mapping[str, Any]) -> SiteConfig:
    """Return a site's configuration from its options."""
    roles = {
        parse_channel_key(key): Role(role) for role in ROLE_FIELDS for key in options.get(role, ())
    }
    if sensor := options.get(CONF_GRID_SENSOR):
        roles[grid_sensor_channel(sensor)] = Role.GRID
    return SiteConfig(
        roles=roles,
        grid_metering=GridMetering(options.get(CONF_GRID_METERING, GridMetering.PER_PHASE)),
        settlement=Settlement(options.get(CONF_SETTLEMENT, Settlement.INSTANT)),
        capacity=capacity_settings(options),
    )


def site_grid_watch(
    hass: HomeAssistant, entry: ConfigEntry, config: SiteConfig
) -> GridWatch | None:
    """Return what watches a site's grid for automations (None: its options watch nothing)."""
    options = entry.options
    if not grid_event_types(options):
        return None
    return GridWatch(
        hass,
        entry,
        limits=contract_limits(options),
        # A grid power sensor has no currents: the meters' grid channels.
        fused={
            channel_key(ref): channel_label(hass, ref)
            for ref in config.channels(Role.GRID)
            if ref.meter_id != SENSOR_METER_ID
        },
        period_warning=period_warning(options),
        peak_warning=peak_warning(options),
    )


# The loaded energy sites by entry id, followed by the virtual meters; a signal tells when the
# set changes.
_SITES: HassKey[dict[str, SiteCoordinator]] = HassKey(f"{DOMAIN}_sites")
SIGNAL_SITES_CHANGED = f"{DOMAIN}_sites_changed"


def loaded_sites(hass: HomeAssistant) -> dict[str, SiteCoordinator]:
    """Return the energy sites that are set up, by config entry id."""
    return hass.data.setdefault(_SITES, {})


@callback
def async_register_site(hass: HomeAssistant, coordinator: SiteCoordinator) -> CALLBACK_TYPE:
    """Make a site known to the virtual meters until the returned callback removes it."""
    entry_id = coordinator.config_entry.entry_id
    loaded_sites(hass)[entry_id] = coordinator
    async_dispatcher_send(hass, SIGNAL_SITES_CHANGED)

    @callback
    def unregister() -> None:
        if loaded_sites(hass).get(entry_id) is coordinator:
            del loaded_sites(hass)[entry_id]
        async_dispatcher_send(hass, SIGNAL_SITES_CHANGED)

    return unregister


class SiteCoordinator(EntityCoordinator[SiteState]):
    """Derive a site's flows whenever one of its meters has new data (no polling of its own)."""

    def __init__(self, hass: HomeAssistant, entry: ConfigEntry) -> None:
        """Set up the site with zero totals (`async_restore` continues the stored ones)."""
        super().__init__(hass, entry)
        self.config = site_config(entry.options)
        self.accumulator = SiteAccumulator(self.config, dt_util.get_default_time_zone())
        self.billing: SiteBilling | None = None  # when the site has a tariff
        self.grid_watch = site_grid_watch(hass, entry, self.config)
        self.store: DurableStore[dict[str, Any]] = DurableStore(
            hass, site_store_key(entry), within=SITE_SAVE_DELAY_S, snapshot=self._stored_state
        )
        self._meter_ids = {ref.meter_id for ref in self.config.roles}
        self._grid_sensors = [
            ref.channel_id
            for ref in self.config.channels(Role.GRID)
            if ref.meter_id == SENSOR_METER_ID
        ]
        self._unsubscribe_meters: list[CALLBACK_TYPE] = []
        # The meters not yet read since the site last computed: it waits for a full round, so
        # that energy flows combine counters read at nearly the same time.
        self._waiting_for: set[str] = set()
        self._absent: set[str] = set()  # meters without a reading at the last computation

    @callback
    def async_start(self) -> CALLBACK_TYPE:
        """Follow the site's meters, as they come and go, until the returned callback."""
        unsubscribe_signal = async_dispatcher_connect(
            self.hass, SIGNAL_METERS_CHANGED, self._attach_meters
        )
        unsubscribe_sensor = async_track_state_change_event(
            self.hass, self._grid_sensors, self._grid_sensor_changed
        )
        self._attach_meters()

        @callback
        def stop() -> None:
            unsubscribe_signal()
            unsubscribe_sensor()
            self._detach_meters()

        return stop

    def _stored_state(self) -> dict[str, Any]:
        return self.accumulator.to_dict()

    async def async_restore(self) -> None:
        """Continue the stored totals, never below what Home Assistant last recorded."""
        saved = await self.store.async_load()
        if saved is not None:
            try:
                self.accumulator = SiteAccumulator.from_dict(
                    self.config, saved, dt_util.get_default_time_zone()
                )
            except (KeyError, TypeError, ValueError):
                _LOGGER.exception(
                    "The stored totals of %s are unreadable: they start anew",
                    self.config_entry.title,
                )
        entry_id = self.config_entry.entry_id
        site_fields = {f"{entry_id}_{key}": field for field, key in SITE_SERIES.items()}
        load_fields = {
            f"{entry_id}_{key}": (ref, field)
            for ref in self.config.channels(Role.LOAD)
            for field, key in load_series(ref).items()
        }
        recorded = await async_last_recorded_totals(
            self.hass, {unique_id: unique_id for unique_id in (*site_fields, *load_fields)}
        )
        for unique_id, (shown, _since) in recorded.items():
            if unique_id in site_fields:
                self.accumulator.hold_at_least(site_fields[unique_id], shown)
            else:
                self.accumulator.hold_load_at_least(*load_fields[unique_id], shown)

    def capacity_peak(self, start: datetime) -> float | None:
        """Return the capacity peak (kW) of the billing period beginning at `start`."""
        return self.accumulator.capacity_peak(start.timestamp())

    @property
    def grid_available(self) -> bool:
        """Return whether the site's grid flow was available at its last computation."""
        return self.data is not None and self.data.energy.grid_import is not None

    async def async_rebuild(
        self,
        nets: Mapping[float, float],
        imports: Mapping[float, float],
        booked_before: float,
    ) -> SettlementRebuild:
        """Settle and measure again the periods gaps covered, from the meters' records.

        See `SiteAccumulator.rebuild`. The state is stored at once and the entities show it.
        """
        result = self.accumulator.rebuild(
            nets, imports, dt_util.utcnow().timestamp(), booked_before
        )
        await self.store.async_save()
        self._recompute()
        return result

    @callback
    def lower_net_sums(self, fallen: Mapping[str, float]) -> None:
        """Lower net flows' running sums by falls the site did not see (Wh, by flow).

        See `SiteAccumulator.lower_net_sums`. Stored at once: the history has taken it into
        account.
        """
        self.accumulator.lower_net_sums(fallen)
        self.store.changed(0)

    @callback
    def forget_short_counts(
        self,
        spans: Iterable[tuple[str, int]],
        told: Mapping[str, ShortCount],
        overstated: Mapping[str, float],
    ) -> None:
        """Forget spans the history corrected (`SiteAccumulator.forget_short_counts`), at once."""
        self.accumulator.forget_short_counts(spans, told, overstated)
        self.store.changed(0)

    async def async_save(self) -> None:
        """Write the totals and costs now (when unloading)."""
        await self.store.async_save()
        if self.billing is not None:
            await self.billing.async_save()

    @callback
    def _attach_meters(self) -> None:
        self._detach_meters()
        self._unsubscribe_meters = [
            coordinator.async_add_listener(partial(self._meter_updated, mac))
            for mac, coordinator in loaded_meters(self.hass).items()
            if mac in self._meter_ids
        ]
        self._recompute()

    @callback
    def _grid_sensor_changed(self, _event: Event[EventStateChangedData]) -> None:
        self._recompute()

    @callback
    def _meter_updated(self, mac: str) -> None:
        """Compute once every meter that answers has a new reading: one round of readings.

        A meter that was absent from the last computation and answers again starts a new round
        at once. Waiting for the others instead would pair its reading with theirs of the next
        poll from then on: the flows across meters would count one meter a poll late.
        """
        self._waiting_for.discard(mac)
        meters = loaded_meters(self.hass)

        def answering(meter_id: str) -> bool:
            return (meter := meters.get(meter_id)) is not None and meter.last_update_success

        returned = mac in self._absent and answering(mac)
        if returned or not any(answering(waiting) for waiting in self._waiting_for):
            self._recompute()

    @callback
    def _detach_meters(self) -> None:
        for unsubscribe in self._unsubscribe_meters:
            unsubscribe()
        self._unsubscribe_meters = []

    @callback
    def _recompute(self) -> None:
        meters = loaded_meters(self.hass)
        self._waiting_for = set(self._meter_ids)
        self._absent = {
            mac
            for mac in self._meter_ids
            if (meter := meters.get(mac)) is None or not meter.last_update_success
        }
        readings: dict[ChannelRef, ChannelInput | None] = {}
        currents: dict[str, float | None] = {}  # the grid channels', by key
        for ref, role in self.config.roles.items():
            meter = meters.get(ref.meter_id)
            reading, counters = None, None
            if meter is not None and meter.last_update_success and meter.data:
                reading, counters = meter.data.channel(ref.channel_id), meter.counters
            if reading is None:
                readings[ref] = None
            elif counters is not None and counters.lagging(ref.channel_id):
                # Its totals hold over a refused reading: the flows wait for the next one, as
                # for a meter away (a net flow would publish what the others counted meanwhile).
                readings[ref] = ChannelInput(reading.power, None, None)
            else:
                spans, latest = (
                    (0, 0)
                    if counters is None
                    else (counters.span_count, counters.latest_span(ref.channel_id))
                )
                readings[ref] = ChannelInput(
                    reading.power, reading.energy_in, reading.energy_out, spans, latest
                )
            if role is Role.GRID:
                currents[channel_key(ref)] = None if reading is None else reading.current
        readings.update(self._sensor_readings())
        now = dt_util.now()
        state = self.accumulator.update(readings, now.date(), now.timestamp())
        self.store.changed()
        if self.billing is not None:
            self.billing.update(state)
        if self.grid_watch is not None:
            self.grid_watch.update(now.timestamp(), state, currents)
        self.async_set_updated_data(state)

    def _sensor_readings(self) -> dict[ChannelRef, ChannelInput | None]:
        """Return the power of the grid sensors (no counters: their energy flows wait)."""
        readings: dict[ChannelRef, ChannelInput | None] = {}
        for entity_id in self._grid_sensors:
            power = sensor_power(self.hass.states.get(entity_id))
            readings[grid_sensor_channel(entity_id)] = (
                None if power is None else ChannelInput(power, None, None)
            )
        return readings
