"""Reading values out of device JSON: a bad field reads None, never more."""

from __future__ import annotations

import math

import pytest

from custom_components.shelly_energy.meter.values import (
    EARLIEST_VALID_TS,
    decode_json,
    flag,
    integer,
    mapping,
    number,
    text,
    timestamp,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (230.5, 230.5),
        (7, 7.0),
        (True, None),
        ("230.5", None),
        (None, None),
        (math.nan, None),
        (-math.inf, None),
        (10**400, None),  # an integer beyond any float
        ([1], None),
    ],
)
def test_number(value: object, expected: float | None) -> None:
    assert number(value) == expected


def test_the_other_readers() -> None:
    assert integer(-61.7, -127, 0) == -61
    assert integer(-200, -127, 0) is None
    assert integer(1e300, 0, 2**32) is None
    assert timestamp(EARLIEST_VALID_TS) == EARLIEST_VALID_TS
    assert timestamp(0) is None
    assert timestamp(-1e12) is None
    assert timestamp(2**40) is None
    assert flag(False) is False
    assert flag("false") is None
    assert text("") is None
    assert text(3) is None
    assert mapping([("a", 1)]) == {}


def test_decode_json_takes_nan_and_refuses_what_is_not_json() -> None:
    reply = decode_json(b'{"power":NaN,"voltage":Infinity,"pf":-Infinity,"name":"\xff"}')
    assert math.isnan(reply["power"])
    assert reply["voltage"] == math.inf
    assert reply["name"] == "\ufffd"
    for body in (b'{"power":', b"", b"[" * 100_000):
        with pytest.raises(ValueError):
            decode_json(body)


@pytest.mark.parametrize("zero", [-0.0, 0.0, 0, -0])
def test_a_zero_reads_positive(zero: float) -> None:
    value = number(zero)
    assert value == 0.0 and math.copysign(1, value) == 1
