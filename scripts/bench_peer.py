"""The benchmark beside Home Assistant's own `shelly` integration (`scripts/bench --peer`).

Runs in `.venv-bench` (where the `shelly` integration's requirements are installed). Without
`--integration` it is the comparison: it starts the simulator (a process of its own) with busy
Pro 3EMs (noise: every value changes every second, NotifyStatus every second, 40 ms per RPC call)
and quiet ones (no power, voltage and frequency pinned: nothing changes), then runs every case
in a process of its own, alternating the integrations and their order, prints the side-by-side
table and writes it into docs/benchmarks.md (between the peer markers). One case:

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
import contextlib
import cProfile
import datetime as dt
import gc
import json
import logging
import os
import platform
import pstats
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest.mock import PropertyMock, patch

import aiohttp
from aioshelly.rpc_device import RpcDevice
from homeassistant import loader
from homeassistant.const import EVENT_STATE_CHANGED
from homeassistant.const import __version__ as HA_VERSION
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, callback
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import async_test_home_assistant

from scripts.bench import PEER_MARK_END, PEER_MARK_START

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
        self.freshness: list[float] = []  # seconds, of each power sensor's state change

    def reset(self) -> None:
        """Start counting again."""
        self.notifications = self.state_changes = 0
        self.freshness = []


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


async def change_once(control: str, ports: Sequence[int]) -> None:
    """Have each meter change one value and change it back, a notification each time.

    A real meter's readings jitter from its first second; a quiet one has pushed before it
    went still. (A meter that never pushed is read at the interval by this integration.)
    """
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{control}/meters") as response:
            macs = {meter["port"]: meter["mac"] for meter in await response.json()}
        for volts in (230.1, 230.0):
            for port in ports:
                url = f"{control}/meters/{macs[port]}/set_voltage"
                async with session.post(url, json={"channel": "a", "volts": volts}) as response:
                    response.raise_for_status()
            await asyncio.sleep(1.5)  # the simulator notifies every second


async def measure(
    integration: str,
    entities: str,
    ports: Sequence[int],
    warmup_s: float,
    window_s: float,
    *,
    change_once_at: str | None = None,
    profile: Path | None = None,
) -> dict[str, Any]:
    """Set the integration up against the meters and measure one window.

    With `change_once_at` (the simulator's control API), the meters change a value once after
    the setup (see `change_once`). With `profile`, the window is profiled (cProfile) into
    that file: the CPU time then is the profiler's too, of no use beside the other cases.
    """
    profiler = cProfile.Profile() if profile is not None else None
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
            power_ids = {
                state.entity_id
                for state in hass.states.async_all("sensor")
                if state.attributes.get("device_class") == "power"
            }

            @callback
            def state_changed(event: Event[EventStateChangedData]) -> None:
                counts.state_changes += 1
                # Busy meters change their power at every whole second: the time since the
                # last whole second is how old the meter's new value is when it is shown.
                if event.data["entity_id"] in power_ids:
                    counts.freshness.append(time.time() % 1)

            hass.bus.async_listen(EVENT_STATE_CHANGED, state_changed)
            if change_once_at is not None:
                await change_once(change_once_at, ports)
            await asyncio.sleep(warmup_s)
            gc.collect()
            gc.freeze()
            counts.reset()
            began, cpu_before = time.monotonic(), time.process_time()
            if profiler is not None:
                profiler.enable()
            await asyncio.sleep(window_s)
            if profiler is not None:
                profiler.disable()
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
                "freshness_s": counts.freshness,
            }
            await hass.async_stop(force=True)
    if profiler is not None and profile is not None:
        with profile.open("w") as out:
            for order in ("tottime", "cumulative"):
                pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(60)
    return result


# --- the comparison ---------------------------------------------------------------------------

REPO = Path(__file__).resolve().parent.parent
DOCUMENT = REPO / "docs" / "benchmarks.md"
# (meters, entities): the busy meters with each entity set, the quiet meters with the defaults.
CASES = (("busy", "default"), ("busy", "all"), ("quiet", "default"))
# The budgets of issue 18, against Home Assistant's shelly in the same run.
UPDATE_CPU_RATIO = 0.5
QUIET_CPU_MARGIN_MS = 0.05
FRESHNESS_P95_S = 0.150
# A quiet case's window holds one whole read of each integration (both read a pushing meter's
# whole status every minute).
QUIET_WINDOW_S = 60.0


def free_port() -> int:
    """Return a TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def simulator_command(busy: Sequence[int], quiet: Sequence[int], control: int) -> list[str]:
    """Return the command line of the simulator running the busy and the quiet Pro 3EMs."""
    specs = [
        f"pro3em:{port}:mac=A0DD6CC{index:05X}:name=Busy {index + 1}:seed={index}:noise=1"
        for index, port in enumerate(busy)
    ] + [
        f"pro3em:{port}:mac=A0DD6CD{index:05X}:name=Quiet {index + 1}:seed={index}:noise=0"
        for index, port in enumerate(quiet)
    ]
    return [
        sys.executable,
        "-m",
        "simulator",
        f"--control-port={control}",
        "--log-level=WARNING",
        *(arg for spec in specs for arg in ("--meter", spec)),
    ]


async def start_simulator(control: int, meters: int, quiet: Sequence[int]) -> None:
    """Wait for the simulator; make the quiet meters' readings constant."""
    base = f"http://127.0.0.1:{control}"
    async with aiohttp.ClientSession() as session:
        for _ in range(600):
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{base}/meters") as response:
                    if response.status == 200 and len(await response.json()) == meters:
                        break
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError("the simulator did not start")
        for index in range(len(quiet)):
            url = f"{base}/meters/A0DD6CD{index:05X}"
            actions: list[tuple[str, dict[str, Any]]] = [("set_frequency", {"hz": 50.0})]
            for phase in "abc":
                actions.append(("set_power", {"channel": phase, "watts": 0.0}))
                actions.append(("set_voltage", {"channel": phase, "volts": 230.0}))
            for action, arguments in actions:
                async with session.post(f"{url}/{action}", json=arguments) as response:
                    response.raise_for_status()


def run_case(
    integration: str,
    entities: str,
    ports: Sequence[int],
    warmup_s: float,
    window_s: float,
    *,
    change_once_at: str | None = None,
    profile: Path | None = None,
) -> dict[str, Any]:
    """Measure one case in a fresh process; return its result with the machine's load."""
    load_before = os.getloadavg()[0]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "scripts.bench_peer",
            f"--integration={integration}",
            f"--entities={entities}",
            f"--ports={','.join(map(str, ports))}",
            f"--warmup={warmup_s}",
            f"--window={window_s}",
            *([] if change_once_at is None else [f"--change-once-at={change_once_at}"]),
            *([] if profile is None else [f"--profile-file={profile}"]),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{integration}/{entities} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["load"] = (load_before, os.getloadavg()[0])
    return result


@dataclass
class Figures:
    """One integration's pooled figures for one case."""

    cpu_ms: float  # per meter-second
    notifications: float  # per meter-second
    state_changes: float  # per meter-second
    freshness_p95_s: float | None
    entities: int


def pooled(results: Sequence[dict[str, Any]]) -> Figures:
    """Pool the rounds of one case of one integration."""
    meter_seconds = sum(result["meters"] * result["window_s"] for result in results)
    freshness = sorted(value for result in results for value in result["freshness_s"])
    return Figures(
        cpu_ms=1000 * sum(result["cpu_s"] for result in results) / meter_seconds,
        notifications=sum(result["notifications"] for result in results) / meter_seconds,
        state_changes=sum(result["state_changes"] for result in results) / meter_seconds,
        freshness_p95_s=freshness[min(len(freshness) - 1, int(0.95 * len(freshness)))]
        if freshness
        else None,
        entities=results[0]["entities_enabled"] // results[0]["meters"],
    )


def comparison_section(
    results: Sequence[dict[str, Any]], meters: int, rounds: int, window_s: float
) -> tuple[str, list[tuple[str, str, str, bool | None]]]:
    """Return the Markdown section and the budgets (what, measured, limit, met)."""
    figures = {
        (load, entities, integration): pooled(
            [
                result
                for result in results
                if (result["load_case"], result["entities"], result["integration"])
                == (load, entities, integration)
            ]
        )
        for load, entities in CASES
        for integration in INTEGRATIONS
    }
    labels = {
        ("busy", "default"): "busy, default entities",
        ("busy", "all"): "busy, every entity enabled",
        ("quiet", "default"): "nothing changing, default entities",
    }
    rows = [
        "| per meter-second (Pro 3EM) | Home Assistant's `shelly` | this integration | ratio |",
        "|---|---|---|---|",
    ]
    for case, label in labels.items():
        core, ours = figures[(*case, CORE)], figures[(*case, OURS)]
        rows.append(
            f"| CPU, {label} | {core.cpu_ms:.2f} ms | {ours.cpu_ms:.2f} ms "
            f"| {ours.cpu_ms / core.cpu_ms:.2f}x |"
        )
        rows.append(
            f"| state changes (notifications received), {label} "
            f"| {core.state_changes:.1f} ({core.notifications:.2f}) "
            f"| {ours.state_changes:.1f} ({ours.notifications:.2f}) | |"
        )
    busy_core, busy_ours = figures[("busy", "default", CORE)], figures[("busy", "default", OURS)]
    fresh = [busy_core.freshness_p95_s, busy_ours.freshness_p95_s]
    rows.append(
        "| power freshness p95, busy (value changed on the meter to the new state) | "
        + " | ".join("-" if value is None else f"{1000 * value:.0f} ms" for value in fresh)
        + " | |"
    )
    rows.append(
        f"| entities per meter, default / all | {busy_core.entities} / "
        f"{figures[('busy', 'all', CORE)].entities} | {busy_ours.entities} / "
        f"{figures[('busy', 'all', OURS)].entities} | |"
    )
    quiet_core, quiet_ours = (
        figures[("quiet", "default", CORE)],
        figures[("quiet", "default", OURS)],
    )
    budgets: list[tuple[str, str, str, bool | None]] = [
        (
            "CPU per meter update, busy, default entities",
            f"{busy_ours.cpu_ms / busy_core.cpu_ms:.2f}x Home Assistant's shelly",
            f"<= {UPDATE_CPU_RATIO:g}x",
            busy_ours.cpu_ms <= UPDATE_CPU_RATIO * busy_core.cpu_ms,
        ),
        (
            "CPU per meter-second, nothing changing",
            f"{quiet_ours.cpu_ms:.3f} ms ({quiet_core.cpu_ms:.3f} ms for shelly)",
            f"<= {quiet_core.cpu_ms + QUIET_CPU_MARGIN_MS:.3f} ms",
            quiet_ours.cpu_ms <= quiet_core.cpu_ms + QUIET_CPU_MARGIN_MS,
        ),
        (
            "Freshness p95, Gen2+ (pushed), busy",
            "not measured"
            if busy_ours.freshness_p95_s is None
            else f"{1000 * busy_ours.freshness_p95_s:.0f} ms",
            f"<= {1000 * FRESHNESS_P95_S:.0f} ms",
            None
            if busy_ours.freshness_p95_s is None
            else busy_ours.freshness_p95_s <= FRESHNESS_P95_S,
        ),
    ]
    loads = [value for result in results for value in result["load"]]
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    budget_rows = "\n".join(
        f"| {what} | {measured} | {limit} | {'met' if met else 'missed' if met is False else '-'} |"
        for what, measured, limit, met in budgets
    )
    section = f"""{PEER_MARK_START}
## Beside Home Assistant's own `shelly` integration

Measured {when} by `scripts/bench --peer` on {platform.processor() or platform.machine()},
{os.cpu_count()} cores, Python {platform.python_version()}, Home Assistant {HA_VERSION}:
{meters} busy and {meters} quiet simulated Pro 3EMs, every case in a fresh Home Assistant of
its own (the test helpers' light instance: no recorder, no HTTP server), each integration set
up through its own config flow with its default options (this integration: push first, a
pushing meter's whole status read every minute, a dropped link found within the 5 s interval
by TCP keepalive), {rounds} rounds alternating the integrations and their order, a {window_s:.0f} s
window per busy case and a {max(window_s, QUIET_WINDOW_S):.0f} s one per quiet case (one whole
read of each) after a warm-up, asyncio's debug mode off, the garbage collector frozen during
each window. Busy meters: every value changes every second and the meter sends NotifyStatus
every second; quiet meters: no power, voltage and frequency pinned, phase A's voltage changed
once after the setup and back (each meter has pushed, as a real one has from its first
second), then nothing changes.

**The machine is shared** (2 cores; other work may run beside): its 1-minute load average
was {min(loads):.1f} to {max(loads):.1f} during the cases, so the figures are noisy; the
ratios, measured side by side under the same load, are the more telling.

{chr(10).join(rows)}

| budget (issue 18) | measured | limit | |
|---|---|---|---|
{budget_rows}
{PEER_MARK_END}
"""
    return section, budgets


def write_section(section: str, document: Path) -> None:
    """Put the comparison in the document, in place of the last one."""
    text = document.read_text() if document.exists() else ""
    if PEER_MARK_START in text and PEER_MARK_END in text:
        before, _, rest = text.partition(PEER_MARK_START)
        _, _, after = rest.partition(PEER_MARK_END)
        text = before + section.rstrip("\n") + after
    else:
        text = text.rstrip("\n") + "\n\n" + section
    document.write_text(text)


def compare(args: argparse.Namespace) -> int:
    """Run the comparison; return 1 when a budget is missed."""
    busy = [free_port() for _ in range(args.meters)]
    quiet = [free_port() for _ in range(args.meters)]
    control = free_port()
    log = (REPO / ".bench").resolve()
    log.mkdir(exist_ok=True)
    with (log / "peer-simulator.log").open("wb") as out:
        simulator = subprocess.Popen(
            simulator_command(busy, quiet, control), cwd=REPO, stdout=out, stderr=out
        )
    try:
        asyncio.run(start_simulator(control, 2 * args.meters, quiet))
        results = []
        for round_index in range(args.rounds):
            for load, entities in CASES:
                order = INTEGRATIONS if round_index % 2 == 0 else INTEGRATIONS[::-1]
                for integration in order:
                    ports = busy if load == "busy" else quiet
                    quiet_case = load == "quiet"
                    profile = (
                        log / f"peer-profile-{load}-{entities}-{integration}.txt"
                        if args.profile and round_index == 0
                        else None
                    )
                    result = run_case(
                        integration,
                        entities,
                        ports,
                        args.warmup,
                        max(args.window, QUIET_WINDOW_S) if quiet_case else args.window,
                        change_once_at=f"http://127.0.0.1:{control}" if quiet_case else None,
                        profile=profile,
                    )
                    result["load_case"] = load
                    per_meter_s = result["cpu_s"] / (result["meters"] * result["window_s"])
                    print(
                        f"round {round_index + 1} {load:5} {entities:7} {integration:13} "
                        f"cpu {1000 * per_meter_s:.2f} "
                        f"ms/meter-s, {result['state_changes']} changes, "
                        f"{result['notifications']} notifications, load {result['load'][1]:.1f}",
                        flush=True,
                    )
                    results.append(result)
    finally:
        simulator.terminate()
        simulator.wait(10)
    section, budgets = comparison_section(results, args.meters, args.rounds, args.window)
    print(section)
    (log / "peer-results.json").write_text(json.dumps(results))
    if args.profile:
        print(f"Profiles of the first round: {log}/peer-profile-*.txt (CPU figures not comparable)")
    elif args.write:
        write_section(section, DOCUMENT)
        print(f"Written to {DOCUMENT}")
    return 1 if any(met is False for *_, met in budgets) else 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Return the command line's options."""
    parser = argparse.ArgumentParser(prog="python -m scripts.bench_peer", description=__doc__)
    parser.add_argument(
        "--integration", choices=INTEGRATIONS, help="measure one case (default: compare)"
    )
    parser.add_argument("--entities", choices=ENTITY_SETS, default="default")
    parser.add_argument(
        "--ports",
        type=lambda text: [int(port) for port in text.split(",")],
        default=[],
        help="one case's simulated meters' ports on 127.0.0.1, comma-separated",
    )
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before the window")
    parser.add_argument("--window", type=float, default=30.0, help="seconds measured")
    parser.add_argument("--meters", type=int, default=10, help="busy (and quiet) meters")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of every case")
    parser.add_argument(
        "--no-write", dest="write", action="store_false", help="print, write nothing"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile every case of the first round (cProfile) into .bench/peer-profile-*.txt; "
        "the profiler slows them down, so nothing is written into docs/benchmarks.md",
    )
    parser.add_argument("--profile-file", type=Path, help="profile one case into this file")
    parser.add_argument(
        "--change-once-at",
        help="the simulator's control API: each meter changes a value once after the setup",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure one case and print it as JSON."""
    args = parse_args(argv)
    if args.integration is None:
        return compare(args)
    logging.basicConfig(level=logging.ERROR)
    result = asyncio.run(
        measure(
            args.integration,
            args.entities,
            args.ports,
            args.warmup,
            args.window,
            change_once_at=args.change_once_at,
            profile=args.profile_file,
        ),
        debug=False,
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
