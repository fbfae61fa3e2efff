"""Command line: ``python -m simulator --meter pro3em:8081 --meter gen1_em:8082 ...``.

Runs the meters on 127.0.0.1 (or ::1) with the real clock until Ctrl-C (or SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from .household import Source
from .meter import METER_KINDS
from .server import HOST, MeterOptions, Simulator

_LOGGER = logging.getLogger("simulator")

# Realistic defaults of the command line (the Python API's are 0: tests run at full speed).
DEFAULT_NOTIFY_S = 1.0
DEFAULT_RPC_LATENCY_S = 0.04
DEFAULT_DOWNLOAD_RATE = 1_000_000.0


def _boolean(text: str) -> bool:
    return {"1": True, "true": True, "0": False, "false": False}[text.lower()]


# Per-meter options of a --meter spec: name -> how to read the text after "=".
_OPTION_PARSERS: dict[str, Any] = {
    "mac": str,
    "name": str,
    "password": str,
    "firmware": str,
    "profile": str,
    "wiring": lambda text: [Source.parse(spec) for spec in text.split(",")],
    "nominal_voltage": float,
    "voltage": float,  # short for nominal_voltage
    "frequency": float,
    "history_days": float,
    "retention_days": float,
    "initial_energy_wh": float,
    "solar_peak_w": float,
    "battery_wh": float,
    "utc_offset": int,
    "rows_per_call": int,
    "flash_save_s": int,
    "csv_bytes_per_second": float,
    "noise": _boolean,
    "rpc_latency_s": float,
    "download_bytes_per_second": float,
    "data_csv": _boolean,
    "seed": int,
    "ipv6": _boolean,
}

_SPEC_HELP = f"""\
meter spec: KIND[:PORT][:OPTION=VALUE]...
  KIND     {", ".join(METER_KINDS)}
  PORT     TCP port on 127.0.0.1 (default: any free port)
  OPTION   {", ".join(name for name in _OPTION_PARSERS if name != "voltage")}
           (voltage= is short for nominal_voltage=; wiring= takes comma-separated sources:
           load, solar, grid, battery, each optionally @a/@b/@c, or fixed@WATTS;
           noise=1 or 0 overrides --noise; ipv6=1 listens on ::1 instead of 127.0.0.1)

examples:
  python -m simulator --meter pro3em:8081 --meter gen1_em:8082 \\
      --meter proem50:8083:password=secret --control-port 8090 --history-days 7 --seed 1
  python -m simulator --meter pro3em:8081:name=House:battery_wh=10000 \\
      --meter gen1_em:8082:wiring=grid,fixed@-1500
"""


@dataclass(slots=True)
class MeterSpec:
    """One parsed ``--meter`` argument."""

    kind: str
    port: int = 0
    host: str = HOST
    seed: int | None = None
    options: dict[str, Any] = field(default_factory=dict)


def parse_meter_spec(text: str) -> MeterSpec:
    """Parse ``KIND[:PORT][:OPTION=VALUE]...``; raise ValueError on anything unknown."""
    kind, *parts = text.split(":")
    if kind not in METER_KINDS:
        raise ValueError(f"unknown meter kind {kind!r}; expected one of {', '.join(METER_KINDS)}")
    spec = MeterSpec(kind)
    if parts and parts[0].isdigit():
        spec.port = int(parts.pop(0))
    for part in parts:
        name, equals, value = part.partition("=")
        if not equals or name not in _OPTION_PARSERS:
            raise ValueError(f"unknown meter option {part!r} in {text!r}")
        try:
            parsed = _OPTION_PARSERS[name](value)
        except (ValueError, KeyError) as err:
            raise ValueError(f"bad value for {name} in {text!r}: {err}") from None
        if name == "seed":
            spec.seed = parsed
        elif name == "ipv6":
            spec.host = "::1" if parsed else HOST
        else:
            spec.options["nominal_voltage" if name == "voltage" else name] = parsed
    return spec


def _meter_spec_argument(text: str) -> MeterSpec:
    try:
        return parse_meter_spec(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def build_parser() -> argparse.ArgumentParser:
    """Return the command line parser."""
    parser = argparse.ArgumentParser(
        prog="python -m simulator",
        description="Simulate Shelly energy meters on 127.0.0.1, speaking their real protocols.",
        epilog=_SPEC_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--meter",
        dest="meters",
        action="append",
        type=_meter_spec_argument,
        required=True,
        metavar="SPEC",
        help="a meter to run (repeat for more); see the spec syntax below",
    )
    parser.add_argument(
        "--control-port", type=int, help="serve the control HTTP API on this port (0: any)"
    )
    parser.add_argument(
        "--history-days",
        type=float,
        default=0.0,
        help="days of stored records to generate for every meter (default 0, at most 60)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the households (default 0)")
    parser.add_argument(
        "--notify",
        type=float,
        default=DEFAULT_NOTIFY_S,
        metavar="SECONDS",
        help="send NotifyStatus over open Gen2+ WebSockets this often while values change "
        f"(default {DEFAULT_NOTIFY_S:g}, like a real device; 0: never)",
    )
    parser.add_argument(
        "--noise",
        action="store_true",
        help="household power varies every second, as in a real home (default: every 10 s)",
    )
    parser.add_argument(
        "--rpc-latency",
        type=float,
        default=DEFAULT_RPC_LATENCY_S,
        metavar="SECONDS",
        help=f"how long a Gen2+ meter takes to answer an RPC call (default "
        f"{DEFAULT_RPC_LATENCY_S:g}, like a real device; 0: at once)",
    )
    parser.add_argument(
        "--download-rate",
        type=float,
        default=DEFAULT_DOWNLOAD_RATE,
        metavar="BYTES_PER_S",
        help=f"Gen2+ data.csv download speed (default {DEFAULT_DOWNLOAD_RATE:,.0f}; 0: unlimited)",
    )
    parser.add_argument(
        "--csv-rate",
        type=float,
        default=8192.0,
        metavar="BYTES_PER_S",
        help="Gen1 em_data.csv download speed (default 8192, like a real device; 0: unlimited)",
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    return parser


def build_simulator(args: argparse.Namespace) -> Simulator:
    """Create the simulator the parsed arguments describe (real clock)."""
    simulator = Simulator(
        seed=args.seed, control_port=args.control_port, notify_interval=args.notify or None
    )
    for spec in args.meters:
        options: dict[str, Any] = {
            "history_days": args.history_days,
            "csv_bytes_per_second": args.csv_rate or None,
            "noise": args.noise,
            "rpc_latency_s": args.rpc_latency,
            "download_bytes_per_second": args.download_rate or None,
            **spec.options,
        }
        simulator.add_meter(
            spec.kind,
            port=spec.port,
            host=spec.host,
            seed=spec.seed,
            **cast(MeterOptions, options),
        )
    return simulator


async def serve(simulator: Simulator, stop: asyncio.Event) -> None:
    """Run `simulator`, log where each meter listens, and stop when `stop` is set."""
    async with simulator:
        for meter in simulator.meters:
            server = simulator.server(meter)
            _LOGGER.info(
                "%-9s %-16s %s gen%d  %s%s",
                meter.kind,
                meter.model,
                meter.mac,
                meter.gen,
                server.url,
                "  (password protected)" if meter.password else "",
            )
        if simulator.control_url:
            _LOGGER.info("control API  %s", simulator.control_url)
        await stop.wait()


async def _run(simulator: Simulator) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await serve(simulator, stop)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(message)s")
    try:
        simulator = build_simulator(args)
    except ValueError as err:
        build_parser().error(str(err))
    asyncio.run(_run(simulator))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
