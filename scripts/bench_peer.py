"""One case of the benchmark's comparison with Home Assistant's own `shelly` integration.

`scripts/bench` runs this in `.venv-bench` (where the `shelly` integration's requirements are
installed), in a process of its own for every case, so that each case has a fresh Home Assistant:

    python -m scripts.bench_peer --integration shelly --entities default --ports 8001,8002

It sets Home Assistant up in process (the test helpers' light instance: state machine, event
bus, registries, no recorder, no HTTP server), adds one meter per port through the integration's
own config flow, waits out a warm-up, then measures a window with asyncio's debug mode off and
the garbage collector frozen: the process's CPU time, the meters' NotifyStatus notifications
(aioshelly counts the same for both integrations), and the state changes. It prints one JSON
object.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from unittest.mock import PropertyMock, patch

from aioshelly.rpc_device import RpcDevice
from homeassistant import loader
from homeassistant.const import EVENT_STATE_CHANGED
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import async_test_home_assistant

CORE = "shelly"
OURS = "shelly_energy"
INTEGRATIONS = (CORE, OURS)
ENTITY_SETS = ("default", "all")


class Counts:
    """What happened in the measured window."""

    def __init__(self) -> None:
        """Start at zero."""
        self.notifications = 0
        self.state_changes = 0

    def reset(self) -> None:
        """Start counting again."""
        self.notifications = self.state_changes = 0


@contextmanager
def counting_notifications(counts: Counts) -> Iterator[None]:
    """Count the NotifyStatus notifications aioshelly receives (for either integration)."""
    original = RpcDevice._on_notification

    def counted(device: RpcDevice, source: Any, method: str, params: Any = None) -> None:
        if method == "NotifyStatus":
            counts.notifications += 1
        original(device, source, method, params)

    with patch.object(RpcDevice, "_on_notification", counted):
        yield


@contextmanager
def entity_set(entities: str) -> Iterator[None]:
    """Create the integration's default entities, or every entity it has."""
    if entities == "default":
        yield
        return
    with patch(
        "homeassistant.helpers.entity.Entity.entity_registry_enabled_default",
        new_callable=PropertyMock,
        return_value=True,
    ):
        yield


async def add_meter(hass: HomeAssistant, integration: str, port: int) -> None:
    """Add a meter on 127.0.0.1 with the integration's config flow, as a user would."""
    flow = hass.config_entries.flow
    result = await flow.async_init(integration, context={"source": "user"})
    if result["type"] == "menu":  # this integration asks what to add first
        result = await flow.async_configure(result["flow_id"], {"next_step_id": "meter"})
    user_input = (
        {"host": "127.0.0.1", "port": port}
        if integration == CORE
        else {"host": f"127.0.0.1:{port}"}
    )
    result = await flow.async_configure(result["flow_id"], user_input)
    if result["type"] != "create_entry":
        raise RuntimeError(f"adding 127.0.0.1:{port} to {integration} ended with {result}")


async def measure(
    integration: str, entities: str, ports: Sequence[int], warmup_s: float, window_s: float
) -> dict[str, Any]:
    """Set the integration up against the meters and measure one window."""
    counts = Counts()
    with (
        tempfile.TemporaryDirectory(prefix="bench-peer-") as config_dir,
        counting_notifications(counts),
        entity_set(entities),
    ):
        async with async_test_home_assistant(config_dir=config_dir) as hass:
            hass.data.pop(loader.DATA_CUSTOM_COMPONENTS, None)  # custom integrations allowed
            # Both resolve hosts through Home Assistant's client session, which needs it.
            await async_setup_component(hass, "network", {})
            for port in ports:
                await add_meter(hass, integration, port)
            await hass.async_block_till_done()

            @callback
            def state_changed(_event: Event) -> None:
                counts.state_changes += 1

            hass.bus.async_listen(EVENT_STATE_CHANGED, state_changed)
            await asyncio.sleep(warmup_s)
            gc.collect()
            gc.freeze()
            counts.reset()
            began, cpu_before = time.monotonic(), time.process_time()
            await asyncio.sleep(window_s)
            cpu = time.process_time() - cpu_before
            window = time.monotonic() - began
            gc.unfreeze()
            result = {
                "integration": integration,
                "entities": entities,
                "meters": len(ports),
                "window_s": window,
                "cpu_s": cpu,
                "notifications": counts.notifications,
                "state_changes": counts.state_changes,
                "entities_enabled": len(hass.states.async_all()),
            }
            await hass.async_stop(force=True)
    return result


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Return the command line's options."""
    parser = argparse.ArgumentParser(prog="python -m scripts.bench_peer", description=__doc__)
    parser.add_argument("--integration", choices=INTEGRATIONS, required=True)
    parser.add_argument("--entities", choices=ENTITY_SETS, default="default")
    parser.add_argument(
        "--ports",
        type=lambda text: [int(port) for port in text.split(",")],
        required=True,
        help="the simulated meters' ports on 127.0.0.1, comma-separated",
    )
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before the window")
    parser.add_argument("--window", type=float, default=30.0, help="seconds measured")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure one case and print it as JSON."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    result = asyncio.run(
        measure(args.integration, args.entities, args.ports, args.warmup, args.window),
        debug=False,
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
