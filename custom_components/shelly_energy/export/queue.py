"""The durable bounded queue of samples waiting to be exported.

Samples leave the queue only when the server has confirmed them (or refused them for good), so
an outage or a restart loses nothing: the queue is saved as plain JSON-safe data and read back.
It is bounded: when full, the oldest sample makes room for the newest and is counted as dropped.
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Iterable, Mapping
from itertools import islice
from typing import Any, NamedTuple

STORAGE_VERSION = 1

type _Layout = tuple[str, tuple[str, ...]]  # a node and the names of its values
type _Row = tuple[int, int, array[float]]  # time, layout id, values


class Sample(NamedTuple):
    """One node's values measured at one time: one row of an export.

    A named tuple rather than a dataclass: it is a row of the wire format and unpacks as one.
    """

    time: int  # unix seconds when the values were measured
    node: str
    values: Mapping[str, float]  # finite numbers only (JSON has no NaN, Emoncms must never get one)


class QueueSnapshot(NamedTuple):
    """The content of a queue at one moment."""

    rows: tuple[_Row, ...]
    layouts: tuple[_Layout, ...]
    dropped: int

    def to_dict(self) -> dict[str, Any]:
        """Return the samples as JSON-safe data for storage.

        Compact, since a queue may hold 100k+ samples: each layout in use is written once, as
        [node, [names]] under "layouts", and each sample as [time, layout index, value, ...].
        """
        saved_index: dict[int, int] = {}  # layout id -> index in the saved layouts
        rows = [
            [time, saved_index.setdefault(layout_id, len(saved_index)), *values]
            for time, layout_id, values in self.rows
        ]
        layouts = [self.layouts[layout_id] for layout_id in saved_index]
        return {
            "version": STORAGE_VERSION,
            "dropped": self.dropped,
            "layouts": [[node, list(names)] for node, names in layouts],
            "samples": rows,
        }


class ExportQueue:
    """Samples waiting to be sent, oldest first, at most `max_samples` of them.

    Every sample that ever entered has a position (0, 1, 2, ...): `position` is the one of the
    oldest sample still queued. A sender reads a batch with `peek`, posts it, and then calls
    `acknowledge` with the position after the last confirmed sample. Positions make this safe when
    the bound drops samples while a batch is on the wire: those are simply already gone.

    A queue may hold a week of samples, so it keeps each one compact, as (time, layout, values):
    a layout (a node and its input names) is shared by every sample that has it, and the values
    are an array of doubles; about 250 bytes for 8 values, where a Sample takes about 580.
    """

    def __init__(self, max_samples: int) -> None:
        if max_samples < 1:
            raise ValueError(f"max_samples must be at least 1, not {max_samples}")
        self._max_samples = max_samples
        self._rows: deque[_Row] = deque()
        self._layouts: list[_Layout] = []
        self._layout_ids: dict[_Layout, int] = {}
        self._position = 0
        self._dropped = 0
        self._revision = 0

    def __len__(self) -> int:
        """Return how many samples are queued."""
        return len(self._rows)

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
        if len(self._rows) == self._max_samples:
            self._rows.popleft()
            self._position += 1
            self._dropped += 1
        layout_id = self._layout_id((sample.node, tuple(sample.values)))
        self._rows.append((sample.time, layout_id, array("d", sample.values.values())))
        self._revision += 1

    def peek(self, count: int) -> list[Sample]:
        """Return the oldest `count` samples (fewer if fewer are queued), leaving them queued."""
        samples = []
        for time, layout_id, values in islice(self._rows, count):
            node, names = self._layouts[layout_id]
            samples.append(Sample(time, node, dict(zip(names, values, strict=True))))
        return samples

    def acknowledge(self, end: int) -> None:
        """Remove every sample whose position is before `end`: they have been dealt with."""
        count = min(end - self._position, len(self._rows))
        if count <= 0:
            return
        for _ in range(count):
            self._rows.popleft()
        self._position += count
        self._revision += 1

    def snapshot(self) -> QueueSnapshot:
        """Return the queue as it is now, cheaply (rows are shared, never changed once queued).

        Its `to_dict` may then run in another thread while this queue goes on changing.
        """
        return QueueSnapshot(tuple(self._rows), tuple(self._layouts), self._dropped)

    def to_dict(self) -> dict[str, Any]:
        """Return the queue as JSON-safe data for storage (see `QueueSnapshot.to_dict`)."""
        return self.snapshot().to_dict()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], max_samples: int) -> ExportQueue:
        """Return the queue saved by `to_dict`, bounded by `max_samples` (which may have changed).

        Raises ValueError when the data is of another version or malformed.
        """
        if data.get("version") != STORAGE_VERSION:
            raise ValueError(f"unsupported export queue version {data.get('version')!r}")
        queue = cls(max_samples)
        try:
            layout_ids = [
                queue._layout_id((str(node), tuple(str(name) for name in names)))
                for node, names in data["layouts"]
            ]
            rows = [queue._saved_row(row, layout_ids) for row in data["samples"]]
            dropped = int(data["dropped"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"malformed export queue: {err!r}") from err
        excess = max(len(rows) - max_samples, 0)
        queue._rows.extend(islice(rows, excess, None))
        queue._dropped = dropped + excess
        return queue

    def _layout_id(self, layout: _Layout) -> int:
        """Return the id of a layout, giving it one if it is new."""
        layout_id = self._layout_ids.get(layout)
        if layout_id is None:
            layout_id = self._layout_ids[layout] = len(self._layouts)
            self._layouts.append(layout)
        return layout_id

    def _saved_row(self, saved: Iterable[Any], layout_ids: list[int]) -> _Row:
        """Return the row of a sample saved as [time, layout index, value, ...]."""
        time, index, *values = saved
        if type(index) is not int or not 0 <= index < len(layout_ids):
            raise ValueError(f"no layout {index!r}")
        layout_id = layout_ids[index]
        if len(values) != len(self._layouts[layout_id][1]):
            raise ValueError(f"{len(values)} values for layout {index}")
        return int(time), layout_id, array("d", values)
