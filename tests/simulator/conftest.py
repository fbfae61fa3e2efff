"""Fixtures for the simulator's tests: loopback sockets, a manual clock, served meters."""

from __future__ import annotations

import pytest

from tests.loopback_meters import clock, serve, session

__all__ = ["clock", "serve", "session"]


@pytest.fixture(autouse=True)
def _loopback_sockets(socket_enabled: None) -> None:
    """Let the tests open sockets (Home Assistant's pytest plugin blocks them)."""
