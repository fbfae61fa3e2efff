"""Tests of the durable bounded export queue."""

from __future__ import annotations

import json
from typing import Any

import pytest

from custom_components.shelly_energy.export.queue import STORAGE_VERSION, ExportQueue, Sample

T0 = 1_700_000_000


def sample(index: int, node: str = "garage") -> Sample:
    return Sample(T0 + 10 * index, node, {"power": float(index), "energy": 100.0 + index})


def filled(count: int, max_samples: int = 100) -> ExportQueue:
    queue = ExportQueue(max_samples)
    for index in range(count):
        queue.append(sample(index))
    return queue


def test_append_peek_and_acknowledge_keep_the_order() -> None:
    queue = filled(5)

    assert len(queue) == 5
    assert queue.position == 0
    assert queue.peek(2) == [sample(0), sample(1)]
    assert queue.peek(10) == [sample(index) for index in range(5)]
    assert len(queue) == 5  # peeking removes nothing

    queue.acknowledge(3)

    assert len(queue) == 2
    assert queue.position == 3
    assert queue.peek(10) == [sample(3), sample(4)]


def test_revision_changes_with_the_content_only() -> None:
    queue = ExportQueue(10)
    assert queue.revision == 0

    queue.append(sample(0))
    queue.append(sample(1))
    assert queue.revision == 2

    queue.peek(2)
    queue.acknowledge(0)  # nothing before position 0
    assert queue.revision == 2

    queue.acknowledge(2)
    assert queue.revision == 3


def test_a_full_queue_drops_the_oldest_and_counts_them() -> None:
    queue = filled(8, max_samples=5)

    assert queue.max_samples == 5
    assert len(queue) == 5
    assert queue.dropped == 3
    assert queue.position == 3
    assert queue.peek(5) == [sample(index) for index in range(3, 8)]


def test_acknowledge_skips_samples_the_bound_dropped_while_a_batch_was_sent() -> None:
    queue = filled(4, max_samples=4)
    position = queue.position
    batch = queue.peek(4)

    # While the batch is on the wire, two new samples push the two oldest out.
    queue.append(sample(4))
    queue.append(sample(5))
    queue.acknowledge(position + len(batch))

    assert queue.peek(10) == [sample(4), sample(5)]
    assert queue.position == 4
    assert queue.dropped == 2


def test_acknowledge_never_removes_more_than_is_queued() -> None:
    queue = filled(2)

    queue.acknowledge(10)

    assert len(queue) == 0
    assert queue.position == 2


def test_max_samples_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_samples must be at least 1, not 0"):
        ExportQueue(0)


def test_to_dict_is_compact_and_json_safe() -> None:
    queue = ExportQueue(10)
    queue.append(Sample(T0, "garage", {"power": 1.5, "energy": 2.0}))
    queue.append(Sample(T0, "house", {"power": -3.0}))
    queue.append(Sample(T0 + 10, "garage", {"power": 1.0, "energy": 2.5}))
    queue.append(Sample(T0 + 10, "garage", {"energy": 2.5}))

    data = queue.to_dict()

    assert data == {
        "version": STORAGE_VERSION,
        "dropped": 0,
        "layouts": [["garage", ["power", "energy"]], ["house", ["power"]], ["garage", ["energy"]]],
        "samples": [
            [T0, 0, 1.5, 2.0],
            [T0, 1, -3.0],
            [T0 + 10, 0, 1.0, 2.5],
            [T0 + 10, 2, 2.5],
        ],
    }
    json.dumps(data, allow_nan=False)


def test_to_dict_writes_only_the_layouts_in_use() -> None:
    queue = ExportQueue(10)
    queue.append(Sample(T0, "house", {"power": 1.0}))
    queue.append(Sample(T0 + 10, "garage", {"power": 2.0}))
    queue.acknowledge(1)

    assert queue.to_dict()["layouts"] == [["garage", ["power"]]]
    assert queue.to_dict()["samples"] == [[T0 + 10, 0, 2.0]]


def test_from_dict_maps_each_saved_layout_index() -> None:
    data = {
        "version": STORAGE_VERSION,
        "dropped": 0,
        "layouts": [["a", ["p"]], ["a", ["p"]], ["b", ["p"]]],  # not written so, but readable
        "samples": [[T0, 2, 1.0], [T0, 1, 2.0]],
    }

    restored = ExportQueue.from_dict(data, max_samples=10)

    assert restored.peek(2) == [Sample(T0, "b", {"p": 1.0}), Sample(T0, "a", {"p": 2.0})]


def test_values_come_back_as_floats() -> None:
    queue = ExportQueue(10)
    queue.append(Sample(T0, "garage", {"count": 3}))

    [sample] = queue.peek(1)

    assert sample.values == {"count": 3.0}
    assert type(sample.values["count"]) is float


def test_from_dict_restores_samples_and_dropped_count() -> None:
    queue = filled(6, max_samples=4)
    queue.append(Sample(T0 + 99, "house", {"power": 7.0}))

    restored = ExportQueue.from_dict(json.loads(json.dumps(queue.to_dict())), max_samples=4)

    assert restored.peek(10) == queue.peek(10)
    assert restored.dropped == 3
    assert restored.max_samples == 4
    assert restored.revision == 0
    assert restored.position == 0


def test_from_dict_with_a_smaller_bound_drops_the_oldest() -> None:
    data = filled(6).to_dict()

    restored = ExportQueue.from_dict(data, max_samples=2)

    assert restored.peek(10) == [sample(4), sample(5)]
    assert restored.dropped == 4


@pytest.mark.parametrize("version", [None, 0, 2, "1"])
def test_from_dict_refuses_other_versions(version: object) -> None:
    data = filled(1).to_dict()
    data["version"] = version

    with pytest.raises(ValueError, match="unsupported export queue version"):
        ExportQueue.from_dict(data, max_samples=10)


@pytest.mark.parametrize(
    "change",
    [
        {"samples": None},  # not a list
        {"layouts": [["garage"]]},  # no input names
        {"samples": [[T0, 5, 1.0, 2.0]]},  # no such layout
        {"samples": [[T0, -1, 1.0, 2.0]]},
        {"samples": [[T0, True, 1.0, 2.0]]},
        {"samples": [[T0, 0, 1.0]]},  # fewer values than names
        {"samples": [[T0, 0, 1.0, "many"]]},  # not a number
        {"samples": [[T0]]},  # no layout
        {"dropped": "x"},
    ],
)
def test_from_dict_refuses_malformed_data(change: dict[str, Any]) -> None:
    data = {**filled(1).to_dict(), **change}

    with pytest.raises(ValueError, match="malformed export queue"):
        ExportQueue.from_dict(data, max_samples=10)


def test_from_dict_refuses_data_without_a_part() -> None:
    data = filled(1).to_dict()
    del data["layouts"]

    with pytest.raises(ValueError, match="malformed export queue: KeyError"):
        ExportQueue.from_dict(data, max_samples=10)
