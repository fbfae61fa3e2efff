"""State that must survive a crash: written within a bounded time of every change.

Home Assistant's `Store.async_delay_save` postpones a pending write at every call, so state that
changes more often than its delay (a queue during an outage, totals at every poll) never reaches
the disk while Home Assistant runs: a power cut loses all of it. A `DurableStore` writes within
its bound of the *first* unsaved change, however often changes come after it, and a change that
must not wait (a counter's offset) can ask for a shorter bound.

The state is snapshotted on the event loop (never read by another thread while the loop changes
it) and serialised in the executor, so a large state (a week of queued samples) costs the loop
only its snapshot.

A write that fails (a full disk) is tried again within the bound, with the state as it is then:
Home Assistant's `Store` only logs the failure, and the last change before a quiet spell (a meter
gone offline) would otherwise never reach the disk.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from homeassistant.const import EVENT_HOMEASSISTANT_STOP
from homeassistant.core import CALLBACK_TYPE, Event, HomeAssistant, callback
from homeassistant.helpers.event import async_call_later
from homeassistant.helpers.storage import Store
from homeassistant.util.file import WriteError


def _as_is[T](snapshot: T) -> T:
    return snapshot


class _FailureReportingStore(Store[Any]):
    """A `Store` that calls `on_failure` when writing to the disk failed (it logs it too)."""

    def __init__(
        self, hass: HomeAssistant, version: int, key: str, on_failure: Callable[[], None]
    ) -> None:
        super().__init__(hass, version, key)
        self._on_failure = on_failure

    async def _async_write_data(self, *args: Any) -> None:
        # Its arguments differ between Home Assistant releases: (path, data), later (data).
        try:
            await super()._async_write_data(*args)
        except WriteError:
            self._on_failure()
            raise


class DurableStore[SnapshotT]:
    """A `Store` whose changes are on disk at most `within` seconds after they happen."""

    def __init__(
        self,
        hass: HomeAssistant,
        key: str,
        *,
        within: float,
        snapshot: Callable[[], SnapshotT],
        serialize: Callable[[SnapshotT], Any] = _as_is,
        version: int = 1,
    ) -> None:
        """Keep `snapshot()` (taken on the loop, serialised off it) under `key`."""
        self._hass = hass
        self._store: Store[Any] = _FailureReportingStore(hass, version, key, self._write_failed)
        self._within = within
        self._snapshot = snapshot
        self._serialize = serialize
        self._due = 0.0  # loop time by which the pending write happens
        self._cancel_timer: CALLBACK_TYPE | None = None
        self._cancel_stop: CALLBACK_TYPE | None = None
        self._closing = False  # `cancel` was called: the owner saves now or unloads

    async def async_load(self) -> Any:
        """Return what was stored (None: nothing)."""
        return await self._store.async_load()

    @property
    def pending(self) -> bool:
        """Return whether a change waits to be written."""
        return self._cancel_timer is not None

    @callback
    def changed(self, within: float | None = None) -> None:
        """Note a change: it is written within `within` seconds (default: the store's bound)."""
        self._closing = False
        delay = self._within if within is None else within
        due = self._hass.loop.time() + delay
        if self._cancel_timer is not None:
            if self._due <= due:
                return  # the pending write will take this change too
            self._cancel_timer()
        else:
            self._cancel_stop = self._hass.bus.async_listen_once(
                EVENT_HOMEASSISTANT_STOP, self._write_at_stop
            )
        self._due = due
        self._cancel_timer = async_call_later(self._hass, delay, self._write_due)

    @callback
    def _write_due(self, _now: Any) -> None:
        self._cancel_timer = None
        self._write()

    @callback
    def _write_at_stop(self, _event: Event) -> None:
        self._cancel_stop = None
        if self._cancel_timer is not None:
            self._cancel_timer()
            self._cancel_timer = None
        self._write()

    @callback
    def _write(self) -> None:
        """Hand a snapshot to the Store, which writes it now (or at the final write)."""
        if self._cancel_stop is not None:
            self._cancel_stop()
            self._cancel_stop = None
        self._store.async_delay_save(partial(self._serialize, self._snapshot()), 0)

    @callback
    def _write_failed(self) -> None:
        """Write again within the bound, unless Home Assistant stops or the owner closes."""
        if not self._closing and not self._hass.is_stopping:
            self.changed()

    @callback
    def cancel(self) -> None:
        """Forget a pending write (the entry is unloading; `async_save` follows)."""
        self._closing = True
        for cancel in (self._cancel_timer, self._cancel_stop):
            if cancel is not None:
                cancel()
        self._cancel_timer = self._cancel_stop = None

    async def async_save(self) -> None:
        """Write the state now."""
        self.cancel()
        await self._store.async_save(self._serialize(self._snapshot()))

    async def async_remove(self) -> None:
        """Delete what is stored."""
        self.cancel()
        await self._store.async_remove()
