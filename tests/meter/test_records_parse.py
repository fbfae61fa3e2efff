"""Parsing stored records: GetData replies, em_data.csv rows, merging series by stamp."""

from __future__ import annotations

import aiohttp
import pytest
from aioshelly.exceptions import DeviceConnectionError, DeviceConnectionTimeoutError
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from custom_components.shelly_energy.meter.client import error_text
from custom_components.shelly_energy.meter.errors import MeterConnectionError
from custom_components.shelly_energy.meter.records import (
    DataColumns,
    EnergyRecord,
    GarbageLog,
    RecordMerger,
    read_csv_line,
    read_data_reply,
)

KEYS = ["a_total_act_energy", "a_max_voltage", "a_total_act_ret_energy"]


def taken(merger: RecordMerger) -> list[EnergyRecord]:
    """Return every record the merger hands on."""
    return [record for batch in merger.take(2) for record in batch]


def test_read_csv_line() -> None:
    assert read_csv_line("2025-06-01 00:10,12.34,0.00,229.1,231.0") == (1748736600, 12.34, 0.0)
    assert read_csv_line("2025-06-01 00:10:00,1,2") == (1748736600, 1.0, 2.0)
    assert read_csv_line("2025-06-01 00:10,-1.00,abc,229.1,231.0") == (1748736600, None, None)
    assert read_csv_line("2025-06-01 00:10,inf") == (1748736600, None, None)
    assert read_csv_line("Another file transfer is in progress!") is None
    assert read_csv_line("") is None


def test_merger_fills_a_channel_without_the_row_with_zero() -> None:
    merger = RecordMerger(3)
    merger.add(120, 60, (0,), [1.0], [0.5])
    merger.add(60, 60, (2,), [3.0], [0.0])
    merger.add(120, 60, (2,), [2.0], [0.25])
    merger.add(180, 60, (1,), [9.0], [9.0])
    merger.drop(180)
    assert taken(merger) == [
        EnergyRecord(60, 60, (0.0, 0.0, 3.0), (0.0, 0.0, 0.0)),
        EnergyRecord(120, 60, (1.0, 0.0, 2.0), (0.5, 0.0, 0.25)),
    ]
    assert taken(merger) == []


def test_merger_hands_records_on_in_batches_and_starts_empty_at_once() -> None:
    merger = RecordMerger(1)
    for ts in (180, 60, 120):
        merger.add(ts, 60, (0,), [ts / 60], [0.0])
    batches = merger.take(2)
    merger.add(240, 60, (0,), [4.0], [0.0])  # collected for the next take, not this one
    assert list(batches) == [
        [EnergyRecord(60, 60, (1.0,), (0.0,)), EnergyRecord(120, 60, (2.0,), (0.0,))],
        [EnergyRecord(180, 60, (3.0,), (0.0,))],
    ]
    assert list(merger.take(2)) == [[EnergyRecord(240, 60, (4.0,), (0.0,))]]


def test_read_data_reply_keeps_the_window_and_skips_unusable_rows() -> None:
    reply = {
        "keys": KEYS,
        "data": [
            {
                "ts": 1000,
                "period": 60,
                "values": [[1, 230, 0], [2, 230, 0.5], [3], None, [4, 1, 0], [5, 1, 0]],
            }
        ],
    }
    merger = RecordMerger(1)
    garbage = GarbageLog("meter")
    columns = DataColumns([("a_total_act_energy", "a_total_act_ret_energy")])
    read_data_reply(reply, columns, (0,), merger, garbage, since=1060, until=1300)
    assert taken(merger) == [
        EnergyRecord(1060, 60, (2.0,), (0.5,)),
        EnergyRecord(1240, 60, (4.0,), (0.0,)),
    ]
    assert garbage.dropped == 2
    assert columns.imported == (0,)
    assert columns.exported == (2,)


def test_error_text_never_tells_request_headers() -> None:
    info = aiohttp.RequestInfo(
        URL("http://127.0.0.1/status"),
        "GET",
        CIMultiDictProxy(CIMultiDict({"Authorization": "Basic YWRtaW46c2VjcmV0"})),
    )
    response_error = aiohttp.ClientResponseError(info, (), status=503, message="busy")
    assert "YWRtaW46" in repr(response_error)
    assert error_text(response_error) == "HTTP 503"
    assert error_text(DeviceConnectionError(response_error)) == "DeviceConnectionError(HTTP 503)"
    calls = {1: {"method": "EMData.GetData", "auth": {"response": "digest"}}}
    assert error_text(DeviceConnectionTimeoutError(calls)) == "DeviceConnectionTimeoutError"
    assert error_text(TimeoutError()) == "TimeoutError"
    with pytest.raises(MeterConnectionError, match="keys is not a list"):
        DataColumns([]).update(None)
