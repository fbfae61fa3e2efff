"""Digest authentication of Gen2+ downloads, against what the simulated devices check."""

from __future__ import annotations

import pytest

from custom_components.shelly_energy.meter.digest import DigestAuth
from simulator import Clock, SimulatedMeter
from simulator.rpc import DigestAuth as DeviceDigest


def test_answers_the_devices_challenge_with_a_new_count_each_time(clock: Clock) -> None:
    meter = SimulatedMeter("pro3em", clock=clock, password="s3cret")
    device = DeviceDigest(meter)
    auth = DigestAuth("admin", "s3cret")
    assert auth.authorization("GET", "/emdata/0/data.csv") is None  # not challenged yet
    assert auth.challenged(device.http_challenge())
    uri = "/emdata/0/data.csv?ts=1&end_ts=2&add_keys=true"
    first = auth.authorization("GET", uri)
    second = auth.authorization("GET", uri)
    assert first is not None and second is not None
    assert "nc=00000001" in first and "nc=00000002" in second
    assert device.check_header(first, "GET", uri)
    assert not device.check_header(first, "GET", "/emdata/1/data.csv")
    wrong = DigestAuth("admin", "guess")
    wrong.challenged(device.http_challenge())
    assert not device.check_header(wrong.authorization("GET", uri), "GET", uri)


@pytest.mark.parametrize(
    "header",
    [
        None,
        'Basic realm="shellypro3em"',
        'Digest realm="r", nonce="1", qop="auth", algorithm=MD5',
        'Digest realm="r", nonce="1", qop="auth-int"',
        'Digest realm="r", qop="auth", algorithm=SHA-256',  # no nonce
    ],
)
def test_only_sha256_auth_challenges_are_answered(header: str | None) -> None:
    auth = DigestAuth("admin", "pw")
    assert not auth.challenged(header)
    assert auth.authorization("GET", "/") is None
