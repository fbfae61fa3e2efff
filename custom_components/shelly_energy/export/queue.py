"""The durable bounded queue of samples waiting to be exported.

Samples leave the queue only when the server has confirmed them (or refused them for good), so
an outage or a restart loses nothing: the queue is saved as plain JSON-safe data and read back.
It is bounded: when full, the oldest sample makes room for the newest and is counted as dropped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from itertools import islice
from typing import Any, NamedTuple

STORAGE_VERSION = 1


class Sample(NamedTuple):
    """One node's values measured at one time: one row of an export.

    A named tuple rather than a dataclass: it is a row of the wire format and of the saved
    format, and unpacks as one.
    """

    time: int  # unix seconds when the values were measured
    node: str
    values: Mapping[str, float]  # finite numbers only (JSON has no NaN, Emoncms must never get one)


class ExportQueue:
    """Samples waiting to be sent, oldest first, at most `max_samples` of them.

    Every sample that ever entered has a position (0, 1, 2, ...): `position` is the one of the
    oldest sample still queued. A sender reads a batch with `peek`, posts it, and then calls
    `acknowledge` with the position after the last confirmed sample. Positions make this safe when
    the bound drops samples while a batch is on the wire: those are simply already gone.
    """

    def __init__(self, max_samples: int) -> None:
        if max_samples < 1:
            raise ValueError(f"max_samples must be at least 1, not {max_samples}")
        self._max_samples = max_samples
        self._samples: deque[Sample] = deque()
        self._position = 0
        self._dropped = 0
        self._revision = 0

    def __len__(self) -> int:
        """Return how many samples are queued."""
        return len(self._samples)

    @property
    def max_samples(self) -> int:
        """Return how many samples the queue holds at most."""
        return self._max_samples

    @property
    def dropped(self) -> int:
        """Return how many samples were dropped because the queue was full (saved with it)."""
        return self._dropped

    @property
    def position(self) -> int:
        """Return the position of the oldest queued sample (of the next one when empty)."""
        return self._position

    @property
    def revision(self) -> int:
        """Return a number that changes whenever the content changes: save when it did."""
        return self._revision

    def append(self, sample: Sample) -> None:
        """Queue a sample; when full, drop the oldest one to make room."""
        if len(self._samples) == self._max_samples:
            self._samples.popleft()
            self._position += 1
            self._dropped += 1
        self._samples.append(sample)
        self._revision += 1

    def peek(self, count: int) -> list[Sample]:
        """Return the oldest `count` samples (fewer if fewer are queued), leaving them queued."""
        return list(islice(self._samples, count))

    def acknowledge(self, end: int) -> None:
        """Remove every sample whose position is before `end`: they have been dealt with."""
        count = min(end - self._position, len(self._samples))
        if count <= 0:
            return
        for _ in range(count):
            self._samples.popleft()
        self._position += count
        self._revision += 1

    def to_dict(self) -> dict[str, Any]:
        """Return the queue as JSON-safe data for storage.

        Compact, since it may hold 100k+ samples: each distinct (node, input names) pair is
        written once under "layouts", and each sample is a list [time, layout, value, ...].
        """
        layouts: dict[tuple[str, tuple[str, ...]], int] = {}
        rows: list[list[Any]] = []
        for time, node, values in self._samples:
            layout = layouts.setdefault((node, tuple(values)), len(layouts))
            rows.append([time, layout, *values.values()])
        return {
            "version": STORAGE_VERSION,
            "dropped": self._dropped,
            "layouts": [[node, list(names)] for node, names in layouts],
            "samples": rows,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], max_samples: int) -> ExportQueue:
        """Return the queue saved by `to_dict`, bounded by `max_samples` (which may have changed).

        Raises ValueError when the data is of another version or malformed.
        """
        if data.get("version") != STORAGE_VERSION:
            raise ValueError(f"unsupported export queue version {data.get('version')!r}")
        try:
            layouts = [
                (str(node), [str(name) for name in names]) for node, names in data["layouts"]
            ]
            samples = [_sample(row, layouts) for row in data["samples"]]
            dropped = int(data["dropped"])
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise ValueError(f"malformed export queue: {err!r}") from err
        queue = cls(max_samples)
        excess = max(len(samples) - max_samples, 0)
        queue._samples.extend(islice(samples, excess, None))
        queue._dropped = dropped + excess
        return queue


def _sample(row: Iterable[Any], layouts: list[tuple[str, list[str]]]) -> Sample:
    """Return the sample saved as [time, layout, value, ...]."""
    time, layout, *values = row
    node, names = layouts[layout]
    return Sample(int(time), node, dict(zip(names, map(float, values), strict=True)))
