"""The benchmark (scripts/bench): what the integration costs, checked against its budgets.

Runs, on 127.0.0.1 only:

1. the Emoncms drain: a one-day backlog at 10 s for 10 meters (86,400 samples) queued in the
   integration's own `ExportQueue` and delivered by its `EmoncmsSender` to the Emoncms double
   (`python -m simulator.emoncms`, a process of its own);
1b. the virtual meter: its UDP and HTTP/WebSocket servers in this process, polled by fake
   batteries (`python -m scripts.bench_batteries`, a process of its own) at 100 requests/s;
2. the simulator (a process of its own, so its CPU is not counted) with Pro 3EM (three-phase)
   and Gen1 Shelly EM meters alternating, and one Pro 3EM holding 60 days of records;
3. a headless Home Assistant (`scripts/hass_instance.py`) with the integration and the probe
   (`scripts/bench_probe/`, which measures from inside); meters are added through the real
   config flow over the REST API and set to poll every second in their options;
4. the day-one history import of the 60-day meter, timed from the flow's first request to the
   `shelly_energy_history_imported` event, with the probe watching the event loop's lag;
5. polling with 1, 10 and 50 meters: after a warm-up, a window in which the probe times each
   update and stamps the state changes, and this script reads the process's CPU time and RSS
   from /proc (Linux).

It prints a table, writes it with the machine and the method to docs/benchmarks.md (quick runs
to .bench/benchmarks.md) and exits 1 when a budget is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import itertools
import json
import math
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
from homeassistant.const import __version__ as HA_VERSION

from custom_components.shelly_energy.export.emoncms import EmoncmsClient, EmoncmsSender
from custom_components.shelly_energy.export.queue import ExportQueue
from custom_components.shelly_energy.export_entry import meter_values, queue_bound
from custom_components.shelly_energy.meter.models import model_name
from custom_components.shelly_energy.meter.snapshot import (
    PHASE_IDS,
    TOTAL_ID,
    ChannelKind,
    ChannelReading,
    MeterSnapshot,
)
from custom_components.shelly_energy.virtual_meter.guard import GridReading, GuardSettings
from custom_components.shelly_energy.virtual_meter.http import HttpServer
from custom_components.shelly_energy.virtual_meter.identity import Identity, MeterModel, new_mac
from custom_components.shelly_energy.virtual_meter.meter import Transport, VirtualMeter
from custom_components.shelly_energy.virtual_meter.udp import UdpServer
from scripts.hass_instance import (
    HEADLESS_COMPONENTS,
    REPO,
    Credentials,
    HassApi,
    free_port,
    prepare_config,
    skip_onboarding_integrations,
    start_hass,
)

DOMAIN = "shelly_energy"
PROBE = REPO / "scripts" / "bench_probe"
WORK_DIR = REPO / ".bench"
HISTORY_EVENT = "shelly_energy_history_imported"
# Where docs/benchmarks.md holds the comparison of scripts/bench --peer (scripts/bench_peer.py).
PEER_MARK_START = "<!-- peer comparison: written by scripts/bench --peer -->"
PEER_MARK_END = "<!-- end of the peer comparison -->"
POLL_INTERVAL_S = 1
PRO_3EM = model_name("SPEM-003CEBEU")
HISTORY_DAYS = 60
HISTORY_MAC = "A0DD6CBE0060"
ADD_CONCURRENCY = 5  # config flows at a time
RSS_EVERY_S = 5.0
# Home Assistant compiles short-term statistics at every 5 minutes of the clock (+10 s); the
# first compile over 5 full minutes of all the meters' states takes the memory every later one
# reuses, so the memory window starts after it (and the compile's few seconds).
STATISTICS_PERIOD_S = 300
STATISTICS_SETTLED_S = 45
# The recorder gives SQLite a 16 MiB page cache (PRAGMA cache_size = -16384): while a fresh
# database is smaller, the cache grows with it. A real installation's database is far larger, so
# the memory window starts once the benchmark's is too.
RECORDER_CACHE_BYTES = 16 * 1024 * 1024
DATABASE_LIMIT_S = 3600.0
RSS_AVERAGED_S = 30.0  # the start and end RSS of a window are averages over this long
MIB = 1024 * 1024
# Home Assistant's container images (and so Home Assistant OS) run it with jemalloc, set so.
JEMALLOC_CONF = "background_thread:true,metadata_thp:auto,dirty_decay_ms:20000,muzzy_decay_ms:20000"

# The backlog of the drain: one day at 10 s for 10 meters.
DRAIN_NODES = 10
DRAIN_INTERVAL_S = 10
DRAIN_SAMPLES_PER_NODE = 86_400 // DRAIN_INTERVAL_S
DRAIN_WRITE_KEY = "b" * 32  # a throwaway key of a loopback-only double
DRAIN_READ_KEY = "c" * 32

# The virtual meter: requests per second, and how long the batteries poll (quick, full run).
VIRTUAL_METER_RATE = 100.0
VIRTUAL_METER_WINDOW_S = {False: 20.0, True: 60.0}


@dataclass(frozen=True)
class Plan:
    """How long each part runs."""

    meter_counts: tuple[int, ...]
    warmups_s: tuple[float, ...]  # before each window, after the meters were added
    windows_s: tuple[float, ...]
    history_timeout_s: float
    full: bool

    def only(self, meter_counts: Sequence[int]) -> Plan:
        """Return the plan for some of its meter counts."""
        unknown = set(meter_counts) - set(self.meter_counts)
        if unknown:
            raise SystemExit(f"--meters: choose among {self.meter_counts}, not {sorted(unknown)}")
        kept = [index for index, count in enumerate(self.meter_counts) if count in meter_counts]
        return replace(
            self,
            meter_counts=tuple(self.meter_counts[index] for index in kept),
            warmups_s=tuple(self.warmups_s[index] for index in kept),
            windows_s=tuple(self.windows_s[index] for index in kept),
        )


FULL = Plan((1, 10, 50), (30, 30, 180), (120, 120, 600), 180, full=True)
QUICK = Plan((1, 10, 50), (10, 10, 20), (20, 20, 60), 180, full=False)


# Budgets (issue 6 and issue 7).
UPDATE_CPU_MEDIAN_MS = 2.0
PROCESS_CPU_PERCENT_AT_50 = 25.0  # issue 18: busy meters, recorder on
FRESHNESS_MARGIN_S = 0.3
MEMORY_GROWTH_MIB = 5.0
DRAIN_S = 30.0
HISTORY_IMPORT_S = 60.0
LOOP_BLOCK_MS = 50.0
VIRTUAL_METER_LATENCY_P99_MS = 5.0  # issue 19
VIRTUAL_METER_CPU_PERCENT = 5.0  # of one core, at VIRTUAL_METER_RATE


@dataclass
class PollingResult:
    """One window of polling with `meters` meters."""

    meters: int
    warmup_s: float
    window_s: float
    update_cpu_s: dict[str, list[float]]  # model -> CPU seconds of each update
    process_cpu_s: float
    freshness_s: list[float]
    rss_start: float  # bytes, averaged (see RSS_AVERAGED_S)
    rss_end: float
    rss_peak: float
    database_start: int  # bytes of the recorder's database file
    database_end: int

    @property
    def updates(self) -> int:
        """Return how many updates the window saw."""
        return sum(len(values) for values in self.update_cpu_s.values())

    @property
    def process_cpu_percent(self) -> float:
        """Return the process's CPU use, in % of one core."""
        return 100 * self.process_cpu_s / self.window_s


@dataclass
class DrainResult:
    """The drain of the backlog."""

    samples: int
    sent: int
    seconds: float
    sender_cpu_s: float  # CPU of the sending process (the double's is its own)


@dataclass
class VirtualMeterResult:
    """Fake batteries polling the virtual meter."""

    rate: float  # requests per second asked for
    seconds: float  # how long the batteries polled
    sent: dict[str, int]  # by transport
    latencies: dict[str, list[float]]  # s, by transport: one per reply
    cpu_s: float  # CPU of the serving process meanwhile (the batteries' is their own)
    load: float  # the machine's load average over the last minute, at the end
    handling: list[float]  # s: each request's handling in the server, parsing to reply text

    @property
    def replies(self) -> int:
        """Return how many requests were answered."""
        return sum(len(values) for values in self.latencies.values())

    @property
    def all_latencies(self) -> list[float]:
        """Return every reply's latency."""
        return [value for values in self.latencies.values() for value in values]

    @property
    def cpu_percent(self) -> float:
        """Return the serving process's CPU use, in % of one core."""
        return 100 * self.cpu_s / self.seconds


@dataclass
class HistoryResult:
    """The day-one import, or why it was not measured."""

    seconds: float | None = None
    max_loop_block_s: float | None = None
    full_collections: list[float] = field(default_factory=list)  # Python's GC pauses (s)
    event: dict[str, Any] = field(default_factory=dict)
    reason: str = ""


@dataclass
class Report:
    """Everything one run measured."""

    plan: Plan
    started: dt.datetime
    allocator: str  # Home Assistant's memory allocator: "jemalloc" or "glibc"
    drain: DrainResult | None = None
    virtual_meter: VirtualMeterResult | None = None
    history: HistoryResult | None = None
    polling: list[PollingResult] = field(default_factory=list)
    memory_growth: dict[str, Any] = field(default_factory=dict)  # the probe's, with tracemalloc
    profile: str = ""  # of the meter updates in the last window, when asked for


# --- the machine and the processes ------------------------------------------------------------


def jemalloc() -> Path | None:
    """Return the jemalloc library of this machine, if it has one (Debian: libjemalloc2)."""
    for directory in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/local/lib"):
        if (library := Path(directory) / "libjemalloc.so.2").exists():
            return library
    return None


def allocator_environment(allocator: str) -> dict[str, str]:
    """Return the environment that runs Home Assistant with this allocator."""
    if allocator == "glibc":
        return {}
    library = jemalloc()
    if library is None:
        raise SystemExit("--allocator jemalloc: no libjemalloc.so.2 (apt install libjemalloc2)")
    return {"LD_PRELOAD": str(library), "MALLOC_CONF": JEMALLOC_CONF}


def machine() -> dict[str, str]:
    """Describe this machine."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return {
        "CPU": cpu,
        "Cores": str(os.cpu_count()),
        "RAM": memory,
        "OS": platform.platform(),
        "Python": platform.python_version(),
        "Home Assistant": HA_VERSION,
    }


def cpu_seconds(pid: int) -> float:
    """Return the user + system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    # After the command: state is field 3, utime 14 and stime 15 (1-based, man proc).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Return the resident set size of a process (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def file_bytes(path: Path) -> int:
    """Return the size of a file (the recorder's database, without its write-ahead log).

    The main file grows only as SQLite moves pages out of the log, so it can read 0 while the
    log holds a young database's rows: a conservative measure of the pages the cache can hold.
    """
    return path.stat().st_size


def statistics_settled(after: float) -> float:
    """Return when the first statistics compile over 5 minutes of states since `after` is done."""
    compile_at = (
        math.ceil((after + STATISTICS_PERIOD_S) / STATISTICS_PERIOD_S) * STATISTICS_PERIOD_S
    )
    return compile_at + STATISTICS_SETTLED_S


async def memory_warm_up(database: Path, added: float) -> None:
    """Wait until the recorder's caches are warm: see RECORDER_CACHE_BYTES and STATISTICS_*.

    That is once the database outgrew the page cache and the first compile over 5 full minutes
    of every meter's states since `added` is behind; then until 45 s after the next compile, so
    that every window starts at the same point of the recorder's 5-minute cycle.
    """
    await asyncio.sleep(max(statistics_settled(added) - time.time(), 0))

    async def outgrown() -> bool:
        return file_bytes(database) >= RECORDER_CACHE_BYTES

    await wait_for(outgrown, DATABASE_LIMIT_S, "the recorder's database stayed small")
    now = time.time()
    next_compile = math.ceil(now / STATISTICS_PERIOD_S) * STATISTICS_PERIOD_S
    await asyncio.sleep(next_compile + STATISTICS_SETTLED_S - now)


def percentile(values: Sequence[float], percent: int) -> float:
    """Return a percentile (linear interpolation between the closest ranks)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1]


@contextlib.contextmanager
def running(process: subprocess.Popen[bytes], name: str) -> Iterator[subprocess.Popen[bytes]]:
    """Stop a process we started when leaving, politely first."""
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                print(f"{name} did not stop: killing it", flush=True)
                process.kill()
                process.wait()


def spawn(
    command: Sequence[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a process of this repository, its output into `log`."""
    return subprocess.Popen(
        command, cwd=REPO, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env
    )


async def wait_for(check: Callable[[], Awaitable[bool]], limit_s: float, what: str) -> None:
    """Poll `check` every half second until it is true; fail after `limit_s` seconds."""
    async with asyncio.timeout(limit_s):
        while True:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                if await check():
                    return
            await asyncio.sleep(0.5)
    raise TimeoutError(what)  # pragma: no cover - asyncio.timeout raises first


# --- the Emoncms drain --------------------------------------------------------------------------


def drain_snapshot(node: int, measured: int) -> MeterSnapshot:
    """Return what a meter reads: a Pro 3EM on even nodes, a Shelly EM on odd ones."""
    watts = 500.0 + (measured * 7 + node * 131) % 2000
    wh = 1_000_000.0 + measured * 0.3 + node
    if node % 2:
        channels = tuple(
            ChannelReading(
                id=channel,
                kind=ChannelKind.CHANNEL,
                power=watts / (index + 1),
                voltage=230.4,
                energy_in=wh / (index + 1),
                energy_out=wh / 7,
            )
            for index, channel in enumerate(("1", "2"))
        )
        return MeterSnapshot(time=measured, channels=channels)
    phases = tuple(
        ChannelReading(
            id=phase,
            kind=ChannelKind.PHASE,
            power=watts / 3 + index,
            voltage=229.8 + index,
            energy_in=wh / 3 + index,
            energy_out=wh / 11,
        )
        for index, phase in enumerate(PHASE_IDS)
    )
    total = ChannelReading(
        id=TOTAL_ID,
        kind=ChannelKind.TOTAL,
        power=watts + 3,
        energy_in=wh + 3,
        energy_out=wh * 3 / 11,
    )
    return MeterSnapshot(time=measured, channels=phases, total=total)


async def measure_drain() -> DrainResult:
    """Queue the backlog through the sender and time how long delivering it takes."""
    port = free_port()
    double = spawn(
        [
            sys.executable,
            "-m",
            "simulator.emoncms",
            f"--port={port}",
            f"--write-key={DRAIN_WRITE_KEY}",
            f"--read-key={DRAIN_READ_KEY}",
        ],
        WORK_DIR / "emoncms.log",
    )
    url = f"http://127.0.0.1:{port}"
    with running(double, "the Emoncms double"):
        async with aiohttp.ClientSession() as session:

            async def listening() -> bool:
                async with session.get(f"{url}/input/list.json") as response:
                    return response.status == 200

            await wait_for(listening, 30, "the Emoncms double did not start")
            queue = ExportQueue(queue_bound(DRAIN_INTERVAL_S, DRAIN_NODES))
            client = EmoncmsClient(session, DRAIN_WRITE_KEY, version="bench", url=url)
            sender = EmoncmsSender(client, queue, clock=time.time, random=random.random)
            chosen = frozenset({"power", "energy", "voltage"})
            start = int(time.time()) - 86_400
            for step in range(DRAIN_SAMPLES_PER_NODE):
                measured = start + step * DRAIN_INTERVAL_S
                for node in range(DRAIN_NODES):
                    values = meter_values(drain_snapshot(node, measured), chosen)
                    sender.record(measured, f"meter{node:02d}", values)
            samples = len(queue)
            cpu_before = time.process_time()
            began = time.perf_counter()
            result = await sender.drain()
            seconds = time.perf_counter() - began
            cpu = time.process_time() - cpu_before
    if result.remaining:
        raise RuntimeError(f"the drain left {result.remaining} samples: {sender.status}")
    return DrainResult(samples, result.sent, seconds, cpu)


# --- the virtual meter --------------------------------------------------------------------------


async def measure_virtual_meter(window_s: float) -> VirtualMeterResult:
    """Serve a value changing every second to batteries polling at 100/s; time and cost it.

    The servers run in this process, as they run in Home Assistant's event loop, with nothing
    else to do: the CPU is theirs. The batteries run in a process of their own.
    """
    meter = VirtualMeter(Identity(MeterModel.PRO_3EM, new_mac()), GuardSettings(stale_after=60))
    handling = time_handling(meter)
    udp = UdpServer(
        lambda data, client: meter.frame(data, client=client, transport=Transport.UDP),
        ("127.0.0.1",),
        0,
    )
    http = HttpServer(meter, "127.0.0.1", 0)

    async def grid_meter() -> None:  # a grid meter polled every second
        for second in itertools.count():
            watts = 800.0 * math.sin(second / 10)
            meter.update(GridReading((watts, watts / 3, -watts / 7), time.monotonic()))
            await asyncio.sleep(1)

    feeding = asyncio.create_task(grid_meter())
    await udp.start()
    await http.start()
    try:
        cpu_before = time.process_time()
        batteries = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "scripts.bench_batteries",
            f"--udp-port={udp.port}",
            f"--http-port={http.port}",
            f"--rate={VIRTUAL_METER_RATE}",
            f"--seconds={window_s}",
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
        )
        output, _ = await batteries.communicate()
        cpu = time.process_time() - cpu_before
    finally:
        feeding.cancel()
        udp.close()
        await http.stop()
    if batteries.returncode != 0:
        raise RuntimeError(f"the batteries failed ({batteries.returncode})")
    result = json.loads(output)
    return VirtualMeterResult(
        VIRTUAL_METER_RATE,
        result["seconds"],
        result["sent"],
        result["latencies"],
        cpu,
        os.getloadavg()[0],
        handling,
    )


def time_handling(meter: VirtualMeter) -> list[float]:
    """Time every request's handling (`frame`, or `call` alone for HTTP GET) into the list."""
    handling: list[float] = []
    depth = 0  # `frame` calls `call`: only the outer one is timed

    def timed[**P, R](method: Callable[P, R]) -> Callable[P, R]:
        def timing(*args: P.args, **kwargs: P.kwargs) -> R:
            nonlocal depth
            depth += 1
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                depth -= 1
                if depth == 0:
                    handling.append(time.perf_counter() - started)

        return timing

    meter.frame = timed(meter.frame)  # type: ignore[method-assign]
    meter.call = timed(meter.call)  # type: ignore[method-assign]
    return handling


def virtual_meter_line(result: VirtualMeterResult) -> str:
    """Return one line about the virtual meter."""
    latencies = result.all_latencies or [math.nan]
    handling = result.handling or [math.nan]
    return (
        f"{result.replies:,} of {sum(result.sent.values()):,} requests answered in "
        f"{result.seconds:.0f} s; latency median {ms(statistics.median(latencies))} ms, "
        f"p99 {ms(percentile(latencies, 99))} ms; CPU {result.cpu_percent:.2f} % of one core, "
        f"{ms(result.cpu_s / max(result.replies, 1))} ms per request; handling in the server "
        f"p99 {ms(percentile(handling, 99))} ms; machine load {result.load:.1f} on "
        f"{os.cpu_count()} cores"
    )


def virtual_meter_table(result: VirtualMeterResult) -> str:
    """Return the virtual meter's measurements by transport."""
    rows = [["Transport", "Requests", "Replies", "Latency median / p99 / max (ms)"]]
    names = {"udp": "UDP (Marstek)", "ws": "WebSocket (Hoymiles)", "http": "HTTP GET (Growatt)"}
    for transport, name in names.items():
        values = result.latencies.get(transport, [])
        timing = (
            f"{ms(statistics.median(values))} / {ms(percentile(values, 99))} / {ms(max(values))}"
            if values
            else "-"
        )
        rows.append([name, f"{result.sent.get(transport, 0):,}", f"{len(values):,}", timing])
    return table(rows)


def virtual_meter_budgets(result: VirtualMeterResult | None) -> list[Budget]:
    """Return the virtual meter's budgets: reply latency, and CPU at 100 requests/s."""
    if result is None or not result.all_latencies:
        return [
            Budget("Virtual meter reply latency p99", "not measured", "", None),
            Budget("Virtual meter CPU at 100 requests/s", "not measured", "", None),
        ]
    p99 = percentile(result.all_latencies, 99)
    complete = result.replies == sum(result.sent.values())
    return [
        Budget(
            f"Virtual meter reply latency p99 ({result.replies:,} replies)",
            f"{ms(p99)} ms",
            f"< {VIRTUAL_METER_LATENCY_P99_MS:g} ms, every request answered",
            p99 * 1000 < VIRTUAL_METER_LATENCY_P99_MS and complete,
        ),
        Budget(
            f"Virtual meter CPU at {result.rate:g} requests/s",
            f"{result.cpu_percent:.2f} % of one core "
            f"({ms(result.cpu_s / max(result.replies, 1))} ms per request)",
            f"< {VIRTUAL_METER_CPU_PERCENT:g} %",
            result.cpu_percent < VIRTUAL_METER_CPU_PERCENT,
        ),
    ]


# --- the simulator and Home Assistant ----------------------------------------------------------


@dataclass(frozen=True)
class SimulatedMeter:
    """A meter the simulator runs for the benchmark."""

    spec: str
    port: int
    mac: str


def polled_meters(count: int) -> list[SimulatedMeter]:
    """Return the meters to follow: Pro 3EM and Shelly EM alternating, each its own household.

    They are busy, as real meters are: every value changes every second (noise), and the Pro
    3EMs push their status every second (the simulator's defaults, as a real device).
    """
    meters = []
    for index in range(count):
        kind = "pro3em" if index % 2 == 0 else "gen1_em"
        port = free_port()
        mac = f"A0DD6CB{index:05X}"
        name = f"Bench {index + 1:02d}"
        meters.append(
            SimulatedMeter(f"{kind}:{port}:mac={mac}:name={name}:seed={index}:noise=1", port, mac)
        )
    return meters


def history_meter() -> SimulatedMeter:
    """Return the Pro 3EM holding 60 days of 1-minute records."""
    port = free_port()
    return SimulatedMeter(
        f"pro3em:{port}:mac={HISTORY_MAC}:name=History:seed=60:history_days={HISTORY_DAYS}",
        port,
        HISTORY_MAC,
    )


class Bench:
    """A running Home Assistant with the probe, and the REST calls the benchmark makes."""

    def __init__(self, api: HassApi, pid: int) -> None:
        """Drive the instance behind `api`, whose process is `pid`."""
        self.api = api
        self.pid = pid

    async def probe(self, service: str, **data: Any) -> dict[str, Any]:
        """Call a service action of the probe; return its response."""
        reply = await self.api.post(f"/api/services/bench_probe/{service}?return_response", data)
        response: dict[str, Any] = reply["service_response"]
        return response

    async def add_meter(self, meter: SimulatedMeter, poll_interval: int | None) -> str:
        """Add a meter with the config flow; set its poll interval; return its entry id."""
        result = await self.api.run_flow(
            DOMAIN, {"next_step_id": "meter"}, {"host": f"127.0.0.1:{meter.port}"}
        )
        if result.get("type") != "create_entry":
            raise RuntimeError(f"adding {meter.spec} ended with {result}")
        entry_id: str = result["result"]["entry_id"]
        if poll_interval is not None:
            form = await self.api.post(
                "/api/config/config_entries/options/flow", {"handler": entry_id}
            )
            done = await self.api.post(
                f"/api/config/config_entries/options/flow/{form['flow_id']}",
                {
                    "poll_interval": poll_interval,
                    "reversed_channels": [],
                    "deadband": 0,
                    "supply": {},
                },
            )
            if done.get("type") != "create_entry":
                raise RuntimeError(f"the options of {meter.spec} ended with {done}")
        return entry_id

    async def add_meters(self, meters: Sequence[SimulatedMeter]) -> None:
        """Add meters polled every second, a few at a time; wait until all are loaded."""
        for first in range(0, len(meters), ADD_CONCURRENCY):
            await asyncio.gather(
                *(
                    self.add_meter(meter, POLL_INTERVAL_S)
                    for meter in meters[first : first + ADD_CONCURRENCY]
                )
            )
        await asyncio.sleep(2)  # the option changes reload the entries

        async def all_loaded() -> bool:
            entries = await self.api.entries(DOMAIN)
            return all(entry["state"] == "loaded" for entry in entries)

        await wait_for(all_loaded, 120, "the meters did not all load")


async def measure_history(bench: Bench, meter: SimulatedMeter, limit_s: float) -> HistoryResult:
    """Add the 60-day meter and time its import to the event; remove it afterwards."""
    await bench.probe("reset", loop_lag=True)
    began = time.time()
    entry_id = await bench.add_meter(meter, None)
    report: dict[str, Any] = {}
    events: list[dict[str, Any]] = []

    async def imported() -> bool:
        nonlocal report, events
        report = await bench.probe("report")
        events = [event for event in report["history_events"] if event["entry_id"] == entry_id]
        return bool(events)

    try:
        await wait_for(imported, limit_s, HISTORY_EVENT)
    except TimeoutError:
        return HistoryResult(reason=f"not measured: no {HISTORY_EVENT} within {limit_s:.0f} s")
    finally:
        await bench.probe("reset", loop_lag=False)
        await bench.api.delete(f"/api/config/config_entries/entry/{entry_id}")
    event = events[0]
    lag = report["loop_lag"]
    return HistoryResult(
        seconds=event["fired"] - began,
        max_loop_block_s=max(lag) if lag else None,
        full_collections=report["full_collections"],
        event=event,
    )


async def measure_polling(
    bench: Bench, meters: int, window_s: float, database: Path, *, memory: bool, profile: bool
) -> tuple[PollingResult, dict[str, Any], str]:
    """Measure one window of polling: the probe's numbers, CPU time and RSS of the process.

    Also return what grew in memory (with `memory`) and the profile text (with `profile`).
    """
    await bench.probe("reset", loop_lag=False)
    if memory:
        await bench.probe("memory", mark=True)
    if profile:
        await bench.probe("profile", start=True)
    began = time.monotonic()
    database_start = file_bytes(database)
    cpu_before = cpu_seconds(bench.pid)
    rss: list[tuple[float, int]] = []
    while (elapsed := time.monotonic() - began) < window_s:
        rss.append((elapsed, rss_bytes(bench.pid)))
        await asyncio.sleep(min(RSS_EVERY_S, window_s - elapsed))
    cpu = cpu_seconds(bench.pid) - cpu_before
    window = time.monotonic() - began
    rss.append((window, rss_bytes(bench.pid)))
    report = await bench.probe("report")
    grown = await bench.probe("memory", mark=False) if memory else {}
    profiled = (await bench.probe("profile", start=False))["text"] if profile else ""
    averaged = min(RSS_AVERAGED_S, window / 2)
    return (
        PollingResult(
            meters=meters,
            warmup_s=0,  # the caller knows
            window_s=window,
            update_cpu_s=report["update_cpu"],
            process_cpu_s=cpu,
            # Busy meters' values change at every whole second.
            freshness_s=[changed % 1 for changed in report["changes"]],
            rss_start=statistics.mean(size for at, size in rss if at <= averaged),
            rss_end=statistics.mean(size for at, size in rss if at >= window - averaged),
            rss_peak=max(size for _, size in rss),
            database_start=database_start,
            database_end=file_bytes(database),
        ),
        grown,
        profiled,
    )


async def run(plan: Plan, *, allocator: str, tracemalloc: bool, profile: bool) -> Report:
    """Run every part of the benchmark; return what it measured."""
    report = Report(plan, dt.datetime.now(dt.UTC), allocator)
    print("== Emoncms drain", flush=True)
    report.drain = await measure_drain()
    print(f"   {report.drain.sent} samples in {report.drain.seconds:.1f} s", flush=True)
    print("== virtual meter", flush=True)
    report.virtual_meter = await measure_virtual_meter(VIRTUAL_METER_WINDOW_S[plan.full])
    print(f"   {virtual_meter_line(report.virtual_meter)}", flush=True)

    meters = polled_meters(max(plan.meter_counts))
    history = history_meter()
    control_port = free_port()
    simulator = spawn(
        [
            sys.executable,
            "-m",
            "simulator",
            f"--control-port={control_port}",
            "--log-level=WARNING",
            *(arg for meter in (*meters, history) for arg in ("--meter", meter.spec)),
        ],
        WORK_DIR / "simulator.log",
    )
    config = WORK_DIR / "config"
    database = config / "home-assistant_v2.db"
    shutil.rmtree(config, ignore_errors=True)
    port = free_port()
    prepare_config(config, port, components=HEADLESS_COMPONENTS, integrations=(PROBE,))
    skip_onboarding_integrations(config)
    hass = start_hass(
        config,
        WORK_DIR / "home-assistant.log",
        {
            **allocator_environment(allocator),
            **({"PYTHONTRACEMALLOC": "1"} if tracemalloc else {}),
        },
        repo_on_path=False,
    )
    with running(simulator, "the simulator"), running(hass, "Home Assistant"):
        async with aiohttp.ClientSession() as session:

            async def simulator_up() -> bool:
                async with session.get(f"http://127.0.0.1:{control_port}/meters") as response:
                    return response.status == 200 and len(await response.json()) == len(meters) + 1

            await wait_for(simulator_up, 120, "the simulator did not start")
            api = HassApi(session, f"http://127.0.0.1:{port}")
            await api.wait_until_up()
            await api.onboard(Credentials())

            async def probe_set_up() -> bool:  # the API answers before every setup is done
                services = await api.get("/api/services")
                return any(domain["domain"] == "bench_probe" for domain in services)

            await wait_for(probe_set_up, 60, "the probe was not set up")
            bench = Bench(api, hass.pid)
            print("== history import", flush=True)
            report.history = await measure_history(bench, history, plan.history_timeout_s)
            print(f"   {history_line(report.history)}", flush=True)
            added = 0
            for meter_count, warmup, window in zip(
                plan.meter_counts, plan.warmups_s, plan.windows_s, strict=True
            ):
                print(f"== {meter_count} meters polled every {POLL_INTERVAL_S} s", flush=True)
                await bench.add_meters(meters[added:meter_count])
                added = meter_count
                last = meter_count == max(plan.meter_counts)
                began = time.time()
                print(f"   warm-up {warmup:.0f} s or more", flush=True)
                await asyncio.sleep(warmup)
                if last and plan.full:
                    await memory_warm_up(database, began)
                warmed_s = time.time() - began
                result, grown, profiled = await measure_polling(
                    bench,
                    meter_count,
                    window,
                    database,
                    memory=tracemalloc and last,
                    profile=profile and last,
                )
                result.warmup_s = warmed_s
                report.polling.append(result)
                report.memory_growth = grown or report.memory_growth
                report.profile = profiled or report.profile
                print(f"   {polling_line(result)}", flush=True)
    return report


# --- the report ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """One budget and whether the run met it (None: not measured)."""

    what: str
    measured: str
    limit: str
    passed: bool | None


def ms(seconds: float) -> str:
    """Return seconds as milliseconds for the table."""
    return f"{seconds * 1000:.2f}"


def history_line(history: HistoryResult) -> str:
    """Return one line about the history import."""
    if history.seconds is None:
        return history.reason
    block = "n/a" if history.max_loop_block_s is None else f"{ms(history.max_loop_block_s)} ms"
    return (
        f"{history.event.get('records', '?')} records in {history.seconds:.1f} s "
        f"(the import says {history.event.get('seconds', '?')} s); longest loop block {block}; "
        f"{full_collections(history.full_collections)}"
    )


def full_collections(pauses: list[float]) -> str:
    """Return what Python's full garbage collections paused the event loop."""
    if not pauses:
        return "no full garbage collection"
    return f"{len(pauses)} full garbage collection(s), the longest {ms(max(pauses))} ms"


def polling_line(result: PollingResult) -> str:
    """Return one line about a polling window."""
    return (
        f"{result.updates} updates in {result.window_s:.0f} s, "
        f"process CPU {result.process_cpu_percent:.1f} %, "
        f"RSS {result.rss_end / MIB:.1f} MiB ({(result.rss_end - result.rss_start) / MIB:+.2f})"
    )


def budgets(report: Report) -> list[Budget]:
    """Return every budget with what the run measured."""
    rows: list[Budget] = []
    first = report.polling[0] if report.polling else None
    pro3em = first.update_cpu_s.get(PRO_3EM, []) if first else []
    rows.append(
        Budget(
            f"CPU of one Pro 3EM update, median (N = {first.meters if first else '?'})",
            f"{ms(statistics.median(pro3em))} ms" if pro3em else "not measured",
            f"<= {UPDATE_CPU_MEDIAN_MS:g} ms",
            statistics.median(pro3em) * 1000 <= UPDATE_CPU_MEDIAN_MS if pro3em else None,
        )
    )
    for result in report.polling:
        if result.meters == 50:
            rows.append(
                Budget(
                    "Home Assistant process CPU, N = 50 at 1 s",
                    f"{result.process_cpu_percent:.1f} % of one core",
                    f"<= {PROCESS_CPU_PERCENT_AT_50:g} %",
                    result.process_cpu_percent <= PROCESS_CPU_PERCENT_AT_50,
                )
            )
    limit = POLL_INTERVAL_S + FRESHNESS_MARGIN_S
    for result in report.polling:
        p95 = percentile(result.freshness_s, 95) if result.freshness_s else None
        rows.append(
            Budget(
                f"Freshness p95, N = {result.meters}",
                "not measured" if p95 is None else f"{p95:.3f} s",
                f"<= {limit:g} s",
                None if p95 is None else p95 <= limit,
            )
        )
    last = report.polling[-1] if report.polling else None
    if last is not None:
        growth = (last.rss_end - last.rss_start) / MIB
        minutes = last.window_s / 60
        rows.append(
            Budget(
                f"RSS growth over {minutes:.0f} min after warm-up, N = {last.meters}",
                f"{growth:+.2f} MiB",
                f"<= {MEMORY_GROWTH_MIB:g} MiB over 10 min",
                growth <= MEMORY_GROWTH_MIB if report.plan.full else None,
            )
        )
    if report.drain is not None:
        rows.append(
            Budget(
                f"Emoncms drain of {report.drain.samples:,} samples",
                f"{report.drain.seconds:.1f} s ({report.drain.sent / report.drain.seconds:,.0f}/s)",
                f"<= {DRAIN_S:g} s",
                report.drain.seconds <= DRAIN_S,
            )
        )
    history = report.history
    measured = history is not None and history.seconds is not None
    rows.append(
        Budget(
            f"History import, {HISTORY_DAYS} days of 1-minute records (Pro 3EM)",
            f"{history.seconds:.1f} s"
            if history and history.seconds is not None
            else "not measured",
            f"<= {HISTORY_IMPORT_S:g} s",
            history.seconds <= HISTORY_IMPORT_S
            if history and history.seconds is not None
            else None,
        )
    )
    block = history.max_loop_block_s if history else None
    rows.append(
        Budget(
            "Longest event loop block during the import",
            f"{ms(block)} ms" if block is not None else "not measured",
            f"<= {LOOP_BLOCK_MS:g} ms",
            block * 1000 <= LOOP_BLOCK_MS if measured and block is not None else None,
        )
    )
    rows.extend(virtual_meter_budgets(report.virtual_meter))
    return rows


def table(rows: Sequence[Sequence[str]]) -> str:
    """Return a Markdown table; the first row is the header."""
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines.extend("| " + " | ".join(row) + " |" for row in rows[1:])
    return "\n".join(lines)


def verdict(passed: bool | None) -> str:
    """Return how a budget went, for the table."""
    return {True: "pass", False: "**FAIL**", None: "not checked"}[passed]


def polling_table(report: Report) -> str:
    """Return the polling measurements, one column per meter count."""
    results = report.polling
    header = ["", *(f"N = {result.meters}" for result in results)]
    models = sorted({model for result in results for model in result.update_cpu_s})

    def cpu(result: PollingResult, model: str) -> str:
        values = result.update_cpu_s.get(model)
        if not values:
            return "-"
        return f"{ms(statistics.median(values))} / {ms(percentile(values, 95))}"

    def freshness(result: PollingResult) -> str:
        values = result.freshness_s
        if not values:
            return "-"
        return f"{statistics.median(values):.3f} / {percentile(values, 95):.3f}"

    rows = [
        header,
        ["Warm-up (s)", *(f"{result.warmup_s:.0f}" for result in results)],
        ["Window (s)", *(f"{result.window_s:.0f}" for result in results)],
        ["Updates in the window", *(f"{result.updates:,}" for result in results)],
        *(
            [f"CPU per {model} update, median / p95 (ms)", *(cpu(r, model) for r in results)]
            for model in models
        ),
        [
            "Process CPU (% of one core)",
            *(f"{result.process_cpu_percent:.1f}" for result in results),
        ],
        [
            "Process CPU per update (ms)",
            *(ms(result.process_cpu_s / max(result.updates, 1)) for result in results),
        ],
        ["Freshness, median / p95 (s)", *(freshness(result) for result in results)],
        ["Value changes seen", *(f"{len(result.freshness_s):,}" for result in results)],
        ["RSS at the end (MiB)", *(f"{result.rss_end / MIB:.1f}" for result in results)],
        ["Peak RSS (MiB)", *(f"{result.rss_peak / MIB:.1f}" for result in results)],
        [
            "RSS growth in the window (MiB)",
            *(f"{(result.rss_end - result.rss_start) / MIB:+.2f}" for result in results),
        ],
        [
            "Recorder database file, start / end of the window (MiB)",
            *(
                f"{result.database_start / MIB:.1f} / {result.database_end / MIB:.1f}"
                for result in results
            ),
        ],
    ]
    return table(rows)


def budget_table(rows: Sequence[Budget]) -> str:
    """Return the budgets with what the run measured."""
    return table(
        [
            ["Budget", "Measured", "Limit", "Result"],
            *([row.what, row.measured, row.limit, verdict(row.passed)] for row in rows),
        ]
    )


def document(report: Report, rows: Sequence[Budget]) -> str:
    """Return docs/benchmarks.md."""
    plan = report.plan
    allocator = {
        "jemalloc": "jemalloc, preloaded with the settings of Home Assistant's container images "
        "(which Home Assistant OS runs)",
        "glibc": "glibc's malloc (a plain virtual environment)",
    }[report.allocator]
    info = "\n".join(
        f"- {name}: {value}"
        for name, value in {**machine(), "Home Assistant's memory allocator": allocator}.items()
    )
    windows = ", ".join(
        f"N = {result.meters}: {result.warmup_s:.0f} s warm-up, {result.window_s:.0f} s window"
        for result in report.polling
    )
    grown = ""
    if report.memory_growth.get("tracing"):
        grown = (
            "\n\nPython's own allocations (tracemalloc) grew by "
            f"{report.memory_growth['total'] / MIB:+.2f} MiB in the last window; what grew most, "
            "by allocating line:\n\n"
            + table(
                [
                    ["Where", "Bytes", "Blocks"],
                    *(
                        [f"`{item['where']}`", f"{item['bytes']:+,}", f"{item['count']:+,}"]
                        for item in report.memory_growth["grown"][:15]
                    ),
                ]
            )
        )
    drain = report.drain
    drain_text = (
        "not measured"
        if drain is None
        else f"{drain.sent:,} samples in {drain.seconds:.1f} s, "
        f"{drain.sent / drain.seconds:,.0f} samples/s; the sending process used "
        f"{drain.sender_cpu_s:.1f} s of CPU"
    )
    history = report.history
    history_text = "not measured" if history is None else history_line(history)
    command = "scripts/bench" if plan.full else "scripts/bench --quick"
    quick = "" if plan.full else " A quick run: short windows; the memory budget is not checked."
    return f"""# Benchmarks

Generated by `{command}` on {report.started:%Y-%m-%d %H:%M} UTC; run it again to regenerate this
page.{quick}

## Machine

{info}

The machine is shared: two cores, with other jobs (test suites) running at times, so CPU shares and
latencies are upper bounds of what the integration needs on an idle machine.

## Budgets

{budget_table(rows)}

## Polling every {POLL_INTERVAL_S} s

Meters: Pro 3EM (three-phase) and Shelly EM (Gen1) alternating, each its own simulated household
({windows}).

{polling_table(report)}

## Emoncms drain

One day at 10 s for 10 meters ({DRAIN_SAMPLES_PER_NODE:,} samples per meter, Pro 3EM and
Shelly EM alternating, with power, energy and voltage): {drain_text}.

## History import

{HISTORY_DAYS} days of 1-minute records of a Pro 3EM: {history_text}.

## Virtual meter

{virtual_meter_section(report.virtual_meter)}

## What the memory growth is

Found with `--tracemalloc` and with RSS sampled every 10 s next to the size of the recorder's
database (2026-12-04, N = 50, glibc and jemalloc):

- Python's own allocations do not grow: over a 10-minute window no allocating line grew by more
  than 1 MiB, and none of the integration's lines is among the 25 that grew most (the largest
  are the probe's own samples and the REST reply that carries them).
- RSS rises smoothly while the database is smaller than 16 MiB: SQLite's page cache (the
  recorder sets `cache_size` to 16 MiB) filling up. It is flat once the database is larger.
- RSS steps up at each of Home Assistant's 5-minute statistics compiles (at :00:10, :05:10, ...)
  by 13 to 14 MiB, of which 7 to 11 MiB stay with jemalloc and all with glibc's malloc: native
  memory of the recorder's compile, which reads every state row of those 5 minutes (with 50
  meters about 165 rows a second, five in six of them energy counters, which then changed at
  every poll at the mWh resolution the sensors published).

Two changes followed. The energy sensors now publish whole Wh, as their display shows, so a
counter writes a state only when it gains a Wh: the same N = 50 window then grew +10 MiB instead
of +15 MiB, with the database still smaller than the page cache. And the measured window now
starts only after the database has outgrown the cache and a statistics compile has run, so the
cache filling once on a fresh database is no longer counted as growth. The growth that remains
is the recorder's (+2.3 MiB in the full run of 2026-12-04); whether its steps level off
takes runs of hours to tell.

## How each number is taken

- **Set-up**: the simulator (`python -m simulator`) and the Emoncms double
  (`python -m simulator.emoncms`) run as processes of their own, so their CPU is not counted; a
  headless Home Assistant (`scripts/hass_instance.py`: no frontend; config, onboarding and the
  recorder with its SQLite database) runs with the integration and the probe
  (`scripts/bench_probe/`). Meters are added through the real config flow over the REST API and
  set to poll every {POLL_INTERVAL_S} s in their options; meter counts grow 1, 10, 50 in the same
  instance. Everything talks over 127.0.0.1.
- **CPU per update**: inside Home Assistant, the probe wraps `MeterCoordinator._async_refresh`
  (the poll, parsing and cleaning the reply, the supply watch, and the listeners: every entity's
  state write) and sums `time.thread_time()` over each step of that coroutine: the CPU the
  update itself uses, not what other tasks run while it awaits the meter. A pushed update (a
  Pro 3EM's NotifyStatus as aioshelly hands it on: parsing, taking it in, every entity's state
  write) runs in one go and is timed whole; a Pro 3EM's updates are nearly all pushed (its
  whole status is read once a minute). The WebSocket reader of aioshelly, the recorder and the
  rest of Home Assistant are in the process CPU only.
- **Process CPU**: user + system time of the whole Home Assistant process (every thread: the
  recorder's too) from `/proc/<pid>/stat` over the window, divided by the window; 100 % is one
  core. "Per update" divides it by the updates the probe counted.
- **Freshness**: the meters are busy: the simulator changes every value at each whole second
  of the clock (noise), and the Pro 3EMs push their status just after. The probe stamps every
  change of each meter's first power sensor with Home Assistant's `last_changed`; the freshness
  is that time's offset into its second: the time from the simulator producing the value to
  the entity state changing (one clock, loopback). Gen1 meters, polled every second, and Pro
  3EMs, pushed, are pooled here, and an offset cannot exceed a second: for Gen2+ alone see the
  comparison below (`scripts/bench --peer`).
- **RSS**: `VmRSS` from `/proc/<pid>/status` every {RSS_EVERY_S:g} s. Growth is the mean of the
  last {RSS_AVERAGED_S:g} s of the window minus the mean of its first {RSS_AVERAGED_S:g} s. The
  windows start after a warm-up; for N = 50 (the memory budget) it lasts at least
  {plan.warmups_s[-1]:.0f} s and until the recorder's caches are warm, as they are in any
  installation that has run for a while: the first of Home Assistant's 5-minute statistics
  compiles over 5 full minutes of all the meters' states is behind, and the recorder's database
  file has outgrown the {RECORDER_CACHE_BYTES // MIB} MiB page cache the recorder gives SQLite (a
  fresh database is smaller, so the cache grows with it: about 7 MiB in 10 minutes with 50
  meters). The window then starts {STATISTICS_SETTLED_S} s after the next compile. Peak RSS is
  the highest sample of the window. The probe keeps its samples in arrays (8 bytes each).
- **Emoncms drain**: the integration's `ExportQueue` holds the backlog, recorded through
  `EmoncmsSender.record` from `meter_values` of the exporter; `EmoncmsSender.drain()` posts it
  to the double with the integration's `EmoncmsClient` (aiohttp), timed from the first post to
  the last answer.
- **History import**: timed from the first request of the config flow that adds the meter to
  the `{HISTORY_EVENT}` event fired by the integration; the probe's task that sleeps
  5 ms records how late it wakes: the longest delay is the longest block of the event loop.
  A `gc.callbacks` hook times Python's garbage collections meanwhile: a full one (generation 2)
  walks Home Assistant's whole heap and blocks the loop for 150 to 200 ms on this machine. The
  import once set one off by keeping about 300,000 short-lived objects per 60 days alive across
  calls (records waiting to be merged); they now wait in flat arrays. At a real meter's speed it
  set one off again by making each day's 1,440 records at once; they are now made a batch of
  250 at a time, and the loop gets a turn after each batch and between the series of
  statistics written at the end. The time is taken from the flow's first request, so it holds
  the meter's setup too: its sensors are added ten per turn of the loop.{grown}
"""


def replace_section(document: str, title: str, body: str, *, after: str) -> str:
    """Return the Markdown `document` with the body of its `## title` section replaced.

    A document without that section (written before it existed) gets it after `## after`.
    """
    heading = f"## {title}\n"
    if heading not in document:
        following = document.find("\n## ", document.index(f"## {after}\n") + 1)
        at = len(document) if following == -1 else following
        document = f"{document[:at].rstrip()}\n\n{heading}\n{document[at:]}"
    start = document.index(heading) + len(heading)
    end = document.find("\n## ", start)
    rest = "" if end == -1 else document[end:]
    return f"{document[:start]}\n{body}\n{rest}"


def virtual_meter_section(result: VirtualMeterResult | None) -> str:
    """Return the virtual meter's part of docs/benchmarks.md."""
    if result is None:
        return "Not measured."
    return f"""Fake batteries polled a virtual Pro 3EM at {result.rate:g} requests/s for \
{result.seconds:.0f} s: {virtual_meter_line(result)}.

{virtual_meter_table(result)}

The servers (`virtual_meter/udp.py`, `virtual_meter/http.py`) ran in the benchmark's own event
loop with nothing else to do, their value changing every second as a grid meter polled every
second would change it; the batteries (`python -m scripts.bench_batteries`) ran as a process of
their own, sending each request at an even pace without waiting for the previous reply: 5 in 10
as Marstek `EM.GetStatus` datagrams, 4 in 10 over one WebSocket as Hoymiles polls, 1 in 10 as
Growatt's `GET /rpc/Shelly.GetStatus?esp` (a new HTTP request on a kept-alive connection).
Latency is taken by the batteries, from just before sending to the reply's arrival; the handling
in the server is the time from the request's text to the reply's (parsing, the value, the
encoding), without the event loop and the network around it. CPU is the
serving process's user + system time over the whole run (the batteries' start included),
divided by the time the batteries polled. In Home Assistant the same servers share the event
loop with everything else: a request that arrives while another task runs waits for it (the
longest such block is in the polling table above)."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Return the command line's options."""
    parser = argparse.ArgumentParser(
        prog="scripts/bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="short windows, for development (about 8 minutes)"
    )
    parser.add_argument(
        "--output", type=Path, help="where to write the report (default: docs/benchmarks.md)"
    )
    parser.add_argument(
        "--virtual-meter-only",
        action="store_true",
        help="measure only the virtual meter (about 30 s) and update its section of the report",
    )
    parser.add_argument(
        "--meters",
        type=lambda text: tuple(int(count) for count in text.split(",")),
        default=FULL.meter_counts,
        help="the meter counts to poll, a subset of the default 1,10,50 (e.g. 50, to look "
        "into one of them; such a run writes .bench/benchmarks.md)",
    )
    parser.add_argument(
        "--allocator",
        choices=("jemalloc", "glibc"),
        default="jemalloc" if jemalloc() else "glibc",
        help="Home Assistant's memory allocator: jemalloc, as in its container images (the "
        "default where libjemalloc2 is installed), or glibc's malloc, as in a plain venv",
    )
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="trace allocations in Home Assistant and list what grew in the last window "
        "(slows it down: CPU figures of such a run are not comparable)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile the meter updates (cProfile) during the last window into "
        ".bench/profile-<N>.txt (slows them down: CPU figures of such a run are not comparable)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; return 1 when a budget is missed."""
    args = parse_args(argv)
    if args.virtual_meter_only:
        started = dt.datetime.now(dt.UTC)
        result = asyncio.run(measure_virtual_meter(VIRTUAL_METER_WINDOW_S[not args.quick]))
        print(virtual_meter_line(result))
        print(virtual_meter_table(result))
        rows = virtual_meter_budgets(result)
        print(budget_table(rows))
        report_file = args.output or REPO / "docs" / "benchmarks.md"
        section = f"""Measured alone by `scripts/bench --virtual-meter-only` on \
{started:%Y-%m-%d %H:%M} UTC (the rest of this page comes from the last full run).

{budget_table(rows)}

{virtual_meter_section(result)}"""
        report_file.write_text(
            replace_section(
                report_file.read_text(), "Virtual meter", section, after="History import"
            )
        )
        print(f"\nThe virtual meter's section of {report_file} is updated")
        return 1 if any(row.passed is False for row in rows) else 0
    plan = (QUICK if args.quick else FULL).only(args.meters)
    output: Path = args.output or (
        REPO / "docs" / "benchmarks.md" if plan == FULL else WORK_DIR / "benchmarks.md"
    )
    WORK_DIR.mkdir(exist_ok=True)
    report = asyncio.run(
        run(plan, allocator=args.allocator, tracemalloc=args.tracemalloc, profile=args.profile)
    )
    rows = budgets(report)
    print()
    print(polling_table(report))
    print()
    print(budget_table(rows))
    if report.memory_growth.get("tracing"):
        print(f"Traced Python allocations grew {report.memory_growth['total']:+,} B; most:")
        for item in report.memory_growth["grown"][:15]:
            print(f"{item['bytes']:+12,} B {item['count']:+8,} blocks  {item['where']}")
    # The comparison with Home Assistant's shelly (scripts/bench --peer) stays as it was.
    previous = output.read_text() if output.exists() else ""
    peer = previous[previous.index(PEER_MARK_START) :] if PEER_MARK_START in previous else ""
    output.write_text(document(report, rows) + (f"\n{peer}" if peer else ""))
    print(f"\nWritten to {output}")
    if report.profile:
        profile = WORK_DIR / f"profile-{report.polling[-1].meters}.txt"
        profile.write_text(report.profile)
        print(f"Profile of the meter updates: {profile}")
    failed = [row.what for row in rows if row.passed is False]
    print(f"Budgets missed: {', '.join(failed)}" if failed else "Every budget checked was met.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
