"""The benchmark's probe inside Home Assistant: measures the integration where it runs.

`scripts/bench` links this folder into the configuration of the Home Assistant it starts, as the
custom integration `bench_probe`; it is never part of the integration. What it measures:

- the CPU time of each meter update: `MeterCoordinator._async_refresh` (the poll, parsing and
  cleaning the reply, the supply watch, and the listeners, i.e. every entity's state write) is
  wrapped so that the thread CPU time of each step of that coroutine is summed. That is the time
  the update itself runs, not what other tasks run while it awaits the meter's answer. A pushed
  update (a Gen2+ meter's NotifyStatus, as aioshelly hands it on: parsed, taken in, every
  entity's state write) is timed whole, as it runs in one go;
- the state changes of each meter's first power sensor, as Home Assistant stamps them (the
  benchmark compares them with when the simulator changed the value);
- the event loop's lag: a task that sleeps 5 ms records how late it wakes (while asked to), and
  the pauses of Python's full garbage collections meanwhile;
- the `shelly_energy_history_imported` events, with when they fired;
- what grew in memory between two calls, when Python's tracemalloc is tracing;
- on request, a profile (cProfile) of the meter updates' steps.

The benchmark reads and resets all this through response-only service actions over the REST API.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import gc
import io
import pstats
import time
import tracemalloc
from array import array
from collections import defaultdict
from collections.abc import Callable, Coroutine, Generator
from typing import Any, cast

import voluptuous as vol
from aioshelly.rpc_device import RpcUpdateType
from homeassistant.core import (
    CALLBACK_TYPE,
    Event,
    EventStateChangedData,
    HomeAssistant,
    ServiceCall,
    ServiceResponse,
    SupportsResponse,
    callback,
)
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.event import async_track_state_change_event
from homeassistant.helpers.typing import ConfigType

from custom_components.shelly_energy.const import DOMAIN as SHELLY_DOMAIN
from custom_components.shelly_energy.coordinator import MeterCoordinator, loaded_meters
from custom_components.shelly_energy.meter.errors import MeterConnectionError
from custom_components.shelly_energy.meter.rpc import RpcClient

DOMAIN = "bench_probe"
CONFIG_SCHEMA = cv.empty_config_schema(DOMAIN)
EVENT_HISTORY_IMPORTED = "shelly_energy_history_imported"
LAG_TICK_S = 0.005
MEMORY_TOP = 25
PROFILE_TOP = 40


class CpuTimed[T]:
    """Awaits a coroutine and reports the thread CPU time its own steps took, summed.

    With a `profiler`, the steps (and only they) are also profiled.
    """

    def __init__(
        self,
        coroutine: Coroutine[Any, Any, T],
        report: Callable[[float], None],
        profiler: cProfile.Profile | None = None,
    ) -> None:
        """Time `coroutine`; `report` gets the seconds when it returns."""
        self._coroutine = coroutine
        self._report = report
        self._profiler = profiler

    def __await__(self) -> Generator[Any, Any, T]:
        """Run the coroutine step by step, as the task awaiting this would."""
        coroutine = self._coroutine
        profiler = self._profiler
        cpu = 0.0
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            if profiler is not None:
                profiler.enable()
            start = time.thread_time()
            try:
                awaited = coroutine.send(sent) if thrown is None else coroutine.throw(thrown)
            except StopIteration as stop:
                self._report(cpu + time.thread_time() - start)
                return cast(T, stop.value)
            finally:
                if profiler is not None:
                    profiler.disable()
            cpu += time.thread_time() - start
            try:
                sent, thrown = (yield awaited), None
            except BaseException as err:  # handed to the coroutine, as a task would
                sent, thrown = None, err


class Probe:
    """What the probe has measured since the last reset."""

    def __init__(self, hass: HomeAssistant) -> None:
        """Measure nothing until the first reset."""
        self.hass = hass
        # Samples in arrays (8 bytes each): they grow in the memory window too.
        self.update_cpu: defaultdict[str, array[float]] = defaultdict(lambda: array("d"))
        self.changes = array("d")  # unix times of the watched sensors' state changes
        self.loop_lag: list[float] = []  # seconds late, one per tick
        self.full_collections: list[float] = []  # GC pauses (s) while the lag is watched
        self._gc_started = 0.0
        self.history_events: list[dict[str, Any]] = []
        self._stop_watching: CALLBACK_TYPE | None = None
        self._lag_task: asyncio.Task[None] | None = None
        self._memory_mark: tracemalloc.Snapshot | None = None
        self.profiler: cProfile.Profile | None = None

    @callback
    def reset(self, *, loop_lag: bool) -> list[str]:
        """Start measuring afresh; watch the first power sensor of every loaded meter."""
        self.update_cpu.clear()
        del self.changes[:]
        self.loop_lag.clear()
        self.full_collections.clear()
        if self._gc_pause in gc.callbacks:
            gc.callbacks.remove(self._gc_pause)
        if self._stop_watching is not None:
            self._stop_watching()
        registry = er.async_get(self.hass)
        watched = [
            entity_id
            for mac, meter in loaded_meters(self.hass).items()
            if (
                entity_id := registry.async_get_entity_id(
                    "sensor", SHELLY_DOMAIN, f"{mac}_{meter.info.channel_ids[0]}_power"
                )
            )
        ]
        self._stop_watching = async_track_state_change_event(
            self.hass, watched, self._state_changed
        )
        if self._lag_task is not None:
            self._lag_task.cancel()
            self._lag_task = None
        if loop_lag:
            gc.callbacks.append(self._gc_pause)
            self._lag_task = self.hass.async_create_background_task(
                self._watch_loop_lag(), "bench_probe loop lag"
            )
        return watched

    @callback
    def _state_changed(self, event: Event[EventStateChangedData]) -> None:
        old, new = event.data["old_state"], event.data["new_state"]
        if old is None or new is None or old.state == new.state:
            return
        if _is_number(old.state) and _is_number(new.state):
            self.changes.append(new.last_changed_timestamp)

    def _gc_pause(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif info["generation"] == 2:  # a full collection: the whole heap
            self.full_collections.append(time.perf_counter() - self._gc_started)

    async def _watch_loop_lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(LAG_TICK_S)
            self.loop_lag.append(loop.time() - start - LAG_TICK_S)

    @callback
    def history_imported(self, event: Event) -> None:
        """Note when an import finished, and what it says it did."""
        self.history_events.append({"fired": event.time_fired_timestamp, **event.data})

    def memory(self, *, mark: bool) -> dict[str, Any]:
        """Mark the heap now, or say what grew most since the mark (by line that allocated)."""
        if not tracemalloc.is_tracing():
            return {"tracing": False}
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(inclusive=False, filename_pattern=tracemalloc.__file__)]
        )
        if mark or self._memory_mark is None:
            self._memory_mark = snapshot
            return {"tracing": True, "marked": True}
        stats = snapshot.compare_to(self._memory_mark, "lineno")
        return {
            "tracing": True,
            "total": sum(stat.size_diff for stat in stats),
            "grown": [
                {"where": str(stat.traceback), "bytes": stat.size_diff, "count": stat.count_diff}
                for stat in stats[:MEMORY_TOP]
            ],
        }

    def profile(self, *, start: bool) -> dict[str, Any]:
        """Start profiling the meter updates, or stop and return the profile as text."""
        if start:
            self.profiler = cProfile.Profile()
            return {"profiling": True}
        profiler, self.profiler = self.profiler, None
        if profiler is None:
            return {"profiling": False}
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        stats.sort_stats(pstats.SortKey.CUMULATIVE).print_stats(PROFILE_TOP)
        stats.sort_stats(pstats.SortKey.TIME).print_stats(PROFILE_TOP)
        return {"profiling": False, "text": text.getvalue()}


def _is_number(state: str) -> bool:
    try:
        float(state)
    except ValueError:
        return False
    return True


def _instrument(probe: Probe) -> None:
    """Time every meter update, read or pushed (once per process)."""
    original = MeterCoordinator._async_refresh

    async def timed_refresh(coordinator: MeterCoordinator, *args: Any, **kwargs: Any) -> None:
        def report(seconds: float) -> None:
            probe.update_cpu[coordinator.info.model_name].append(seconds)

        await CpuTimed(original(coordinator, *args, **kwargs), report, probe.profiler)

    setattr(MeterCoordinator, "_async_refresh", timed_refresh)  # noqa: B010
    original_pushed = RpcClient._updated

    def timed_push(client: RpcClient, device: Any, update_type: RpcUpdateType) -> None:
        if update_type is not RpcUpdateType.STATUS:
            original_pushed(client, device, update_type)
            return
        profiler = probe.profiler
        if profiler is not None:
            profiler.enable()
        start = time.thread_time()
        try:
            original_pushed(client, device, update_type)
        finally:
            seconds = time.thread_time() - start
            if profiler is not None:
                profiler.disable()
        with contextlib.suppress(MeterConnectionError):  # not connected: nothing was pushed
            probe.update_cpu[client.info.model_name].append(seconds)

    # The client subscribes its bound method when it connects: after the probe is set up.
    setattr(RpcClient, "_updated", timed_push)  # noqa: B010


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Instrument the integration and offer the probe's service actions."""
    probe = Probe(hass)
    _instrument(probe)
    hass.bus.async_listen(EVENT_HISTORY_IMPORTED, probe.history_imported)

    async def reset(call: ServiceCall) -> ServiceResponse:
        watched: list[Any] = probe.reset(loop_lag=call.data["loop_lag"])
        return {"watched": watched}

    async def report(call: ServiceCall) -> ServiceResponse:
        return {
            "update_cpu": {model: list(values) for model, values in probe.update_cpu.items()},
            "changes": list(probe.changes),
            "loop_lag": list(probe.loop_lag),
            "full_collections": list(probe.full_collections),
            "history_events": list(probe.history_events),
        }

    async def memory(call: ServiceCall) -> ServiceResponse:
        return probe.memory(mark=call.data["mark"])

    async def profile(call: ServiceCall) -> ServiceResponse:
        return probe.profile(start=call.data["start"])

    for name, handler, schema in (
        ("reset", reset, vol.Schema({vol.Optional("loop_lag", default=False): cv.boolean})),
        ("report", report, vol.Schema({})),
        ("memory", memory, vol.Schema({vol.Required("mark"): cv.boolean})),
        ("profile", profile, vol.Schema({vol.Required("start"): cv.boolean})),
    ):
        hass.services.async_register(
            DOMAIN, name, handler, schema=schema, supports_response=SupportsResponse.ONLY
        )
    return True
