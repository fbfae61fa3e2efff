"""TCP keepalive of a Gen2+ meter's WebSocket: a dropped link is known lost within the limit."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from custom_components.shelly_energy.meter.address import Address
from custom_components.shelly_energy.meter.client import Credentials
from custom_components.shelly_energy.meter.keepalive import keep_alive, keepalive_options
from custom_components.shelly_energy.meter.rpc import RpcClient
from tests.loopback_meters import Serve

from .dropped_link import ALIVE_WITHIN_S

REPO = Path(__file__).parents[2]
TCP = socket.IPPROTO_TCP


def named(options: list[tuple[int, int, int]]) -> dict[str, int]:
    """Return the options by name."""
    names = {
        (socket.SOL_SOCKET, socket.SO_KEEPALIVE): "keepalive",
        (TCP, socket.TCP_KEEPIDLE): "idle",
        (TCP, socket.TCP_KEEPINTVL): "interval",
        (TCP, socket.TCP_KEEPCNT): "probes",
        (TCP, socket.TCP_USER_TIMEOUT): "user_timeout_ms",
    }
    return {names[level, option]: value for level, option, value in options}


@pytest.mark.parametrize(
    ("alive_within", "expected"),
    [
        (5, {"idle": 3, "interval": 1, "probes": 2, "user_timeout_ms": 5000}),
        (1, {"idle": 1, "interval": 1, "probes": 1, "user_timeout_ms": 1000}),
        (60, {"idle": 40, "interval": 10, "probes": 2, "user_timeout_ms": 60000}),
        (13, {"idle": 8, "interval": 2, "probes": 3, "user_timeout_ms": 13000}),
    ],
)
def test_a_link_silent_for_the_limit_is_dropped(
    alive_within: float, expected: dict[str, int]
) -> None:
    assert named(keepalive_options(alive_within)) == {"keepalive": 1, **expected}


@given(st.floats(min_value=1, max_value=300))
def test_the_probes_end_within_one_probe_interval_after_the_limit(alive_within: float) -> None:
    """Where TCP_USER_TIMEOUT is missing, the probe count ends a silent link about in time."""
    options = named(keepalive_options(alive_within))
    ends = options["idle"] + options["probes"] * options["interval"]
    assert options["idle"] <= alive_within <= ends <= alive_within + options["interval"]
    assert options["user_timeout_ms"] == round(alive_within * 1000)


class RecordingSession:
    """A client session that keeps the WebSockets it opened."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session
        self.websockets: list[aiohttp.ClientWebSocketResponse] = []

    async def ws_connect(self, url: Any, **kwargs: Any) -> aiohttp.ClientWebSocketResponse:
        websocket: aiohttp.ClientWebSocketResponse = await self._session.ws_connect(url, **kwargs)
        self.websockets.append(websocket)
        return websocket

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


@pytest.mark.parametrize("alive_within", [5.0, None])
async def test_the_meter_websocket_is_kept_alive_when_asked(
    serve: Serve, session: aiohttp.ClientSession, alive_within: float | None
) -> None:
    _, server = await serve("pro3em")
    recording = RecordingSession(session)
    client = RpcClient(
        cast(aiohttp.ClientSession, recording),
        Address("127.0.0.1", server.port),
        Credentials(None, None),
        alive_within=alive_within,
    )
    await client.connect()
    [websocket] = recording.websockets
    sock = websocket.get_extra_info("socket")
    got = {
        "keepalive": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        "user_timeout_ms": sock.getsockopt(TCP, socket.TCP_USER_TIMEOUT),
    }
    if alive_within is None:
        assert got == {"keepalive": 0, "user_timeout_ms": 0}
    else:
        assert got == {"keepalive": 1, "user_timeout_ms": 5000}
        assert sock.getsockopt(TCP, socket.TCP_KEEPIDLE) == 3
    await client.close()


def namespaces_available() -> bool:
    """Return whether this machine lets us take loopback down in a network namespace of ours."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    tried = subprocess.run(
        ["unshare", "-rn", "ip", "link", "set", "lo", "up"], capture_output=True, check=False
    )
    return tried.returncode == 0


@pytest.mark.skipif(not namespaces_available(), reason="no network namespace of our own")
def test_a_dropped_link_is_known_lost_within_the_limit() -> None:
    """Loopback taken down in a namespace of its own: packets vanish, nothing is closed."""
    done = subprocess.run(
        [
            "unshare",
            "-rn",
            "sh",
            "-c",
            'ip link set lo up && exec "$0" -m tests.meter.dropped_link "$1"',
            sys.executable,
            str(ALIVE_WITHIN_S),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lost = json.loads(done.stdout.strip().splitlines()[-1])
    # The connection had been silent 0.5 s when the link dropped; the kernel probes it after
    # 2 s of silence and drops it once silent for 3 s (a probe's timer runs at whole seconds).
    assert 1.5 <= lost["keepalive"] <= ALIVE_WITHIN_S
    assert lost["without"] is None  # without keepalive, nothing tells for minutes


class RefusingSocket:
    """A socket whose system knows no TCP_USER_TIMEOUT."""

    def __init__(self) -> None:
        self.options: dict[int, int] = {}

    def setsockopt(self, level: int, option: int, value: int, /) -> None:
        if option == socket.TCP_USER_TIMEOUT:
            raise OSError(92, "Protocol not available")
        self.options[option] = value


def test_an_option_the_system_refuses_leaves_the_others_set() -> None:
    sock = RefusingSocket()
    keep_alive(sock, 5)
    assert sock.options == {
        socket.SO_KEEPALIVE: 1,
        socket.TCP_KEEPIDLE: 3,
        socket.TCP_KEEPINTVL: 1,
        socket.TCP_KEEPCNT: 2,
    }
