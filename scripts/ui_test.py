"""The setup wizard walked as a user in a real browser against a real Home Assistant (ui-test).

Starts the simulator (a Pro 3EM, a password-protected Pro EM-50, a Gen1 EM and a smart plug) and
Home Assistant with its frontend and this integration installed but not configured (a fresh
configuration under .ui-test/), creates the owner account through the REST API, logs in on the
real login page with Debian's Chromium, and walks the steps of WALK in order: each asserts what
the page shows, in the integration's own texts (translations/en.json), and saves a screenshot
to docs/images/ for the README. The first failing step stops the walk and leaves a screenshot,
the page's HTML and the logs in .ui-test/failure/.

Nothing leaves the machine: everything listens on 127.0.0.1, Chromium resolves no host name, and
every request the page makes to anything but loopback is blocked.

A new step is a function decorated with @walk_step, placed where it belongs in the walk; the
first line of its docstring is its title.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import time
import traceback
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from playwright.sync_api import Route, ViewportSize, expect, sync_playwright

from custom_components.shelly_energy.meter.models import model_name
from scripts.hass_instance import (
    REPO,
    STARTUP_TIMEOUT_S,
    Credentials,
    HassApi,
    free_port,
    prepare_config,
    skip_onboarding_integrations,
    start_hass,
)
from scripts.ui_frontend import Frontend

DOMAIN = "shelly_energy"
PACKAGE = REPO / "custom_components" / DOMAIN
INTEGRATION_NAME: str = json.loads((PACKAGE / "manifest.json").read_text())["name"]
STRINGS: dict[str, Any] = json.loads((PACKAGE / "translations" / "en.json").read_text())
WORK = REPO / ".ui-test"
FAILURE = WORK / "failure"
IMAGES = REPO / "docs" / "images"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",  # runs as root in CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    # No host name resolves: nothing can reach past loopback even if a request slipped through.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
VIEWPORT: ViewportSize = {
    "width": 1280,
    "height": 1200,
}  # tall enough for the site form without scrolling
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
TIMEOUT_MS = 20_000
# The simulator's live values change every 10 s and a meter is polled every 5 s.
LIVE_VALUE_TIMEOUT_MS = 45_000
METER_POWER = re.compile(r"-?[\d,]+\.\d W")  # "1,234.5 W": the meters' one decimal


@dataclass(frozen=True)
class Meter:
    """A simulated meter as the walk uses it."""

    name: str
    mac: str
    model: str
    host: str  # what the user types: 127.0.0.1:<port>
    password: str | None = None


# The simulator's meters by their use in the walk: KIND:PORT:OPTIONS (port 0: any free port).
MAINS_MAC, HEAT_PUMP_MAC, INVERTER_MAC, PLUG_MAC = (
    "A0DD6C0000A1",
    "A0DD6C0000A2",
    "A0DD6C0000A3",
    "A0DD6C0000A4",
)
HEAT_PUMP_PASSWORD = "heat-pump-pw"  # a throwaway password of a simulated device
METER_SPECS = [
    f"pro3em:0:mac={MAINS_MAC}:name=Mains:seed=3",
    f"proem50:0:mac={HEAT_PUMP_MAC}:name=Heat pump:seed=5:password={HEAT_PUMP_PASSWORD}",
    f"gen1_em:0:mac={INVERTER_MAC}:name=Inverter:seed=3:wiring=grid,solar",
    f"plug:0:mac={PLUG_MAC}:name=Plug",
]


class Simulator:
    """The simulator in its own process, with its control API on loopback."""

    def __init__(self, log_file: Path) -> None:
        """Start the simulator with METER_SPECS; its output goes to log_file."""
        self.control_url = f"http://127.0.0.1:{free_port()}"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "simulator",
                "--control-port",
                str(urlsplit(self.control_url).port),
                *(arg for spec in METER_SPECS for arg in ("--meter", spec)),
            ],
            cwd=REPO,
            stdout=log_file.open("wb"),
            stderr=subprocess.STDOUT,
        )

    def meters(self) -> dict[str, dict[str, Any]]:
        """Wait until the simulator serves, then return its meters by MAC."""
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{self.control_url}/meters", timeout=5) as reply:
                    return {meter["mac"]: meter for meter in json.load(reply)}
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                time.sleep(0.2)  # the simulator is starting: poll its control API again

    def set_power(self, mac: str, channel: str, watts: float) -> None:
        """Pin a channel's active power (W, signed) so the page must show exact values."""
        request = urllib.request.Request(
            f"{self.control_url}/meters/{mac}/set_power",
            data=json.dumps({"channel": channel, "watts": watts}).encode(),
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5):
            pass


@dataclass
class Lab:
    """What the walk works with: the user, the simulated meters and Home Assistant's log."""

    user: Credentials
    hass_log: Path
    simulator: Simulator
    mains: Meter
    heat_pump: Meter
    inverter: Meter
    plug: Meter
    unreachable_host: str


# The integration's texts as the wizard shows them.


def form(step_id: str, flow: str = "config") -> dict[str, Any]:
    """Return the texts of a form or menu (a step of the config or the options flow)."""
    step: dict[str, Any] = STRINGS[flow]["step"][step_id]
    return step


def error(key: str) -> str:
    """Return the text of a form error."""
    text: str = STRINGS["config"]["error"][key]
    return text


def entity_name(key: str, **placeholders: str) -> str:
    """Return a sensor's name as a device page shows it (without the device's name)."""
    name: str = STRINGS["entity"]["sensor"][key]["name"]
    return name.format(**placeholders)


def selector_option(selector: str, value: str) -> str:
    """Return the label of a selector's option (a phase, a grid metering mode)."""
    label: str = STRINGS["selector"][selector]["options"][value]
    return label


def channel_label(meter: Meter, channel: str) -> str:
    """Return how the site form names a meter's channel ("Mains phase A")."""
    if channel in "abc":
        return f"{meter.name} phase {channel.upper()}"
    return f"{meter.name} channel {channel}"


# The walk


@dataclass(frozen=True)
class Step:
    """One step of the walk."""

    title: str
    run: Callable[[Frontend, Lab], None]


WALK: list[Step] = []


def walk_step(run: Callable[[Frontend, Lab], None]) -> Callable[[Frontend, Lab], None]:
    """Add the decorated function to the walk, after the steps defined before it.

    The first line of its docstring is the step's title.
    """
    WALK.append(Step((run.__doc__ or run.__name__).splitlines()[0].rstrip("."), run))
    return run


def start_adding(ui: Frontend, what: str) -> None:
    """Add integration > Shelly Energy Monitor > `what` ("meter" or "site")."""
    ui.add_integration(INTEGRATION_NAME).click()
    ui.choose(form("user")["menu_options"][what])


def add_meter(ui: Frontend, host: str) -> None:
    """Start adding a meter and submit its address."""
    start_adding(ui, "meter")
    ui.type_text(form("meter")["data"]["host"], host)
    ui.submit()


def expect_added(ui: Frontend, title: str) -> None:
    """Expect the flow to end with a new entry called `title`."""
    ui.expect_success(f"Created configuration for {title}.")


@walk_step
def logs_in(ui: Frontend, lab: Lab) -> None:
    """Log in on the login page."""
    ui.log_in(lab.user)


@walk_step
def offers_meter_or_site(ui: Frontend, lab: Lab) -> None:
    """Find Shelly Energy Monitor under Add integration: it offers a meter or an energy site."""
    item = ui.add_integration(INTEGRATION_NAME)
    ui.shoot("add-integration", ui.add_integration_dialog(), down_to=item)
    item.click()
    menu = form("user")
    ui.expect_dialog(menu["title"], menu["description"], *menu["menu_options"].values())
    ui.shoot("wizard-menu")
    ui.close_dialog()


@walk_step
def adds_pro_3em(ui: Frontend, lab: Lab) -> None:
    """Add a Pro 3EM by its address."""
    start_adding(ui, "meter")
    meter_form = form("meter")
    ui.expect_dialog(meter_form["title"], meter_form["description"])
    ui.expect_fields(meter_form["data"]["host"])
    ui.type_text(meter_form["data"]["host"], lab.mains.host)
    ui.shoot("meter-address")
    ui.submit()
    expect_added(ui, lab.mains.name)
    # The new device, with its model and maker, under the message.
    ui.expect_dialog("Success!", lab.mains.name)
    expect(ui.dialog.get_by_text(f"{model_name(lab.mains.model)} (Shelly)")).to_be_visible()
    ui.shoot("meter-added")
    ui.finish()


@walk_step
def shows_live_power(ui: Frontend, lab: Lab) -> None:
    """Read the Pro 3EM's live power on its device page, and see it change."""
    ui.open_device(lab.mains.name)
    for phase in "ABC":
        ui.expect_state(entity_name("phase_power", phase=phase), METER_POWER)
    total = entity_name("total_power")
    ui.expect_state(total, METER_POWER)
    ui.expect_state_change(total, LIVE_VALUE_TIMEOUT_MS)
    ui.expect_state(total, METER_POWER)
    ui.shoot("meter-device", ui.entities_card("Sensors"))


@walk_step
def shows_address_errors(ui: Frontend, lab: Lab) -> None:
    """See the errors of an unreachable address and of a device that is not a meter."""
    host = form("meter")["data"]["host"]
    add_meter(ui, lab.unreachable_host)
    ui.expect_error(error("cannot_connect"))
    ui.shoot("error-cannot-connect")
    ui.type_text(host, lab.plug.host)
    ui.submit()
    ui.expect_error(error("not_energy_meter"))
    ui.shoot("error-not-a-meter")
    ui.close_dialog()


@walk_step
def asks_for_the_password(ui: Frontend, lab: Lab) -> None:
    """Add a meter with a password: a wrong one is refused, the right one works."""
    meter = lab.heat_pump
    assert meter.password is not None
    add_meter(ui, meter.host)
    credentials = form("credentials")
    password = credentials["data"]["password"]
    ui.expect_dialog(
        credentials["title"].format(name=meter.name),
        credentials["description"].format(
            model=model_name(meter.model), host=meter.host.partition(":")[0]
        ),
    )
    ui.expect_fields(password)
    ui.type_text(password, "not-the-password")
    ui.submit()
    ui.expect_error(error("invalid_auth"))
    ui.shoot("meter-password-wrong")
    ui.type_text(password, meter.password)
    ui.submit()
    expect_added(ui, meter.name)
    ui.shoot("meter-password-added")
    ui.finish()


@walk_step
def adds_gen1_em(ui: Frontend, lab: Lab) -> None:
    """Add a Gen1 Shelly EM the same way and read its channels."""
    add_meter(ui, lab.inverter.host)
    expect_added(ui, lab.inverter.name)
    ui.shoot("gen1-added")
    ui.finish()
    ui.open_device(lab.inverter.name)
    for channel in "12":
        ui.expect_state(entity_name("channel_power", channel=channel), METER_POWER)


@walk_step
def adds_energy_site(ui: Frontend, lab: Lab) -> None:
    """Create an energy site: a name, roles for the meters' channels, the grid metering."""
    start_adding(ui, "site")
    site = form("site")
    fields = site["data"]
    ui.expect_dialog(site["title"], site["description"])
    ui.expect_fields(*fields.values())
    ui.type_text(fields["name"], "Home")
    ui.add_choices(fields["grid"], *(channel_label(lab.mains, phase) for phase in "abc"))
    ui.add_choices(fields["solar"], channel_label(lab.inverter, "2"))
    ui.add_choices(fields["load"], channel_label(lab.heat_pump, "2"))
    ui.select_radio(selector_option("grid_metering", "balanced"))
    ui.shoot("site-roles")
    ui.submit()
    expect_added(ui, "Home")
    ui.finish()


# Mains' phases pinned from here on, so that the pages must show exact sums.
PINNED_MAINS_W = {"a": 1500.0, "b": 400.0, "c": -200.0}


@walk_step
def shows_site_flows(ui: Frontend, lab: Lab) -> None:
    """Read the site's power flows on its device page."""
    for phase, watts in PINNED_MAINS_W.items():
        lab.simulator.set_power(lab.mains.mac, phase, watts)
    ui.open_device("Home")
    load = entity_name("load_power", load=channel_label(lab.heat_pump, "2"))
    ui.expect_state(load, re.compile(r"[\d,]+ W"))
    # Balanced metering nets the phases: +1,500 +400 -200 W import 1,700 W.
    expect_site_grid(ui, net="1,700 W", imported="1,700 W", exported="0 W")
    ui.shoot("site-device", ui.entities_card("Sensors"))


def expect_site_grid(ui: Frontend, *, net: str, imported: str, exported: str) -> None:
    """Expect the site's device page to show these grid powers (waiting for the next poll)."""
    for key, text in (
        ("grid_net_power", net),
        ("grid_import_power", imported),
        ("grid_export_power", exported),
    ):
        ui.expect_state(entity_name(key), text, LIVE_VALUE_TIMEOUT_MS)


@walk_step
def changes_meter_options(ui: Frontend, lab: Lab) -> None:
    """Change the meter's options: poll faster, reverse phase A's CT; its power turns negative."""
    options = form("init", "options")
    labels = options["data"]
    phase_a = selector_option("channel", "a")
    ui.open_integration(DOMAIN)
    ui.configure(lab.mains.name)
    ui.expect_dialog(options["title"])
    ui.expect_fields(*labels.values())
    ui.type_number(labels["poll_interval"], 2)
    ui.check(phase_a)
    ui.shoot("meter-options")
    ui.submit()
    ui.expect_success("Options successfully saved.")
    ui.finish()
    ui.open_device(lab.mains.name)
    ui.expect_state(entity_name("phase_power", phase="A"), "-1,500.0 W", LIVE_VALUE_TIMEOUT_MS)
    ui.expect_state(entity_name("total_power"), "-1,300.0 W")
    ui.shoot("meter-reversed", ui.entities_card("Sensors"))
    # The form shows the stored options when opened again.
    ui.open_integration(DOMAIN)
    ui.configure(lab.mains.name)
    expect(ui.number_field(labels["poll_interval"])).to_have_value("2")
    expect(ui.checkbox(phase_a)).to_be_checked()
    ui.close_dialog()


@walk_step
def changes_site_options(ui: Frontend, lab: Lab) -> None:
    """Change the site's options to per-phase grid metering; import and export follow."""
    roles = form("roles", "options")
    # Phase A now reads -1,500 W: balanced, the phases net to an export of 1,300 W.
    ui.open_device("Home")
    expect_site_grid(ui, net="-1,300 W", imported="0 W", exported="1,300 W")
    ui.open_integration(DOMAIN)
    ui.configure("Home")
    ui.expect_dialog(roles["title"], roles["description"])
    for phase in "abc":
        expect(ui.dialog.get_by_text(channel_label(lab.mains, phase), exact=True)).to_be_visible()
    ui.select_radio(selector_option("grid_metering", "per_phase"))
    ui.shoot("site-options")
    ui.submit()
    ui.expect_success("Options successfully saved.")
    ui.finish()
    # Per phase, phase B's 400 W is imported while A and C export 1,700 W.
    ui.open_device("Home")
    expect_site_grid(ui, net="-1,300 W", imported="400 W", exported="1,700 W")


# Errors the browser reports from the frontend's scripts: the add-integration dialog of frontend
# 20250411.0 throws "reading 'domain'" while its list is filtered; nothing of this integration.
FRONTEND_SCRIPT_ERROR = re.compile(r" ERROR \(MainThread\) \[frontend\.js\.")


@walk_step
def logged_no_errors(ui: Frontend, lab: Lab) -> None:
    """Find no errors in Home Assistant's log (the frontend's own script errors aside)."""
    logged = [
        line
        for line in lab.hass_log.read_text(errors="replace").splitlines()
        if (" ERROR " in line and not FRONTEND_SCRIPT_ERROR.search(line))
        or line.startswith("Traceback")
    ]
    assert not logged, "\n".join(logged)


# The runner


@dataclass
class Outcome:
    """How the walk went."""

    passed: int = 0
    failed: int = 0
    skipped: int = 0


def run_walk(ui: Frontend, lab: Lab, logs: list[Path]) -> Outcome:
    """Run the steps in order; the first failure stops the walk and keeps its evidence."""
    outcome = Outcome()
    for number, step in enumerate(WALK, start=1):
        print(f"[{number:2}/{len(WALK)}] {step.title} ...", end=" ", flush=True)
        started = time.monotonic()
        try:
            step.run(ui, lab)
        except Exception:  # any failure of a step is reported with its evidence
            print(f"FAILED after {time.monotonic() - started:.1f} s", flush=True)
            traceback.print_exc()
            keep_evidence(ui, step, logs)
            outcome.failed = 1
            outcome.skipped = len(WALK) - number
            break
        print(f"ok ({time.monotonic() - started:.1f} s)", flush=True)
        outcome.passed += 1
    return outcome


def keep_evidence(ui: Frontend, step: Step, logs: list[Path]) -> None:
    """Keep the page (screenshot and HTML), the error and the logs in .ui-test/failure/."""
    FAILURE.mkdir(parents=True, exist_ok=True)
    (FAILURE / "error.txt").write_text(f"{step.title}\n\n{traceback.format_exc()}")
    kept = [FAILURE / "error.txt"]
    try:
        kept += ui.save_page(FAILURE)
    except Exception as err:  # a dead page must not hide the logs
        print(f"ui-test: could not save the page: {err}")
    for log in logs:
        if log.exists():
            kept.append(Path(shutil.copy(log, FAILURE / log.name)))
    print("ui-test: evidence kept in " + ", ".join(str(path.relative_to(REPO)) for path in kept))


class LoopbackGuard:
    """Let the page reach loopback only; count what it tried to reach elsewhere."""

    def __init__(self) -> None:
        """Start with nothing blocked."""
        self.blocked: list[str] = []

    def route(self, route: Route) -> None:
        """Continue a request to loopback; abort any other."""
        url = route.request.url
        if urlsplit(url).hostname in LOOPBACK_HOSTS:
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort("blockedbyclient")


async def onboard(base_url: str, user: Credentials) -> None:
    """Wait for Home Assistant, then create the owner account through the REST API."""
    async with aiohttp.ClientSession() as session:
        api = HassApi(session, base_url)
        await api.wait_until_up()
        await api.onboard(user)


def lab_from(simulator: Simulator, user: Credentials, hass_log: Path) -> Lab:
    """Describe the simulator's meters for the walk."""
    served = simulator.meters()

    def meter(mac: str, password: str | None = None) -> Meter:
        info = served[mac]
        return Meter(info["name"], mac, info["model"], f"127.0.0.1:{info['port']}", password)

    return Lab(
        user=user,
        hass_log=hass_log,
        simulator=simulator,
        mains=meter(MAINS_MAC),
        heat_pump=meter(HEAT_PUMP_MAC, HEAT_PUMP_PASSWORD),
        inverter=meter(INVERTER_MAC),
        plug=meter(PLUG_MAC),
        unreachable_host=f"127.0.0.1:{free_port()}",
    )


@contextmanager
def running(process: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    """Stop the process (by its own id) when the block ends."""
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> int:
    """Run the walk; return 0 when every step passed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--images", type=Path, default=IMAGES, help="where the screenshots go (docs/images)"
    )
    args = parser.parse_args()
    started = time.monotonic()
    for folder in (WORK / "config", WORK / "chromium", FAILURE):
        shutil.rmtree(folder, ignore_errors=True)
    WORK.mkdir(exist_ok=True)
    args.images.mkdir(parents=True, exist_ok=True)
    config, hass_log, sim_log = WORK / "config", WORK / "home-assistant.log", WORK / "simulator.log"
    base_url = f"http://127.0.0.1:{free_port()}"
    user = Credentials()
    guard = LoopbackGuard()
    with ExitStack() as stack:
        simulator = Simulator(sim_log)
        stack.enter_context(running(simulator.process))
        prepare_config(config, urlsplit(base_url).port or 0)
        skip_onboarding_integrations(config)
        stack.enter_context(running(start_hass(config, hass_log)))
        lab = lab_from(simulator, user, hass_log)
        try:
            asyncio.run(onboard(base_url, user))
        except TimeoutError:
            print(f"ui-test: Home Assistant did not start within {STARTUP_TIMEOUT_S} s: {hass_log}")
            return 1
        print(f"ui-test: Home Assistant up at {base_url} after {time.monotonic() - started:.1f} s")
        playwright = stack.enter_context(sync_playwright())
        browser = playwright.chromium.launch_persistent_context(
            WORK / "chromium",
            executable_path=CHROMIUM,
            args=CHROMIUM_FLAGS,
            headless=True,
            viewport=VIEWPORT,
            locale="en-US",
            timezone_id="Europe/Berlin",
        )
        stack.callback(browser.close)
        browser.route("**/*", guard.route)
        browser.set_default_timeout(TIMEOUT_MS)
        expect.set_options(timeout=TIMEOUT_MS)
        page = browser.pages[0] if browser.pages else browser.new_page()
        outcome = run_walk(Frontend(page, base_url, args.images), lab, [hass_log, sim_log])
    if guard.blocked:
        print(
            f"ui-test: blocked {len(guard.blocked)} requests past loopback: {guard.blocked[0]}, ..."
        )
    print(f"ui-test: screenshots in {args.images}")
    print(f"ui-test: finished in {time.monotonic() - started:.0f} s")
    summary = f"{outcome.passed} passed, {outcome.failed} failed"
    print(f"ui-test: {summary}" + (f", {outcome.skipped} skipped" if outcome.skipped else ""))
    return 1 if outcome.failed else 0


if __name__ == "__main__":
    sys.exit(main())
