"""A local Home Assistant with the integration connected to simulated meters (scripts/develop).

Starts the simulator (one house with a Pro 3EM on the mains, a Shelly EM on the solar and battery
inverters, a password-protected Pro EM-50 on the heat pump's circuit, each with a week of stored
records), starts Home Assistant with its frontend, onboards it, adds the meters and an energy
site through the real setup wizard, and runs until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp

from scripts.hass_instance import REPO, Credentials, HassApi, prepare_config, start_hass

DOMAIN = "shelly_energy"
# One household (seed 3) behind every meter: the mains see what the inverters do, and the heat
# pump's circuit (channel 2 of the Pro EM-50; channel 1 is not connected) is part of the house's
# load. Each keeps a week of records, which the integration imports on first start.
MAINS = "pro3em:{port}:mac=A0DD6C000001:name=Mains:seed=3:battery_wh=10000"
INVERTERS = "gen1_em:{port}:mac=A0DD6C000002:seed=3:wiring=solar,battery"
HEAT_PUMP = (
    "proem50:{port}:mac=A0DD6C000003:name=Heat pump:seed=3:password=demo:wiring=fixed@0,heat_pump"
)
HISTORY_DAYS = 7
# The energy site, as entered in the wizard: the README's Energy dashboard table names its sensors.
SITE = {
    "name": "Home",
    "grid": [f"A0DD6C000001:{phase}" for phase in "abc"],
    "solar": ["A0DD6C000002:1"],
    "battery": ["A0DD6C000002:2"],
    "load": ["A0DD6C000003:2"],
    "grid_metering": "per_phase",
}


async def provision(api: HassApi, user: Credentials, meter_ports: list[int]) -> None:
    """Onboard (or log in), then add every meter and the energy site not added yet."""
    if await api.onboarded():
        await api.login(user)
    else:
        await api.onboard(user)
    if await api.entries(DOMAIN):
        return
    mains, inverters, heat_pump = (f"127.0.0.1:{port}" for port in meter_ports)
    await api.run_flow(DOMAIN, {"next_step_id": "meter"}, {"host": mains})
    await api.run_flow(DOMAIN, {"next_step_id": "meter"}, {"host": inverters})
    await api.run_flow(DOMAIN, {"next_step_id": "meter"}, {"host": heat_pump}, {"password": "demo"})
    await api.run_flow(DOMAIN, {"next_step_id": "site"}, SITE)


async def start_and_provision(base_url: str, user: Credentials, meter_ports: list[int]) -> None:
    """Wait for Home Assistant, then onboard it and add the meters and the site."""
    async with aiohttp.ClientSession() as session:
        api = HassApi(session, base_url)
        await api.wait_until_up()
        await provision(api, user, meter_ports)


def _stop(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main() -> int:
    """Run the demo until interrupted (Ctrl-C or SIGTERM stop everything it started)."""
    # A shell starts background jobs with SIGINT ignored: take both signals back.
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8123, help="Home Assistant's port")
    parser.add_argument("--meter-port", type=int, default=18081, help="the first meter's port")
    parser.add_argument(
        "--config", type=Path, default=REPO / ".dev" / "config", help="configuration folder"
    )
    args = parser.parse_args()
    meters = [
        (spec.format(port=args.meter_port + offset), args.meter_port + offset)
        for offset, spec in enumerate((MAINS, INVERTERS, HEAT_PUMP))
    ]
    ports = [port for _, port in meters]
    simulator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulator",
            "--history-days",
            str(HISTORY_DAYS),
            *(arg for spec, _ in meters for arg in ("--meter", spec)),
        ],
        cwd=REPO,
    )
    prepare_config(args.config, args.port)
    log_file = args.config / "home-assistant.log"
    hass = start_hass(args.config, log_file)
    user = Credentials()
    base_url = f"http://127.0.0.1:{args.port}"
    try:
        asyncio.run(start_and_provision(base_url, user, ports))
        print(
            f"\nHome Assistant is running at {base_url} (log in as {user.username} / "
            f"{user.password}).\nSimulated meters: "
            + ", ".join(f"127.0.0.1:{port}" for port in ports)
            + f" (the Pro EM-50's password is demo).\nLog: {log_file}\nCtrl-C stops everything.",
            flush=True,
        )
        hass.wait()
    finally:
        for process in (hass, simulator):
            process.terminate()
        for process in (hass, simulator):
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
