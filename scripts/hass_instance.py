"""A real Home Assistant with its frontend and this integration, on loopback, for people and tools.

Used by `scripts/develop` (a local instance with simulated meters already added) and by the
browser test. Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_S = 120
TOKEN_RENEW_MARGIN_S = 60
CURRENCY = "EUR"  # of the amounts an energy site's tariff gives
TIME_ZONE = "Europe/Berlin"  # the instance's: its days and hours (the Energy dashboard's too)
CONFIGURATION = """\
# Written by scripts/hass_instance.py: a small Home Assistant for developing and testing.
homeassistant:
  name: Shelly Energy Monitor demo
  time_zone: {time_zone}
  unit_system: metric
  currency: {currency}
  country: DE
{components}logger:
  default: warning
  logs:
    custom_components.shelly_energy: info
http:
  server_host: 127.0.0.1
  server_port: {port}
"""
# What a person uses in a browser; a headless instance (the benchmark) has only what the REST API
# needs to onboard and add entries, and the recorder every real installation runs.
UI_COMPONENTS = (
    "frontend",
    "config",
    "onboarding",
    "energy",
    "history",
    "logbook",
    "recorder",
    "automation",
    "script",
)
HEADLESS_COMPONENTS = ("config", "onboarding", "recorder")


@dataclass
class Credentials:
    """The local user created at onboarding."""

    username: str = "dev"
    password: str = "dev"  # a throwaway account on a loopback-only instance


def prepare_config(
    config_dir: Path,
    port: int,
    *,
    components: tuple[str, ...] = UI_COMPONENTS,
    integrations: tuple[Path, ...] = (),
) -> None:
    """Write a configuration and link this repository's integration and blueprints into it.

    `components` are set up from configuration.yaml; `integrations` are folders of further
    custom integrations to link (each set up too, under its folder's name).
    """
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "configuration.yaml").write_text(
        CONFIGURATION.format(
            port=port,
            currency=CURRENCY,
            time_zone=TIME_ZONE,
            components="".join(
                f"{name}:\n" for name in (*components, *(path.name for path in integrations))
            ),
        )
    )
    links = [
        (REPO / "custom_components" / "shelly_energy", "custom_components/shelly_energy"),
        (
            REPO / "blueprints" / "automation" / "shelly_energy",
            "blueprints/automation/shelly_energy",
        ),
        *((path, f"custom_components/{path.name}") for path in integrations),
    ]
    for source, target in links:
        link = config_dir / target
        if source.exists() and not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(source)


def skip_onboarding_integrations(config_dir: Path) -> None:
    """Mark the onboarding steps after the owner account done, before the first start.

    Onboarding's core-config step adds integrations that reach the internet (Met, Radio Browser,
    Google Translate); an instance that must talk to loopback only gets none of them.
    `HassApi.onboard` then creates the owner account and skips the steps done.
    """
    storage = config_dir / ".storage" / "onboarding"
    storage.parent.mkdir(parents=True, exist_ok=True)
    storage.write_text(
        json.dumps(
            {
                "version": 4,
                "minor_version": 1,
                "key": "onboarding",
                "data": {"done": ["core_config", "analytics", "integration"]},
            }
        )
    )


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def start_hass(
    config_dir: Path,
    log_file: Path,
    env: Mapping[str, str] | None = None,
    *,
    repo_on_path: bool = True,
) -> subprocess.Popen[bytes]:
    """Start Home Assistant without letting it install packages (scripts/setup did).

    `env` adds environment variables (e.g. PYTHONTRACEMALLOC). With `repo_on_path` this
    repository is on the module path (PYTHONPATH and the working directory); its
    `custom_components` then hides the configuration's own folder, so an instance that needs
    another custom integration (the benchmark's probe) runs without, in the configuration folder.
    """
    log = log_file.open("wb")
    environment = {**os.environ, **(env or {})}
    if repo_on_path:
        environment["PYTHONPATH"] = str(REPO)
    else:
        environment.pop("PYTHONPATH", None)
    return subprocess.Popen(
        [sys.executable, "-m", "homeassistant", "--config", str(config_dir), "--skip-pip"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=environment,
        cwd=None if repo_on_path else config_dir,
    )


class HassApi:
    """The few REST calls needed to onboard, log in and add config entries."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        """Talk to the instance at base_url (e.g. http://127.0.0.1:8123)."""
        self.session = session
        self.base_url = base_url
        self.client_id = f"{base_url}/"
        self.token: str | None = None
        self.refresh_token: str | None = None
        self.token_expires = 0.0

    async def wait_until_up(self) -> None:
        """Wait until the HTTP API answers (the front page only redirects, so ask onboarding)."""
        async with asyncio.timeout(STARTUP_TIMEOUT_S):
            while True:
                try:
                    async with self.session.get(f"{self.base_url}/api/onboarding") as response:
                        if response.status in (200, 401):
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.5)

    async def onboarded(self) -> bool:
        """Return whether the owner account exists already."""
        return "user" in await self._onboarding_steps_done()

    async def _onboarding_steps_done(self) -> set[str]:
        async with self.session.get(f"{self.base_url}/api/onboarding") as response:
            steps = await response.json()
        return {step["step"] for step in steps if step["done"]}

    async def onboard(self, user: Credentials) -> None:
        """Create the owner account and finish onboarding without a browser."""
        async with self.session.post(
            f"{self.base_url}/api/onboarding/users",
            json={
                "client_id": self.client_id,
                "name": "Developer",
                "username": user.username,
                "password": user.password,
                "language": "en",
            },
        ) as response:
            response.raise_for_status()
            code = (await response.json())["auth_code"]
        await self._token({"grant_type": "authorization_code", "code": code})
        done = await self._onboarding_steps_done()
        for step, body in (
            ("core_config", {}),
            ("analytics", {}),
            ("integration", {"client_id": self.client_id, "redirect_uri": self.client_id}),
        ):
            if step not in done:
                await self.post(f"/api/onboarding/{step}", body)

    async def login(self, user: Credentials) -> None:
        """Log in with the login flow, as the frontend does."""
        flow = await self.post(
            "/auth/login_flow",
            {
                "client_id": self.client_id,
                "handler": ["homeassistant", None],
                "redirect_uri": self.client_id,
            },
        )
        result = await self.post(
            f"/auth/login_flow/{flow['flow_id']}",
            {"client_id": self.client_id, "username": user.username, "password": user.password},
        )
        await self._token({"grant_type": "authorization_code", "code": result["result"]})

    async def _token(self, form: dict[str, str]) -> None:
        async with self.session.post(
            f"{self.base_url}/auth/token", data={**form, "client_id": self.client_id}
        ) as response:
            response.raise_for_status()
            grant = await response.json()
        self.token = grant["access_token"]
        self.refresh_token = grant.get("refresh_token", self.refresh_token)
        self.token_expires = time.monotonic() + grant["expires_in"]

    async def get(self, path: str) -> Any:
        """GET an API path with the access token."""
        async with self.session.get(
            f"{self.base_url}{path}", headers=await self._auth()
        ) as response:
            response.raise_for_status()
            return await response.json()

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        """POST JSON to an API path with the access token (when there is one)."""
        async with self.session.post(
            f"{self.base_url}{path}", json=body, headers=await self._auth()
        ) as response:
            if response.status >= 400:  # Home Assistant says why in the body
                raise RuntimeError(f"POST {path}: {response.status} {await response.text()}")
            return await response.json()

    async def delete(self, path: str) -> Any:
        """DELETE an API path with the access token."""
        async with self.session.delete(
            f"{self.base_url}{path}", headers=await self._auth()
        ) as response:
            response.raise_for_status()
            return await response.json()

    async def _auth(self) -> dict[str, str]:
        if self.token is None:
            return {}
        # Access tokens last 30 minutes; a full benchmark runs longer than that.
        if self.refresh_token and time.monotonic() > self.token_expires - TOKEN_RENEW_MARGIN_S:
            await self._token({"grant_type": "refresh_token", "refresh_token": self.refresh_token})
        return {"Authorization": f"Bearer {self.token}"}

    async def run_flow(self, handler: str, *steps: dict[str, Any]) -> dict[str, Any]:
        """Start a config flow and answer its steps in order; return the last result."""
        result: dict[str, Any] = await self.post(
            "/api/config/config_entries/flow", {"handler": handler}
        )
        for answer in steps:
            result = await self.post(f"/api/config/config_entries/flow/{result['flow_id']}", answer)
        return result

    async def entries(self, domain: str) -> list[dict[str, Any]]:
        """Return the config entries of a domain."""
        entries: list[dict[str, Any]] = await self.get(
            f"/api/config/config_entries/entry?domain={domain}"
        )
        return entries
