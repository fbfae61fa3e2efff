"""A real Home Assistant killed without a clean stop: what reached the disk, and what continues.

Home Assistant runs as a process of its own (`scripts/hass_instance.py`, headless, with the
recorder) holding a simulated Pro 3EM, an energy site over it and the Emoncms export; the
simulator and the Emoncms double run in this test's process, on loopback. During an Emoncms
outage Home Assistant is killed (SIGKILL: no stop, no final write), then started again with
Emoncms back.

- Every sample queued more than a minute before the kill survives and reaches Emoncms once, in
  order; only the last minute's may be lost.
- The site's grid import and the meter's counter continue across the kill: what they add between
  the last sample before it and the first after is exactly what the meter counted meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from scripts.hass_instance import free_port, prepare_config, start_hass
from simulator import Clock, Simulator
from simulator.emoncms import EmoncmsDouble

DOMAIN = "shelly_energy"
WRITE_KEY = "0123456789abcdef0123456789abcdef"
READ_KEY = "fedcba9876543210fedcba9876543210"
EXPORT_INTERVAL_S = 5
SAVE_BOUND_S = 60  # the queue is on disk at most this long after a change
OUTAGE_S = SAVE_BOUND_S + 30
HEADLESS_FRONTEND = Path(__file__).parent / "headless" / "frontend"


def config_entry(
    domain: str, title: str, data: dict[str, Any], options: dict[str, Any], unique_id: str
) -> dict[str, Any]:
    """Return a config entry as Home Assistant stores it (storage minor version 5)."""
    now = datetime.now(UTC).isoformat()
    return {
        "created_at": now,
        "data": data,
        "disabled_by": None,
        "discovery_keys": {},
        "domain": domain,
        "entry_id": uuid.uuid4().hex,
        "minor_version": 1,
        "modified_at": now,
        "options": options,
        "pref_disable_new_entities": False,
        "pref_disable_polling": False,
        "source": "user",
        "subentries": [],
        "title": title,
        "unique_id": unique_id,
        "version": 1,
    }


def write_entries(config: Path, entries: list[dict[str, Any]]) -> None:
    storage = config / ".storage" / "core.config_entries"
    storage.parent.mkdir(parents=True, exist_ok=True)
    storage.write_text(
        json.dumps(
            {
                "version": 1,
                "minor_version": 5,
                "key": "core.config_entries",
                "data": {"entries": entries},
            }
        )
    )


def stored_queue(config: Path) -> list[list[Any]]:
    """Return the samples of the export's queue as they are on disk."""
    for path in (config / ".storage").glob(f"{DOMAIN}.emoncms.*"):
        return list(json.loads(path.read_text())["data"]["samples"])
    return []


async def wait_for(check: Callable[[], bool], seconds: float, what: str) -> None:
    try:
        async with asyncio.timeout(seconds):
            while True:
                if check():
                    return
                await asyncio.sleep(0.5)
    except TimeoutError:
        pytest.fail(what)


async def started(process: subprocess.Popen[bytes], check: Callable[[], bool], log: Path) -> None:
    """Wait until Home Assistant does what `check` looks for (it exports again)."""

    def up() -> bool:
        assert process.poll() is None, "Home Assistant ended"
        return check()

    await wait_for(up, 180, f"Home Assistant did not export (see {log})")


async def test_a_kill_during_an_outage_loses_nothing_older_than_a_minute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Home Assistant runs outside the test's coverage (pytest-cov would measure it otherwise).
    for name in ("COV_CORE_SOURCE", "COV_CORE_CONFIG", "COV_CORE_DATAFILE"):
        monkeypatch.delenv(name, raising=False)
    simulator = Simulator(Clock(), seed=5)
    meter = simulator.add_meter("pro3em")
    meter.set_power("a", 3600.0)  # 1 Wh a second
    meter.set_power("b", 0.0)
    meter.set_power("c", 0.0)
    config = tmp_path / "config"
    prepare_config(config, free_port(), components=("recorder",), integrations=(HEADLESS_FRONTEND,))
    async with simulator, EmoncmsDouble(write_key=WRITE_KEY, read_key=READ_KEY) as emoncms:
        port = simulator.server(meter).port
        write_entries(
            config,
            [
                config_entry(
                    DOMAIN,
                    "Mains",
                    {"host": "127.0.0.1", "port": port, "generation": 2, "model": meter.model},
                    {"poll_interval": 1},
                    meter.mac,
                ),
                config_entry(
                    DOMAIN,
                    "Home",
                    {"kind": "site"},
                    {"grid": [f"{meter.mac}:{phase}" for phase in "abc"]},
                    "site_home",
                ),
                config_entry(
                    DOMAIN,
                    "Emoncms (127.0.0.1)",
                    {"kind": "emoncms", "url": emoncms.url, "api_key": WRITE_KEY},
                    {"interval": EXPORT_INTERVAL_S, "values": ["energy", "site"], "nodes": {}},
                    "emoncms_127.0.0.1",
                ),
            ],
        )
        first_log = config / "first.log"
        hass = start_hass(config, first_log, repo_on_path=False)
        try:
            await started(hass, lambda: bool(emoncms.received.get("Home")), first_log)
            emoncms.set_down(True)
            outage = time.time()
            await asyncio.sleep(OUTAGE_S)
            hass.send_signal(signal.SIGKILL)
            killed = time.time()
            hass.wait(30)
        finally:
            if hass.poll() is None:
                hass.kill()
        on_disk = stored_queue(config)
        # Two nodes, a sample each every interval: all of the outage but its last minute.
        expected = 2 * int((killed - SAVE_BOUND_S - outage) / EXPORT_INTERVAL_S)
        assert expected - 2 <= len(on_disk) <= 2 * (OUTAGE_S // EXPORT_INTERVAL_S + 2), on_disk
        survivors = sorted({row[0] for row in on_disk})

        emoncms.set_down(False)
        second_log = config / "second.log"
        hass = start_hass(config, second_log, repo_on_path=False)
        try:
            # Back: the queue from disk is sent, then new samples (measured after the restart).
            await started(
                hass,
                lambda: any(t > killed + 5 for t, _ in emoncms.received["Mains"]["import_kwh_a"]),
                second_log,
            )
        finally:
            hass.terminate()
            await asyncio.to_thread(hass.wait, 60)
    meter_series = emoncms.received["Mains"]["import_kwh_a"]
    site_series = emoncms.received["Home"]["grid_import_kwh"]
    times = [sample_time for sample_time, _ in meter_series]
    assert times == sorted(set(times))  # each sample once, in order
    assert set(survivors) <= {*times, *(t for t, _ in site_series)}  # everything on disk arrived
    # Across the kill: the last sample before it that survived, and the first after the restart.
    before = max(index for index, (t, _) in enumerate(meter_series) if t <= killed)
    after = before + 1
    (t1, meter1), (t2, meter2) = meter_series[before], meter_series[after]
    assert t2 > killed
    # The meter counted 1 Wh a second meanwhile (its clock has whole seconds).
    assert (meter2 - meter1) * 1000 == pytest.approx(t2 - t1, abs=2.0)
    # The site's grid is this one counter (phases b and c stay at 0): site and meter rise
    # together, so their difference is the same before and after the kill (a sample of each is
    # taken at every export tick, the site's stamped a moment after the meter's last poll).
    differences = []
    for site_time, site_value in site_series:
        earlier = [value for t, value in meter_series if t <= site_time]
        if earlier:
            differences.append(site_value - earlier[-1])
    assert any(t > killed for t, _ in site_series)
    assert max(differences) - min(differences) == pytest.approx(0.0, abs=0.002)
