"""Reading numbers and flags out of device JSON, where any field may be absent, null or odd.

A field of the wrong type or out of its range reads None (unavailable): one bad field never
costs the rest of a reply.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

# 2020-01-01 00:00 UTC. A meter that has not synced its clock yet counts from 1970.
EARLIEST_VALID_TS = 1_577_836_800
# 2106-02-07: where the devices' 32-bit clocks end; a later time is garbage.
LATEST_VALID_TS = 2**32
# The most a meter's clock is believed ahead of ours (s): a meter's readings never go back in
# time, so one stamp far ahead (corrupt, or a clock set badly) would hold every later one there,
# and the counters would refuse what the meter counts meanwhile.
MAX_CLOCK_AHEAD_S = 10.0
# A Wi-Fi signal reported weaker than this (dBm) is garbage.
MIN_RSSI = -127
# Uptimes beyond a 32-bit counter of seconds are garbage too (136 years).
MAX_UPTIME_S = 2**32


def number(value: Any) -> float | None:
    """Return a finite number as float, anything else (null, bool, text, NaN) as None.

    A zero is always +0.0: devices send -0.0 (a CT with nothing flowing), which would show as
    "-0.0 W".
    """
    if type(value) is float:  # most fields: the quick way
        return value + 0.0 if math.isfinite(value) else None  # -0.0 + 0.0 is +0.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        result = float(value)
    except OverflowError:  # an integer beyond any float
        return None
    return result + 0.0 if math.isfinite(result) else None  # -0.0 + 0.0 is +0.0


def integer(value: Any, low: int, high: int) -> int | None:
    """Return a number within [low, high] as int (fractions cut off), anything else as None."""
    result = number(value)
    return int(result) if result is not None and low <= result <= high else None


def timestamp(value: Any) -> float | None:
    """Return a plausible unix time of a synced device clock, anything else as None."""
    result = number(value)
    return result if result is not None and EARLIEST_VALID_TS <= result < LATEST_VALID_TS else None


def meter_time(value: Any, now: float) -> float:
    """Return the time a meter's clock tells, at most MAX_CLOCK_AHEAD_S ahead of `now` (ours).

    `now` when it tells none (not synced yet). Capped rather than replaced by ours: a clock
    just ahead by about that much reads the same either side of the cap.
    """
    at = timestamp(value)
    return now if at is None else min(at, now + MAX_CLOCK_AHEAD_S)


def flag(value: Any) -> bool | None:
    """Return a JSON true/false, anything else as None."""
    return value if isinstance(value, bool) else None


def text(value: Any) -> str | None:
    """Return non-empty text, anything else as None."""
    return value if isinstance(value, str) and value else None


def mapping(value: Any) -> Mapping[str, Any]:
    """Return a JSON object, anything else as an empty one (all its fields then read None)."""
    return value if isinstance(value, dict) else {}


def strings(value: Any) -> tuple[str, ...]:
    """Return a device's list of flags or errors as a tuple of strings (absent: empty)."""
    if not isinstance(value, list):
        return ()
    return tuple(item for item in value if isinstance(item, str))


def decode_json(body: bytes) -> Any:
    """Decode a device's JSON reply, which may hold NaN or Infinity (read as None later).

    Python's own decoder takes them; orjson, which Home Assistant's HTTP client decodes with,
    refuses the whole reply for one such field. Raises ValueError for what is not JSON.
    """
    try:
        return json.loads(body.decode("utf-8", errors="replace"))
    except RecursionError as err:  # nested deeper than any reply
        raise ValueError("JSON nested too deeply") from err
