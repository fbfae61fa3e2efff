"""JSON-RPC over UDP, as Marstek batteries poll a Shelly meter: a datagram in, one out.

The battery broadcasts its first request to find meters, then sends to the one chosen; every
reply goes to the datagram's source address and port. Replies are computed at once from the
value in memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

_LOGGER = logging.getLogger(__name__)

# Answer a datagram's text from a client's address; None: no reply.
type DatagramHandler = Callable[[bytes, str], str | None]


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, handle: DatagramHandler) -> None:
        self._handle = handle
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self._transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str | bytes | int, ...]) -> None:
        reply = self._handle(data, str(addr[0]))
        if reply is not None and self._transport is not None:
            self._transport.sendto(reply.encode(), addr)

    def error_received(self, exc: Exception) -> None:
        # A client that went away (ICMP port unreachable): nothing to do.
        _LOGGER.debug("UDP error: %s", exc)


class UdpServer:
    """Listen on one UDP port, on one or more local addresses."""

    def __init__(self, handle: DatagramHandler, hosts: Sequence[str], port: int) -> None:
        """Prepare to listen on ``port`` (0: any free port) of every address in ``hosts``."""
        self._handle = handle
        self._hosts = tuple(hosts)
        self.port = port
        self._transports: list[asyncio.DatagramTransport] = []

    async def start(self) -> None:
        """Bind every address; raise OSError (and bind nothing) when one cannot be bound."""
        loop = asyncio.get_running_loop()
        try:
            for host in self._hosts:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _Protocol(self._handle), local_addr=(host, self.port)
                )
                self._transports.append(transport)
                # With port 0 the first address picks a free port; the others take the same.
                self.port = transport.get_extra_info("sockname")[1]
        except OSError:
            self.close()
            raise

    def close(self) -> None:
        """Stop listening."""
        for transport in self._transports:
            transport.close()
        self._transports = []
