"""TCP keepalive of a meter's connection: a link that dropped is known lost within a limit.

A cable pulled, power or Wi-Fi lost: the meter closes nothing, so its connection looks open
while nothing comes. The kernel probes a connection silent for two thirds of the limit and
drops it once it stayed unanswered for the whole limit, at no cost to Home Assistant's event
loop (a WebSocket ping at that pace cost about 0.4 ms of CPU each on a quiet meter).
"""

from __future__ import annotations

import contextlib
import math
import socket
from typing import Protocol

_PROBE_CHECKS = 6  # probes sent in a limit, at most (one a second, at least)


class Socket(Protocol):
    """What is set on a connection's socket (asyncio hands out a TransportSocket)."""

    def setsockopt(self, level: int, option: int, value: int, /) -> None:
        """Set a socket option."""


def keepalive_options(alive_within: float) -> list[tuple[int, int, int]]:
    """Return the socket options (level, option, value) that drop a link silent that long.

    Linux counts the keepalive settings in whole seconds, so a limit under 2 s works out at
    about 2 s. Where TCP_USER_TIMEOUT is missing (not Linux), the probe count ends it instead;
    where the keepalive settings are missing, the system's own (hours) apply.
    """
    idle = max(1, int(alive_within * 2 / 3))
    interval = max(1, int(alive_within / _PROBE_CHECKS))
    probes = max(1, math.ceil((alive_within - idle) / interval))
    wanted = [
        ("SO_KEEPALIVE", socket.SOL_SOCKET, 1),
        ("TCP_KEEPIDLE", socket.IPPROTO_TCP, idle),
        ("TCP_KEEPINTVL", socket.IPPROTO_TCP, interval),
        ("TCP_KEEPCNT", socket.IPPROTO_TCP, probes),
        # Also ends a connection whose sent data stays unacknowledged that long.
        ("TCP_USER_TIMEOUT", socket.IPPROTO_TCP, max(1, round(alive_within * 1000))),
    ]
    return [
        (level, option, value)
        for name, level, value in wanted
        if (option := getattr(socket, name, None)) is not None
    ]


def keep_alive(sock: Socket, alive_within: float) -> None:
    """Have the kernel drop this connection once it stays silent for `alive_within` seconds.

    An option the system refuses is left at its default: the connection works without it.
    """
    for level, option, value in keepalive_options(alive_within):
        with contextlib.suppress(OSError):
            sock.setsockopt(level, option, value)
