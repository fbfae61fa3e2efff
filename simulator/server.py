"""Serving meters: one loopback port per meter, plus a control HTTP API.

`MeterServer` carries one `SimulatedMeter` on 127.0.0.1 and implements what the meter cannot
do alone: closing its listening socket while offline (and reopening it on the same port),
dropping open connections, refusing connections while the device reboots.
`Simulator` runs many of them and the control API (see ``README.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import socket
from collections.abc import Sequence
from types import TracebackType
from typing import Any, NotRequired, Self, TypedDict, Unpack, cast

from aiohttp import web

from .clock import Clock
from .gen1 import create_gen1_app
from .household import Household, Source
from .meter import Profile, SimulatedMeter
from .rpc import RpcServer

HOST = "127.0.0.1"  # where the simulator listens unless told ::1
LOOPBACK_HOSTS = (HOST, "::1")  # the only addresses it ever binds
_SHUTDOWN_TIMEOUT = 0.5  # seconds a request in progress may take to finish when stopping
MAX_POWER_SECONDS = 86_400  # the longest series of powers the control API answers at once
# The meter options that describe its household (see `Simulator.add_meter`).
HOUSEHOLD_OPTIONS = ("solar_peak_w", "battery_wh", "utc_offset")

# The scenario controls the control API may call, by `SimulatedMeter` method name.
CONTROL_ACTIONS = frozenset(
    {
        "bogus_records",
        "clear_reply_overrides",
        "corrupt_counters",
        "delete_all_data",
        "disconnect_phase",
        "flap_components",
        "jitter",
        "override_reply",
        "power_loss",
        "reboot",
        "reconnect_phase",
        "release_power",
        "release_voltage",
        "reset_counters",
        "set_channel_errors",
        "set_counters",
        "set_delay",
        "set_errors",
        "set_firmware",
        "set_flags",
        "set_frequency",
        "set_name",
        "set_online",
        "set_password",
        "set_power",
        "set_profile",
        "set_relay",
        "set_silent",
        "set_status_firmware",
        "set_update",
        "set_voltage",
        "voltage_episode",
        "wire",
    }
)


class MeterOptions(TypedDict):
    """Keyword options of a meter (see `SimulatedMeter`)."""

    mac: NotRequired[str | None]
    name: NotRequired[str | None]
    password: NotRequired[str | None]
    firmware: NotRequired[str | None]
    profile: NotRequired[Profile | None]
    wiring: NotRequired[Sequence[str | Source] | None]
    nominal_voltage: NotRequired[float]
    frequency: NotRequired[float]
    history_days: NotRequired[float]
    retention_days: NotRequired[float]
    initial_energy_wh: NotRequired[float]
    solar_peak_w: NotRequired[float]
    battery_wh: NotRequired[float]
    utc_offset: NotRequired[int]
    rows_per_call: NotRequired[int]
    flash_save_s: NotRequired[int]
    csv_bytes_per_second: NotRequired[float | None]
    noise: NotRequired[bool]
    rpc_latency_s: NotRequired[float]
    download_bytes_per_second: NotRequired[float | None]
    data_csv: NotRequired[bool]


def bind_loopback(port: int, host: str = HOST) -> socket.socket:
    """Return a non-blocking socket listening on `host`:`port` (0: any free port).

    `host` is 127.0.0.1 or ::1: nothing but loopback is ever bound.
    """
    if host not in LOOPBACK_HOSTS:
        raise ValueError(f"the simulator listens on {' or '.join(LOOPBACK_HOSTS)} only")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # Reopening the same port right after closing it must not wait for TIME_WAIT.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class _Refuse(asyncio.Protocol):
    """Accepts a connection and resets it at once: a device that is rebooting."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if isinstance(transport, asyncio.Transport):
            transport.abort()
        else:
            transport.close()


class MeterServer:
    """Serves one meter on 127.0.0.1 or ::1 (Gen1 or Gen2+ protocol after its kind)."""

    def __init__(
        self,
        meter: SimulatedMeter,
        *,
        port: int = 0,
        host: str = HOST,
        notify_interval: float | None = None,
    ) -> None:
        """Serve `meter` on `host`:`port` (0: any free port; `port` tells which once started)."""
        if host not in LOOPBACK_HOSTS:
            raise ValueError(f"the simulator listens on {' or '.join(LOOPBACK_HOSTS)} only")
        self.meter = meter
        self.host = host
        self.port = port
        self._notify_interval = notify_interval
        self._rpc: RpcServer | None = None
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        # Sockets bound while going back online, until their server is up.
        self._reopening: dict[asyncio.Task[None], socket.socket] = {}

    @property
    def address(self) -> str:
        """Where the device answers, as people write it: ``127.0.0.1:8081``, ``[::1]:8081``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The device's base URL."""
        return f"http://{self.address}"

    @property
    def started(self) -> bool:
        """Whether `start` has run (and `stop` not yet)."""
        return self._runner is not None

    async def start(self) -> None:
        """Bind the port and serve (unless the meter is offline: then only reserve the port)."""
        meter = self.meter
        if meter.gen == 1:
            app = create_gen1_app(meter)
        else:
            self._rpc = RpcServer(meter, self._notify_interval)
            app = self._rpc.app
        self._runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT
        )
        await self._runner.setup()
        sock = self._bind()
        if meter.online:
            await self._serve(sock)
        else:
            sock.close()
        meter.attach(self)

    async def stop(self) -> None:
        """Stop serving and close every connection."""
        self.meter.attach(None)
        reopening = list(self._reopening)
        self._cancel_reopening()
        await asyncio.gather(*reopening, return_exceptions=True)
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        self.meter_dropped_connections()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._rpc = None
        if listener is not None:
            await listener.wait_closed()

    async def notify_status(self, *, everything: bool = False, full: bool = False) -> int:
        """Send a Gen2+ meter's ``NotifyStatus`` now (see `RpcServer.notify_status`).

        Return how many WebSockets it went to (0 for a Gen1 meter, or when nothing changed).
        """
        if self._rpc is None:
            return 0
        return await self._rpc.notify_status(everything=everything, full=full)

    def _bind(self) -> socket.socket:
        sock = bind_loopback(self.port, self.host)
        self.port = sock.getsockname()[1]
        return sock

    async def _serve(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(self._protocol, sock=sock)

    def _protocol(self) -> asyncio.Protocol:
        if self._runner is None or self._runner.server is None or not self.meter.reachable():
            return _Refuse()
        return self._runner.server()

    # MeterListener

    def meter_online_changed(self, online: bool) -> None:
        """Close the listening socket, or listen again on the same port."""
        if not online:
            self._cancel_reopening()
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            self.meter_dropped_connections()
            return
        # Listening starts now (connections queue in the backlog); accepting a moment later.
        sock = self._bind()
        task = asyncio.get_running_loop().create_task(self._serve(sock))
        self._reopening[task] = sock
        task.add_done_callback(lambda done: self._reopening.pop(done, None))

    def _cancel_reopening(self) -> None:
        """Give up going back online (the port is free again at once)."""
        for task, sock in self._reopening.items():
            task.cancel()
            sock.close()

    def meter_dropped_connections(self) -> None:
        """Close every open connection, HTTP keep-alive and WebSocket alike."""
        if self._runner is not None and self._runner.server is not None:
            for connection in self._runner.server.connections:
                connection.force_close()


class Simulator:
    """Many simulated meters, each on its own loopback port, and a control API.

    Use as ``async with Simulator(clock) as sim:`` or call `start` and `stop`.
    """

    def __init__(
        self,
        clock: Clock | None = None,
        seed: int = 0,
        *,
        control_port: int | None = None,
        notify_interval: float | None = None,
    ) -> None:
        """Create an empty simulator; `control_port` None runs no control API (0: any port)."""
        self.clock = clock or Clock()
        self.seed = seed
        self.meters: list[SimulatedMeter] = []
        self.control_port = control_port
        self._notify_interval = notify_interval
        self._servers: dict[str, MeterServer] = {}
        self._households: dict[int, Household] = {}  # by seed: its meters share it
        self._control: web.AppRunner | None = None

    def add_meter(
        self,
        kind: str,
        *,
        port: int = 0,
        host: str = HOST,
        seed: int | None = None,
        **options: Unpack[MeterOptions],
    ) -> SimulatedMeter:
        """Add a meter of `kind`, to listen on `host` (127.0.0.1 or ::1); `start` serves it.

        Its seed defaults to one derived from the simulator's seed and the meter's position,
        which also gives every meter its own MAC. Meters given the same seed measure one
        household (the same object): raises ValueError when this meter's `solar_peak_w`,
        `battery_wh` or `utc_offset` differ from what an earlier meter of the seed gave it.
        """
        meter_seed = self.seed * 1000 + len(self.meters) if seed is None else seed
        household = self._household(meter_seed, options)
        meter = SimulatedMeter(
            kind, clock=self.clock, seed=meter_seed, household=household, **options
        )
        if meter.mac in self._servers:
            raise ValueError(
                f"a meter with MAC {meter.mac} already exists (meters that share a seed need a "
                "mac of their own)"
            )
        server = MeterServer(meter, port=port, host=host, notify_interval=self._notify_interval)
        self.meters.append(meter)
        self._servers[meter.mac] = server
        return meter

    def _household(self, seed: int, options: MeterOptions) -> Household:
        """Return the household of a seed, taking its options out of a meter's `options`.

        Meters of one seed measure one household: the first one's options make it, and a later
        one may repeat them but not differ (its solar or battery would not add up with theirs).
        """
        given = cast(dict[str, Any], options)
        wanted = {name: given.pop(name) for name in HOUSEHOLD_OPTIONS if name in given}
        household = self._households.get(seed)
        if household is None:
            household = self._households[seed] = Household(seed, **wanted)
            return household
        if differing := [
            f"{name}={value:g} (it has {getattr(household, name):g})"
            for name, value in wanted.items()
            if value != getattr(household, name)
        ]:
            raise ValueError(
                f"meters of seed {seed} share one household; this meter's "
                f"{', '.join(differing)} would not add up with the others'"
            )
        return household

    def meter(self, mac: str) -> SimulatedMeter:
        """Return the meter with this MAC (any case, colons allowed)."""
        return self.server(mac).meter

    def server(self, meter: SimulatedMeter | str) -> MeterServer:
        """Return the server carrying a meter (given as the meter or its MAC)."""
        mac = meter.mac if isinstance(meter, SimulatedMeter) else meter
        try:
            return self._servers[mac.replace(":", "").upper()]
        except KeyError:
            raise KeyError(f"no meter with MAC {mac}") from None

    @property
    def control_url(self) -> str | None:
        """The control API's base URL, once started."""
        if self._control is None or self.control_port is None:
            return None
        return f"http://{HOST}:{self.control_port}"

    async def start(self) -> None:
        """Serve every meter not yet served, and the control API if asked for."""
        for server in self._servers.values():
            if not server.started:
                await server.start()
        if self.control_port is not None and self._control is None:
            self._control = web.AppRunner(_control_app(self), handle_signals=False, access_log=None)
            await self._control.setup()
            sock = bind_loopback(self.control_port)
            self.control_port = sock.getsockname()[1]
            await web.SockSite(self._control, sock).start()

    async def stop(self) -> None:
        """Stop everything; nothing keeps running afterwards."""
        if self._control is not None:
            await self._control.cleanup()
            self._control = None
        for server in self._servers.values():
            if server.started:
                await server.stop()

    async def __aenter__(self) -> Self:
        """Start."""
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop."""
        await self.stop()

    def describe(self, meter: SimulatedMeter) -> dict[str, Any]:
        """Return how the control API lists a meter."""
        server = self.server(meter)
        return {
            "kind": meter.kind,
            "model": meter.model,
            "gen": meter.gen,
            "mac": meter.mac,
            "name": meter.name,
            "device_id": meter.device_id,
            "host": server.host,
            "port": server.port,
            "url": server.url,
            "online": meter.online,
            "auth": meter.password is not None,
            "profile": meter.profile,
        }


def _control_app(simulator: Simulator) -> web.Application:
    """Return the control API: list meters, run scenario actions, read and move the clock."""

    def error(status: int, message: str) -> web.Response:
        return web.json_response({"error": message}, status=status)

    def find(request: web.Request) -> SimulatedMeter | None:
        with contextlib.suppress(KeyError):
            return simulator.meter(request.match_info["mac"])
        return None

    async def list_meters(_request: web.Request) -> web.Response:
        return web.json_response([simulator.describe(meter) for meter in simulator.meters])

    async def show_meter(request: web.Request) -> web.Response:
        if (meter := find(request)) is None:
            return error(404, f"no meter {request.match_info['mac']}")
        state = meter.state(read_counters=False)
        description = simulator.describe(meter)
        description["uptime"] = state.uptime
        description["records"] = len(meter.records)
        description["channels"] = [
            {
                "source": str(source),
                "power": channel.power,
                "voltage": channel.voltage,
                "energy_in": channel.energy_in,
                "energy_out": channel.energy_out,
            }
            for source, channel in zip(meter.wiring, state.channels, strict=True)
        ]
        return web.json_response(description)

    async def power(request: web.Request) -> web.Response:
        if (meter := find(request)) is None:
            return error(404, f"no meter {request.match_info['mac']}")
        try:
            channel = meter.channel_index(request.query.get("channel", "0"))
            start, end = int(request.query["start"]), int(request.query["end"])
        except (KeyError, ValueError) as err:
            return error(400, f"power: {err}")
        if not 0 <= end - start <= MAX_POWER_SECONDS:
            return error(400, f"power: at most {MAX_POWER_SECONDS} seconds, from start to end")
        return web.json_response([meter.power_at(channel, second) for second in range(start, end)])

    async def act(request: web.Request) -> web.Response:
        if (meter := find(request)) is None:
            return error(404, f"no meter {request.match_info['mac']}")
        try:
            arguments = await request.json() if request.can_read_body else {}
        except json.JSONDecodeError:
            return error(400, "the body must be a JSON object")
        if not isinstance(arguments, dict):
            return error(400, "the body must be a JSON object")
        action = request.match_info.get("action") or arguments.pop("action", None)
        if action not in CONTROL_ACTIONS:
            return error(404, f"unknown action {action!r}")
        control = getattr(meter, action)
        try:
            inspect.signature(control).bind(**arguments)
        except TypeError as err:
            return error(400, f"{action}: {err}")
        try:
            control(**arguments)
        except (ValueError, TypeError) as err:
            return error(400, f"{action}: {err}")
        return web.json_response({"ok": True})

    async def show_clock(_request: web.Request) -> web.Response:
        clock = simulator.clock
        return web.json_response({"now": clock.now(), "manual": clock.is_manual})

    async def advance_clock(request: web.Request) -> web.Response:
        try:
            seconds = float((await request.json())["seconds"])
            now = simulator.clock.advance(seconds)
        except (ValueError, KeyError, TypeError, RuntimeError) as err:
            return error(400, f"advance: {err}")
        return web.json_response({"now": now, "manual": True})

    app = web.Application()
    app.add_routes(
        [
            web.get("/meters", list_meters),
            web.get("/meters/{mac}", show_meter),
            web.get("/meters/{mac}/power", power),
            web.post("/meters/{mac}", act),
            web.post("/meters/{mac}/{action}", act),
            web.get("/clock", show_clock),
            web.post("/clock/advance", advance_clock),
        ]
    )
    return app
