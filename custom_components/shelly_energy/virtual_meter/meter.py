"""A virtual meter: its identity, the value it may serve, its RPC frames and who asked what.

Transports hand every request to `VirtualMeter.call` (a method and its params, as HTTP GET
carries them) or `VirtualMeter.frame` (a JSON-RPC frame, as UDP, WebSocket and HTTP POST carry
it). A method whose reply carries the power gets no answer at all while nothing may be served
(no reading, stale, implausible, paused): silence is what makes a battery fall back to its own
safe behaviour. Everything else (identity, configuration) is always answered, so pairing works.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, NamedTuple

from .guard import GridReading, GuardSettings, Refusal, ServedValue, ValueGuard
from .identity import Identity
from .replies import VALUE_METHODS, Replies, RpcError, dumps

RECENT_REQUESTS: Final = 20
MINUTE_S: Final = 60


class Transport(StrEnum):
    """How a request reached the meter."""

    UDP = "udp"
    HTTP = "http"
    WEBSOCKET = "websocket"


class RequestSeen(NamedTuple):
    """One request, for diagnostics."""

    time: float  # unix s
    client: str  # the client's IP address
    transport: Transport
    method: str
    answered: bool


@dataclass(frozen=True, slots=True)
class MinuteStats:
    """The requests of the last complete minute and the clients that sent them."""

    requests: int
    clients: frozenset[str]


class _RequestCounter:
    """Count requests and clients per minute of the monotonic clock."""

    def __init__(self) -> None:
        self._minute: int | None = None
        self._requests = 0
        self._clients: set[str] = set()
        self._last = MinuteStats(0, frozenset())

    def _roll(self, now: float) -> None:
        minute = int(now // MINUTE_S)
        if minute == self._minute:
            return
        if self._minute is not None and minute == self._minute + 1:
            self._last = MinuteStats(self._requests, frozenset(self._clients))
        else:  # the first minute, or whole minutes without requests passed
            self._last = MinuteStats(0, frozenset())
        self._minute = minute
        self._requests = 0
        self._clients = set()

    def add(self, now: float, client: str) -> None:
        self._roll(now)
        self._requests += 1
        self._clients.add(client)

    def last_minute(self, now: float) -> MinuteStats:
        self._roll(now)
        return self._last


class VirtualMeter:
    """One virtual Shelly meter: answers requests from the latest value, never waits."""

    def __init__(
        self,
        identity: Identity,
        settings: GuardSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """Serve as ``identity``; ``clock`` times readings (monotonic), ``wall_clock`` the rest."""
        self.identity = identity
        self.guard = ValueGuard(settings)
        self.replies = Replies(identity, clock=wall_clock)
        self.paused = False
        self.recent: deque[RequestSeen] = deque(maxlen=RECENT_REQUESTS)
        self.requests_total = 0
        self._clock = clock
        self._wall_clock = wall_clock
        self._counter = _RequestCounter()
        self._frame_head = f'{{"id":%s,"src":{json.dumps(identity.device_id)},"dst":%s'

    def update(self, reading: GridReading | None) -> None:
        """Take the site's newest grid reading (None: the site has none now)."""
        self.guard.update(reading)

    def state(self) -> ServedValue | Refusal:
        """Return the value served now, or why nothing is."""
        if self.paused:
            return Refusal.PAUSED
        return self.guard.check(self._clock())

    def last_minute(self) -> MinuteStats:
        """Return the requests and clients of the last complete minute."""
        return self._counter.last_minute(self._clock())

    def call(
        self, method: str, params: Mapping[str, Any], *, client: str, transport: Transport
    ) -> str | None:
        """Return a method's JSON result; None: no answer (nothing may be served now).

        Raises RpcError for an unknown method or a wrong argument.
        """
        value: ServedValue | None = None
        if method in VALUE_METHODS:
            state = self.state()
            if not isinstance(state, ServedValue):
                self._seen(client, transport, method, answered=False)
                return None
            value = state
        self._seen(client, transport, method, answered=True)
        return self.replies.answer(method, params, value)

    def frame(self, data: bytes | str, *, client: str, transport: Transport) -> str | None:
        """Return the reply frame to a JSON-RPC request frame; None: no reply.

        Requests need no `src` or `params` (Marstek batteries send neither `src` nor anything
        but `id`, `method` and `params`); the reply echoes `id` and addresses `dst` to the
        request's `src`, or "unknown". Frames that are not JSON-RPC requests are ignored.
        """
        try:
            request = json.loads(data.decode() if isinstance(data, bytes) else data)
        except ValueError:  # UnicodeDecodeError is one too
            return None
        if not isinstance(request, dict) or not isinstance(method := request.get("method"), str):
            return None
        params = request.get("params")
        frame_id = request.get("id")
        src = request.get("src")
        head = self._frame_head % (
            str(frame_id) if type(frame_id) is int else json.dumps(frame_id),
            json.dumps(src) if isinstance(src, str) else '"unknown"',
        )
        try:
            result = self.call(
                method,
                params if isinstance(params, dict) else {},
                client=client,
                transport=transport,
            )
        except RpcError as err:
            return f'{head},"error":{dumps({"code": err.code, "message": err.message})}}}'
        if result is None:
            return None
        return f'{head},"result":{result}}}'

    def _seen(self, client: str, transport: Transport, method: str, *, answered: bool) -> None:
        self.requests_total += 1
        self._counter.add(self._clock(), client)
        self.recent.append(RequestSeen(self._wall_clock(), client, transport, method, answered))
