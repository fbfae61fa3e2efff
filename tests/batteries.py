"""Fake home batteries that read a Shelly meter the way the real ones do, on loopback only.

- `MarstekClient`: B2500 / Venus / Jupiter over UDP: a 50-byte `EM.GetStatus` datagram without
  `src`, ids counting up and wrapping at 65535, broadcast first, then unicast; 1 s timeout.
- `HoymilesClient`: MS-A2 / HiBattery: pairs over HTTP (`/shelly`, `Shelly.GetDeviceInfo`,
  `EM.GetConfig`, `Shelly.GetStatus`, `Sys.GetStatus`), then polls `EM.GetStatus` over a
  WebSocket on `/rpc` with a `src` of its own.
- `GrowattClient`: NOAH / NEXA: `GET /rpc/Shelly.GetStatus?esp`.

`check_em_reply` asserts what every battery relies on in a reply.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import aiohttp

BROADCAST = "127.255.255.255"  # loopback's broadcast address
LOOPBACK = "127.0.0.1"
PHASES = ("a", "b", "c")
# A power written as a bare integer ("a_act_power":120,): what crashes B2500 firmware 116.6.
_INTEGER_POWER = re.compile(rb'"(?:[abc]_|total_)?act_power":-?\d+[,}]')


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """Return a port free on loopback now (UDP by default, or socket.SOCK_STREAM)."""
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class UdpReply:
    """A datagram the battery received in reply."""

    raw: bytes
    frame: dict[str, Any]
    source: tuple[str, int]
    latency: float  # seconds from sending the request


class MarstekClient:
    """A Marstek battery polling its meter over UDP."""

    def __init__(self, port: int, *, method: str = "EM.GetStatus", first_id: int = 0) -> None:
        """Poll the meter's ``port`` on loopback with ``method`` (EM1.GetStatus for EM1)."""
        self.port = port
        self.method = method
        self.request_id = first_id
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        self.socket.bind((LOOPBACK, 0))

    def close(self) -> None:
        """Close the battery's socket."""
        self.socket.close()

    def request(self) -> bytes:
        """Return the next request datagram (ids wrap at 65535, as a uint16 does)."""
        self.request_id = self.request_id % 65535 + 1
        # Exactly the B2500's datagram: no src, compact; 50 bytes with a one-digit id.
        return f'{{"id":{self.request_id},"method":"{self.method}","params":{{"id":0}}}}'.encode()

    async def poll(self, *, broadcast: bool = False, wait_s: float = 1.0) -> UdpReply | None:
        """Send one request and return the reply to it; None when none came within ``wait_s``."""
        datagram = self.request()
        wanted = self.request_id
        sent = time.perf_counter()
        self.socket.sendto(datagram, (BROADCAST if broadcast else LOOPBACK, self.port))
        while True:
            # A real-time wait in a thread: Home Assistant's tests may freeze the loop's clock.
            received = await asyncio.to_thread(self._receive, wait_s)
            if received is None:
                return None
            raw, source = received
            frame = json.loads(raw)
            if frame.get("id") == wanted:
                return UdpReply(raw, frame, source, time.perf_counter() - sent)

    def _receive(self, wait_s: float) -> tuple[bytes, tuple[str, int]] | None:
        self.socket.settimeout(wait_s)
        try:
            raw, source = self.socket.recvfrom(4096)
        except TimeoutError:
            return None
        return raw, source


def check_em_reply(raw: bytes | str, result: dict[str, Any]) -> None:
    """Assert what batteries rely on in an `EM.GetStatus` result (and its raw text).

    Four power fields, each written with two decimals (never a bare integer), and
    `total_act_power` the exact sum of the phases.
    """
    text = raw.encode() if isinstance(raw, str) else raw
    assert _INTEGER_POWER.search(text) is None, text
    for key in ("a_act_power", "b_act_power", "c_act_power", "total_act_power"):
        assert re.search(rf'"{key}":-?\d+\.\d\d[,}}]'.encode(), text), (key, text)
    phases = sum(Decimal(str(result[f"{phase}_act_power"])) for phase in PHASES)
    assert Decimal(str(result["total_act_power"])) == phases


class HoymilesClient:
    """A Hoymiles battery pairing with its meter over HTTP, then polling over a WebSocket."""

    def __init__(self, session: aiohttp.ClientSession, port: int) -> None:
        """Talk to the meter at loopback:``port``."""
        self.session = session
        self.url = f"http://{LOOPBACK}:{port}"
        self.src = "hm-battery-1"
        self.request_id = 0
        self.websocket: aiohttp.ClientWebSocketResponse | None = None

    async def pair(self) -> dict[str, Any]:
        """Read what the battery reads to pair: every answer, by path, all 200 and JSON."""
        answers: dict[str, Any] = {}
        for path in (
            "/shelly",
            "/rpc/Shelly.GetDeviceInfo",
            "/rpc/EM.GetConfig?id=0",
            "/rpc/Shelly.GetStatus",
            "/rpc/Sys.GetStatus",
        ):
            async with self.session.get(self.url + path) as response:
                assert response.status == 200, (path, response.status)
                assert response.content_type == "application/json"
                answers[path] = await response.json()
        return answers

    async def connect(self) -> None:
        """Open the WebSocket on /rpc."""
        self.websocket = await self.session.ws_connect(f"{self.url}/rpc")

    async def send(self, method: str, params: dict[str, Any] | None = None) -> int:
        """Send a request frame; return its id."""
        assert self.websocket is not None
        self.request_id += 1
        frame: dict[str, Any] = {"id": self.request_id, "src": self.src, "method": method}
        if params is not None:
            frame["params"] = params
        await self.websocket.send_str(json.dumps(frame))
        return self.request_id

    async def receive(self) -> tuple[str, dict[str, Any]]:
        """Return the next frame, raw and parsed."""
        assert self.websocket is not None
        text = await self.websocket.receive_str()
        return text, json.loads(text)

    async def call(
        self, method: str, params: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Send a request and return the next frame, which must answer it."""
        request_id = await self.send(method, params)
        text, frame = await self.receive()
        assert frame["id"] == request_id, frame
        return text, frame

    async def close(self) -> None:
        """Close the WebSocket."""
        if self.websocket is not None:
            await self.websocket.close()


class GrowattClient:
    """A Growatt NOAH reading its meter's whole status over HTTP."""

    def __init__(self, session: aiohttp.ClientSession, port: int) -> None:
        """Talk to the meter at loopback:``port``."""
        self.session = session
        self.url = f"http://{LOOPBACK}:{port}/rpc/Shelly.GetStatus?esp"

    async def status(self) -> tuple[str, dict[str, Any]]:
        """Return the status, raw and parsed (the request fails if the meter hangs up)."""
        async with self.session.get(self.url) as response:
            assert response.status == 200
            text = await response.text()
            return text, json.loads(text)
