"""A meter's link dropped, for real: run in a network namespace of its own (`unshare -rn`).

Serves a Pro 3EM on loopback, connects two RPC clients (one with TCP keepalive, one without),
then takes loopback down: packets go nowhere, as when a cable is pulled, and no connection is
closed. Prints how long each client took to know its connection lost, as JSON.
Run by tests/meter/test_keepalive.py.
"""

from __future__ import annotations

import asyncio
import json
import sys

import aiohttp

from custom_components.shelly_energy.meter.address import Address
from custom_components.shelly_energy.meter.client import Credentials
from custom_components.shelly_energy.meter.rpc import RpcClient
from simulator import Clock, MeterServer, SimulatedMeter

ALIVE_WITHIN_S = 3.0
WAIT_S = ALIVE_WITHIN_S + 3.0  # then the client without keepalive must still believe it open


async def loopback(state: str) -> None:
    """Take loopback down or up."""
    process = await asyncio.create_subprocess_exec("ip", "link", "set", "lo", state)
    if await process.wait() != 0:
        raise RuntimeError(f"ip link set lo {state} failed")


async def lost_after(alive_within: float | None) -> dict[str, float | None]:
    """Return when each client knew its connection lost, in seconds after the link dropped."""
    meter = SimulatedMeter("pro3em", clock=Clock.manual(), seed=1)
    server = MeterServer(meter)
    await server.start()
    loop = asyncio.get_running_loop()
    lost: dict[str, float | None] = {"keepalive": None, "without": None}
    dropped_at = 0.0
    async with aiohttp.ClientSession() as session:
        clients = []
        for name, within in (("keepalive", alive_within), ("without", None)):
            client = RpcClient(
                session,
                Address("127.0.0.1", server.port),
                Credentials(None, None),
                alive_within=within,
            )

            def on_lost(name: str = name) -> None:
                lost[name] = loop.time() - dropped_at

            client.listen(lambda _snapshot: None, on_lost)
            await client.connect()
            await client.fetch()
            clients.append(client)
        await asyncio.sleep(0.5)
        await loopback("down")
        dropped_at = loop.time()
        await asyncio.sleep(WAIT_S)
        await loopback("up")
        for client in clients:
            await client.close()
    await server.stop()
    return lost


if __name__ == "__main__":
    print(json.dumps(asyncio.run(lost_after(float(sys.argv[1])))))
