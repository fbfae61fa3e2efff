"""Home batteries polling a virtual meter at a fixed rate, for the benchmark (a process of its own).

    python -m scripts.bench_batteries --udp-port P --http-port Q --rate 100 --seconds 20

Requests go out at an even pace, each on its own (a slow reply never delays the next request):
half as Marstek batteries send them (`EM.GetStatus` datagrams over UDP), two fifths over a
WebSocket as Hoymiles batteries poll, one tenth as Growatt's `GET /rpc/Shelly.GetStatus?esp`.
Each reply is timed from just before the request is sent to its arrival, on loopback. Prints
one JSON object: per transport the requests sent, the replies, and their latencies (s).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

LOOPBACK = "127.0.0.1"
REPLY_LIMIT_S = 1.0  # a reply later than this counts as none
# Per 10 requests: 5 over UDP, 4 over the WebSocket, 1 over HTTP.
MIX = ("udp", "ws", "udp", "ws", "udp", "http", "udp", "ws", "udp", "ws")


class _Udp(asyncio.DatagramProtocol):
    """Match each reply datagram to its request by id."""

    def __init__(self) -> None:
        self.waiting: dict[int, asyncio.Future[float]] = {}

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        future = self.waiting.pop(json.loads(data)["id"], None)
        if future is not None and not future.done():
            future.set_result(time.perf_counter())


class Batteries:
    """The requests in flight and what came back."""

    def __init__(self, udp_port: int, http_port: int, session: aiohttp.ClientSession) -> None:
        self.udp_port = udp_port
        self.url = f"http://{LOOPBACK}:{http_port}"
        self.session = session
        self.sent = dict.fromkeys(("udp", "ws", "http"), 0)
        self.latencies: dict[str, list[float]] = {"udp": [], "ws": [], "http": []}
        self.ids = itertools.count(1)
        self.udp: _Udp | None = None
        self.udp_transport: asyncio.DatagramTransport | None = None
        self.websocket: aiohttp.ClientWebSocketResponse | None = None
        self.ws_waiting: dict[int, asyncio.Future[float]] = {}

    async def open(self) -> None:
        """Open the UDP socket and the WebSocket."""
        loop = asyncio.get_running_loop()
        self.udp_transport, self.udp = await loop.create_datagram_endpoint(
            _Udp, local_addr=(LOOPBACK, 0)
        )
        self.websocket = await self.session.ws_connect(f"{self.url}/rpc")

    async def read_websocket(self) -> None:
        """Hand every WebSocket reply to the request waiting for it."""
        assert self.websocket is not None
        async for message in self.websocket:
            future = self.ws_waiting.pop(json.loads(message.data)["id"], None)
            if future is not None and not future.done():
                future.set_result(time.perf_counter())

    async def request(self, transport: str) -> None:
        """Send one request and record its latency (nothing when no reply comes in time)."""
        request_id = next(self.ids) % 65535 + 1
        self.sent[transport] += 1
        loop = asyncio.get_running_loop()
        arrived: asyncio.Future[float] = loop.create_future()
        sent = time.perf_counter()
        try:
            if transport == "http":
                async with self.session.get(f"{self.url}/rpc/Shelly.GetStatus?esp") as response:
                    await response.read()
                    if response.status == 200:
                        arrived.set_result(time.perf_counter())
            elif transport == "udp":
                assert self.udp is not None and self.udp_transport is not None
                self.udp.waiting[request_id] = arrived
                self.udp_transport.sendto(
                    f'{{"id":{request_id},"method":"EM.GetStatus","params":{{"id":0}}}}'.encode(),
                    (LOOPBACK, self.udp_port),
                )
            else:
                assert self.websocket is not None
                self.ws_waiting[request_id] = arrived
                await self.websocket.send_str(
                    json.dumps(
                        {"id": request_id, "src": "bench", "method": "EM.GetStatus", "params": {}}
                    )
                )
            async with asyncio.timeout(REPLY_LIMIT_S):
                self.latencies[transport].append(await arrived - sent)
        except (TimeoutError, aiohttp.ClientError):
            pass


async def run(udp_port: int, http_port: int, rate: float, seconds: float) -> dict[str, Any]:
    """Poll at ``rate`` requests per second for ``seconds``; return what came back."""
    async with aiohttp.ClientSession() as session:
        batteries = Batteries(udp_port, http_port, session)
        await batteries.open()
        reader = asyncio.create_task(batteries.read_websocket())
        tasks: set[asyncio.Task[None]] = set()
        started = time.perf_counter()
        for index in range(int(rate * seconds)):
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(batteries.request(MIX[index % len(MIX)]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
        assert batteries.websocket is not None
        await batteries.websocket.close()
        reader.cancel()
        assert batteries.udp_transport is not None
        batteries.udp_transport.close()
    return {"seconds": elapsed, "sent": batteries.sent, "latencies": batteries.latencies}


def main(argv: Sequence[str] | None = None) -> None:
    """Run the batteries; print their results as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--udp-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(run(args.udp_port, args.http_port, args.rate, args.seconds))))


if __name__ == "__main__":
    main()
