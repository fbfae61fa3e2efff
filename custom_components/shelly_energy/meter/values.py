"""Reading numbers and flags out of device JSON, where any field may be absent, null or odd."""

from __future__ import annotations

import math
from typing import Any


def number(value: Any) -> float | None:
    """Return a finite number as float, anything else (null, bool, text, NaN) as None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    result = float(value)
    return result if math.isfinite(result) else None


def strings(value: Any) -> tuple[str, ...]:
    """Return a device's list of flags or errors as a tuple of strings (absent: empty)."""
    if not isinstance(value, list):
        return ()
    return tuple(item for item in value if isinstance(item, str))
