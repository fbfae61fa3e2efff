"""Gen1 devices on the wire (Shelly EM, 3EM, Plug S): HTTP JSON with Basic auth.

- ``GET /shelly`` (never authenticated), ``/settings``, ``/status``;
- ``GET /relay/0[?turn=on|off|toggle]``, ``GET /reboot``;
- ``GET /emeter/<i>/em_data.csv``: the 10-minute records as CSV, the whole file every time,
  streamed at the meter's `csv_bytes_per_second`, one download at a time per device.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import cmath
import math
import time
from typing import Any

from aiohttp import web

from .meter import MeterState, SimulatedMeter
from .wire import DeferredCalls, dumps, fahrenheit, local_hhmm, request_counter, send_throttled

CSV_BUSY_BODY = "Another file transfer is in progress!"
_REBOOT_DELAY = 0.2  # seconds between answering /reboot and rebooting
_CSV_CHUNK_BYTES = 1024
_USERNAME = "admin"
_NOT_JSON = '{"wifi_sta":{"connected":true,'  # a reply cut off mid-way
_PHASE_ROTATION = (1, cmath.rect(1, -2 * math.pi / 3), cmath.rect(1, 2 * math.pi / 3))


class Gen1Api:
    """The JSON documents of one Gen1 device, built from its `SimulatedMeter`."""

    def __init__(self, meter: SimulatedMeter) -> None:
        """Describe `meter`."""
        self.meter = meter

    @property
    def _emeters(self) -> int:
        return self.meter.channel_count if self.meter.preset.energy_meter else 0

    def shelly(self) -> dict[str, Any]:
        """Return ``/shelly``."""
        meter = self.meter
        info: dict[str, Any] = {
            "type": meter.model,
            "mac": meter.mac,
            "auth": meter.password is not None,
            "fw": meter.firmware,
            "discoverable": True,
            "longid": 1,
            "num_outputs": 1,
            "num_meters": 0 if meter.preset.energy_meter else 1,
        }
        if self._emeters:
            info["num_emeters"] = self._emeters
        return info

    def settings(self) -> dict[str, Any]:
        """Return ``/settings``."""
        meter = self.meter
        now = meter.clock.now()
        device = {
            key: value
            for key, value in self.shelly().items()
            if key in ("type", "mac", "num_outputs", "num_meters", "num_emeters")
        }
        device["hostname"] = meter.device_id
        settings: dict[str, Any] = {
            "device": device,
            "wifi_ap": {"enabled": False, "ssid": meter.device_id, "key": ""},
            "wifi_sta": {"enabled": True, "ssid": "Wifi-Network-Name", "ipv4_method": "dhcp"},
            "login": {
                "enabled": meter.password is not None,
                "unprotected": False,
                "username": _USERNAME,
            },
            "pin_code": "",
            "name": meter.name,
            "fw": meter.firmware,
            "discoverable": True,
            "cloud": {"enabled": False, "connected": False},
            "timezone": "UTC",
            "tzautodetect": False,
            "tz_utc_offset": meter.utc_offset,
            "tz_dst": False,
            "tz_dst_auto": False,
            "time": local_hhmm(now, meter.utc_offset),
            "unixtime": int(now),
            "led_status_disable": False,
            "debug_enable": False,
            "allow_cross_origin": False,
            "hwinfo": {"hw_revision": "prod-2020-10", "batch_id": 1},
            "max_power": 0 if meter.preset.energy_meter else 2500,
            "relays": [
                {
                    "name": None,
                    "appliance_type": "General",
                    "ison": meter.relay_on,
                    "has_timer": False,
                    "default_state": "off",
                    "auto_on": 0.0,
                    "auto_off": 0.0,
                    "schedule": False,
                    "schedule_rules": [],
                    "max_power": 0,
                }
            ],
        }
        if self._emeters:
            settings["emeters"] = [
                {"appliance_type": "General", "max_power": 0} for _ in range(self._emeters)
            ]
        return settings

    def relay(self) -> dict[str, Any]:
        """Return ``/relay/0``."""
        meter = self.meter
        return {
            "ison": meter.relay_on,
            "has_timer": False,
            "timer_started": 0,
            "timer_duration": 0,
            "timer_remaining": 0,
            "overpower": False,
            "source": meter.relay_source,
        }

    def status(self) -> dict[str, Any]:
        """Return ``/status`` (a read of the counters)."""
        meter = self.meter
        state = meter.state()
        has_update = meter.available_update is not None
        status: dict[str, Any] = {
            "wifi_sta": {
                "connected": True,
                "ssid": "Wifi-Network-Name",
                "ip": "127.0.0.1",
                "rssi": state.rssi,
            },
            "cloud": {"enabled": False, "connected": False},
            "mqtt": {"connected": False},
            "time": local_hhmm(state.time, meter.utc_offset),
            "unixtime": int(state.time),
            "serial": 1,
            "has_update": has_update,
            "mac": meter.mac,
            "cfg_changed_cnt": 0,
            "actions_stats": {"skipped": 0},
            "relays": [self.relay()],
        }
        if meter.preset.energy_meter:
            status["emeters"] = [self._emeter(state, index) for index in range(self._emeters)]
            if meter.preset.three_phase:
                status["total_power"] = round(sum(e["power"] for e in status["emeters"]), 2)
                status["emeter_n"] = self._neutral(state)
        else:
            status["meters"] = [self._plug_meter(state)]
            status["temperature"] = state.temperature
            status["overtemperature"] = False
            status["tmp"] = {
                "tC": state.temperature,
                "tF": fahrenheit(state.temperature),
                "is_valid": True,
            }
        status["update"] = {
            "status": "pending" if has_update else "idle",
            "has_update": has_update,
            "new_version": meter.available_update or meter.firmware,
            "old_version": meter.status_firmware or meter.firmware,
        }
        status.update({"ram_total": 51064, "ram_free": 38440, "fs_size": 233681, "fs_free": 162648})
        status["uptime"] = state.uptime
        return status

    def _emeter(self, state: MeterState, index: int) -> dict[str, Any]:
        channel = state.channels[index]
        valid = state.counters_valid
        emeter: dict[str, Any] = {"power": round(channel.power, 2) if valid else 0.0}
        if self.meter.preset.three_phase:
            emeter["pf"] = round(channel.power_factor, 2) if valid else 0.0
            emeter["current"] = round(channel.current, 2) if valid else 0.0
        else:
            emeter["reactive"] = round(channel.reactive_power, 2) if valid else 0.0
            emeter["pf"] = round(channel.power_factor, 2) if valid else 0.0
        emeter["voltage"] = round(channel.voltage, 2)
        emeter["is_valid"] = valid
        if valid:
            emeter["total"] = round(channel.energy_in, 1)
            emeter["total_returned"] = round(channel.energy_out, 1)
        else:
            emeter["total"] = emeter["total_returned"] = state.invalid_counter_value
        return emeter

    @staticmethod
    def _neutral(state: MeterState) -> dict[str, Any]:
        # The phasor sum of the phase currents, 120 degrees apart: what flows in the neutral.
        ixsum = abs(
            sum(
                channel.current * rotation
                for channel, rotation in zip(state.channels, _PHASE_ROTATION, strict=True)
            )
        )
        return {"current": 0.0, "ixsum": round(ixsum, 2), "mismatch": False, "is_valid": False}

    def _plug_meter(self, state: MeterState) -> dict[str, Any]:
        channel = state.channels[0]
        # Plug S counters are in watt-minutes.
        by_minute = self.meter.records.last_import_mwh(0, 3)
        return {
            "power": round(channel.power, 2),
            "overpower": 0.0,
            "is_valid": True,
            "timestamp": int(state.time + self.meter.utc_offset),
            "counters": [round(mwh * 0.06, 3) for mwh in (*by_minute, 0, 0, 0)[:3]],
            "total": round(channel.energy_in * 60),
        }

    def em_data_csv(self, index: int) -> str:
        """Return ``/emeter/<index>/em_data.csv``: every 10-minute record, oldest first."""
        records = self.meter.records
        lines = [
            f"Date/time UTC,Active energy Wh ({index + 1}),Returned energy Wh ({index + 1}),"
            "Min V,Max V"
        ]
        segments, _ = records.select(None, None, None)
        for segment in segments:
            for offset in range(segment.count):
                position = segment.start + offset
                stamp = time.strftime(
                    "%Y-%m-%d %H:%M", time.gmtime(segment.ts + offset * records.period)
                )
                imported, exported = records.energy_mwh(position, index)
                low, high = records.voltage_range(position, index)
                lines.append(
                    f"{stamp},{imported / 1000:.2f},{exported / 1000:.2f},{low:.1f},{high:.1f}"
                )
        return "\n".join(lines) + "\n"


class _Gen1Server:
    """The aiohttp application of one Gen1 device."""

    def __init__(self, meter: SimulatedMeter) -> None:
        self.meter = meter
        self.api = Gen1Api(meter)
        self._transfer_busy = False
        self._deferred = DeferredCalls()
        self.app = web.Application(middlewares=[request_counter(meter.requests), self._guard])
        self.app.cleanup_ctx.append(self._deferred.lifetime)
        self.app.add_routes(
            [
                web.get("/shelly", self._json(self.api.shelly)),
                web.get("/settings", self._json(self.api.settings)),
                web.get("/status", self._json(self.api.status)),
                web.get("/relay/{index}", self._relay),
                web.get("/reboot", self._reboot),
                web.get("/emeter/{index}/em_data.csv", self._em_data),
            ]
        )

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Apply Basic auth (not to /shelly), the reply delay and reply overrides."""
        meter = self.meter
        if (
            request.path != "/shelly"
            and meter.password is not None
            and not self._authorised(request.headers.get("Authorization"))
        ):
            return web.Response(
                status=401,
                text="401 Unauthorized",
                headers={"WWW-Authenticate": f'Basic realm="{meter.device_id}"'},
            )
        if meter.reply_delay:
            await asyncio.sleep(meter.reply_delay)
        target = request.path.strip("/").split("/")[0]  # status, settings, relay, emeter...
        override = meter.take_override(target)
        if override is not None and override.kind == "error":
            return web.Response(status=override.code, text=override.message)
        if override is not None and override.kind == "invalid_json":
            return web.Response(text=_NOT_JSON, content_type="application/json")
        request["override"] = override
        response: web.StreamResponse = await handler(request)
        return response

    def _authorised(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return user == _USERNAME and password == self.meter.password

    def _json(self, build: Any) -> Any:
        async def handler(request: web.Request) -> web.Response:
            payload = build()
            if (override := request.get("override")) is not None:
                payload = override.apply(payload)
            return web.json_response(payload, dumps=dumps)

        return handler

    async def _relay(self, request: web.Request) -> web.Response:
        if request.match_info["index"] != "0":
            return web.Response(status=404, text="Not Found")
        turn = request.query.get("turn")
        if turn is not None:
            if turn not in ("on", "off", "toggle"):
                return web.Response(status=400, text="Bad turn!")
            on = not self.meter.relay_on if turn == "toggle" else turn == "on"
            self.meter.set_relay(on, source="http")
        return web.json_response(self.api.relay(), dumps=dumps)

    async def _reboot(self, _request: web.Request) -> web.Response:
        self._deferred.call_later(_REBOOT_DELAY, self.meter.reboot)  # after this reply
        return web.json_response({"ok": True}, dumps=dumps)

    async def _em_data(self, request: web.Request) -> web.StreamResponse:
        index_text = request.match_info["index"]
        emeters = self.meter.channel_count if self.meter.preset.energy_meter else 0
        if not index_text.isdigit() or int(index_text) >= emeters:
            return web.Response(status=404, text="Not Found")
        if self._transfer_busy:
            return web.Response(text=CSV_BUSY_BODY)
        self._transfer_busy = True
        body = self.api.em_data_csv(int(index_text)).encode()
        response = web.StreamResponse(headers={"Content-Type": "text/csv"})
        try:
            await response.prepare(request)
            await send_throttled(
                response, (body,), self.meter.csv_bytes_per_second, _CSV_CHUNK_BYTES
            )
        finally:
            self._transfer_busy = False
        return response


def create_gen1_app(meter: SimulatedMeter) -> web.Application:
    """Return the aiohttp application of a Gen1 meter."""
    return _Gen1Server(meter).app
