"""Replies that real meters get wrong, made on purpose: one small function per kind of damage.

`garble` damages a reply the way buggy firmware, a flaky network stack or a half-written
update does: a value of the wrong type, null, NaN or Infinity, an absurd or negative number,
a number sent as text, a key missing. The servers apply it to replies an override marks.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

type Damage = Callable[[Any, random.Random], Any]


def wrong_type(value: Any, rng: random.Random) -> Any:
    """Return a value of another JSON type than `value` (an object becomes a number, ...)."""
    choices: list[Any] = [7, "x", [1, 2], {"a": 1}, True, -2.5]
    return rng.choice([choice for choice in choices if type(choice) is not type(value)])


def null(_value: Any, _rng: random.Random) -> Any:
    """Return null."""
    return None


def not_finite(_value: Any, rng: random.Random) -> Any:
    """Return NaN, Infinity or -Infinity (JSON has none, yet devices send them)."""
    return rng.choice([math.nan, math.inf, -math.inf])


def absurd_number(_value: Any, rng: random.Random) -> Any:
    """Return a huge, tiny or very negative number."""
    return rng.choice([1e300, -1e300, 10**30, -(10**12), -1, 2**63, 5e-324])


def number_as_text(value: Any, _rng: random.Random) -> Any:
    """Return a number as the text of it ("229.5"), anything else as "nan"."""
    return str(value) if isinstance(value, int | float) else "nan"


DAMAGES: tuple[Damage, ...] = (wrong_type, null, not_finite, absurd_number, number_as_text)
FINITE_DAMAGES: tuple[Damage, ...] = (wrong_type, null, absurd_number, number_as_text)


def garble(payload: Any, rng: random.Random, *, fields: int = 1, non_finite: bool = True) -> Any:
    """Return `payload` with `fields` places damaged (each a value replaced or a key removed).

    The whole payload is a place too: a reply may come back as a number. Without
    `non_finite`, no NaN or Infinity is put in (a WebSocket client that refuses them drops
    the whole frame). `payload` is changed in place where possible.
    """
    damages = DAMAGES if non_finite else FINITE_DAMAGES
    for _ in range(fields):
        places = _places(payload)
        container, key = places[rng.randrange(len(places))]
        if container is None:
            return rng.choice(damages)(payload, rng)
        if isinstance(container, dict) and rng.random() < 0.2:
            del container[key]
            continue
        container[key] = rng.choice(damages)(container[key], rng)
    return payload


def _places(payload: Any) -> list[tuple[Any, Any]]:
    """Return every (container, key) of a JSON document, and (None, None) for the whole."""
    places: list[tuple[Any, Any]] = [(None, None)]
    stack = [payload]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict | list):
            continue
        keys: Any = node.keys() if isinstance(node, dict) else range(len(node))
        for key in list(keys):
            places.append((node, key))
            stack.append(node[key])
    return places
