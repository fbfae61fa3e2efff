"""Costs of an energy site: its tariff applied as energy flows, and the bill projection.

The site's grid import and export totals feed a `BillAccumulator` at every update; the projection
is made hourly from the long-term statistics of the site's grid energy sensors. A capacity charge
is on the peak the site measures for each billing period (`energy.capacity`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from homeassistant.components.recorder.statistics import statistics_during_period
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.event import async_call_later, async_track_time_interval
from homeassistant.util import dt as dt_util

from .const import (
    BILLING_SAVE_DELAY_S,
    DOMAIN,
    EVENT_TIER,
    PROJECTION_REFRESH_S,
    PROJECTION_WEEKS,
)
from .energy.projection import NoProjection, Projection, crossed_into_tier, project_bill
from .energy.site import SiteState
from .energy.tariff import Bill, BillAccumulator, BillingPeriod, HourlyEnergy, Tariff, bill_for
from .recorder_query import async_query
from .storage import DurableStore

_LOGGER = logging.getLogger(__name__)

STORAGE_VERSION = 1
# The statistics the projection and past bills read: the site's grid energy sensors.
IMPORT_KEY = "grid_import_energy"
EXPORT_KEY = "grid_export_energy"


def billing_store_key(entry: ConfigEntry) -> str:
    """Return where a site's costs are stored."""
    return f"{DOMAIN}.billing.{entry.entry_id}"


class SiteBilling:
    """Prices a site's grid energy as it flows and projects the period's bill."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry: ConfigEntry,
        *,
        tariff: Tariff,
        on_projection: Callable[[], None],
        capacity_peak: Callable[[datetime], float | None],
    ) -> None:
        """Start now (`async_restore` continues); `on_projection` hears of new projections.

        `capacity_peak` tells the capacity peak (kW) of the billing period beginning at a moment
        (None: not known).
        """
        self._hass = hass
        self._entry = entry
        self.tariff = tariff
        self._capacity_peak = capacity_peak
        self.store: DurableStore[dict[str, Any]] = DurableStore(
            hass, billing_store_key(entry), within=BILLING_SAVE_DELAY_S, snapshot=self._data
        )
        self._on_projection = on_projection
        self._totals: list[float] | None = None  # grid import and export (Wh) last priced
        self.accumulator = BillAccumulator(tariff, dt_util.now())
        self.projection: Projection | NoProjection | None = None

    async def async_restore(self) -> None:
        """Continue from what was stored."""
        saved = await self.store.async_load()
        if saved is None:
            return
        try:
            self.accumulator = BillAccumulator.from_dict(self.tariff, saved["accumulator"])
            self._totals = saved["totals"]
        except (KeyError, TypeError, ValueError):
            _LOGGER.exception("The saved costs of %s are unreadable: they restart", self._entry)

    @callback
    def update(self, state: SiteState) -> None:
        """Price the grid energy since the last update (and move the clock on)."""
        now = dt_util.now()
        energy = state.energy
        import_kwh = export_kwh = 0.0
        if energy.grid_import is not None and energy.grid_export is not None:
            totals = [energy.grid_import, energy.grid_export]
            if self._totals is not None:
                import_kwh = max(totals[0] - self._totals[0], 0.0) / 1000
                export_kwh = max(totals[1] - self._totals[1], 0.0) / 1000
            self._totals = totals
        # An interval is priced as spread from the last one's end to now (the site only ever
        # adds energy that accrued since, however long a meter was away).
        self.accumulator.add(self.accumulator.last_end, now, import_kwh, export_kwh)
        self.accumulator.capacity_kw = self._capacity_peak(self.accumulator.bill.period.start)
        self.store.changed()

    def _data(self) -> dict[str, Any]:
        return {"accumulator": self.accumulator.to_dict(), "totals": self._totals}

    async def async_save(self) -> None:
        """Write the costs now (when unloading)."""
        await self.store.async_save()

    @callback
    def async_start(self) -> CALLBACK_TYPE:
        """Project the bill soon and then every hour, until the returned callback."""
        cancel_first = async_call_later(self._hass, 10, self._refresh_projection_job)
        cancel_hourly = async_track_time_interval(
            self._hass,
            self._refresh_projection_job,
            timedelta(seconds=PROJECTION_REFRESH_S),
            name="Shelly Energy bill projection",
        )

        @callback
        def stop() -> None:
            cancel_first()
            cancel_hourly()

        return stop

    @callback
    def _refresh_projection_job(self, _now: datetime | None = None) -> None:
        if self._hass.is_stopping:  # the recorder may be closing the database it would query
            return
        self._entry.async_create_background_task(
            self._hass, self.async_refresh_projection(), "Shelly Energy bill projection"
        )

    async def async_refresh_projection(self) -> None:
        """Project the period's bill from the site's statistics; announce a new slab."""
        now = dt_util.now().replace(minute=0, second=0, microsecond=0)
        period = self.tariff.billing_period(now)
        start = min(period.start, now - timedelta(weeks=PROJECTION_WEEKS))
        hourly = await self._async_hourly(start, now)
        if hourly is None:
            return
        projection = await self._hass.async_add_executor_job(
            project_bill,
            self.tariff,
            hourly,
            now,
            PROJECTION_WEEKS,
            self._capacity_peak(period.start),
        )
        tier = crossed_into_tier(self.projection, projection)
        self.projection = projection
        if tier is not None and isinstance(projection, Projection):
            self._hass.bus.async_fire(
                EVENT_TIER,
                {
                    "entry_id": self._entry.entry_id,
                    "site": self._entry.title,
                    "tier": tier,
                    "projected_kwh": round(projection.import_kwh, 3),
                },
            )
        self._on_projection()

    async def async_bill_for(self, period: BillingPeriod) -> Bill | None:
        """Return the itemised bill of a period from the statistics (None: no statistics)."""
        hourly = await self._async_hourly(period.start, period.end)
        if hourly is None:
            return None
        return bill_for(self.tariff, hourly, period, self._capacity_peak(period.start))

    async def _async_hourly(self, start: datetime, end: datetime) -> list[HourlyEnergy] | None:
        """Return the site's hourly grid import and export (kWh) from long-term statistics."""
        if "recorder" not in self._hass.config.components:
            return None
        registry = er.async_get(self._hass)
        ids = [
            registry.async_get_entity_id("sensor", DOMAIN, f"{self._entry.entry_id}_{key}")
            for key in (IMPORT_KEY, EXPORT_KEY)
        ]
        if ids[0] is None:
            return None
        wanted = {statistic_id for statistic_id in ids if statistic_id is not None}
        rows = await async_query(
            self._hass,
            statistics_during_period,
            self._hass,
            start,
            end,
            wanted,
            "hour",
            None,
            {"change"},
        )
        changes: dict[float, list[float]] = {}
        for index, statistic_id in enumerate(ids):
            for row in rows.get(statistic_id or "", []):
                changes.setdefault(row["start"], [0.0, 0.0])[index] = row.get("change") or 0.0
        zone = dt_util.get_default_time_zone()
        return [
            (dt_util.utc_from_timestamp(start_ts).astimezone(zone), imported, exported)
            for start_ts, (imported, exported) in sorted(changes.items())
        ]
