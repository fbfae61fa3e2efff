"""Fixtures for the meter clients' tests: a manual clock and meters served on loopback."""

from tests.loopback_meters import clock, serve, session

__all__ = ["clock", "serve", "session"]
