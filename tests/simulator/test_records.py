"""Stored history: consistency with the counters, blocks, paging, quirks, speed."""

from __future__ import annotations

from typing import Any

import pytest

from simulator import EM1_KEYS, TRIPHASE_KEYS, Clock, RecordStore, SimulatedMeter
from simulator.records import RecordColumns, to_mwh
from simulator.rpc import RpcApi, RpcError

DAY = 86_400


def all_rows(
    api: RpcApi, method: str, component: int, since: int | None = None
) -> list[tuple[int, list[Any]]]:
    """Page through *Data.GetData like a client: (ts, values) of every row."""
    rows: list[tuple[int, list[Any]]] = []
    params: dict[str, Any] = {"id": component}
    if since is not None:
        params["ts"] = since
    while True:
        reply = api.call(method, params)
        for block in reply["data"]:
            rows += [
                (block["ts"] + i * block["period"], values)
                for i, values in enumerate(block["values"])
            ]
        if "next_record_ts" not in reply:
            return rows
        params["ts"] = reply["next_record_ts"]


def test_history_matches_the_counters_exactly(clock: Clock) -> None:
    meter = SimulatedMeter(
        "pro3em", clock=clock, seed=4, history_days=2, battery_wh=5000, rows_per_call=500
    )
    api = RpcApi(meter)
    assert len(meter.records) == 2 * 1440
    assert meter.records.blocks[0].ts == clock.now() - 2 * DAY
    clock.advance(3 * 3600 + 25)  # live records follow; stop mid-minute
    rows = all_rows(api, "EMData.GetData", 0)
    assert len(rows) == 2 * 1440 + 3 * 60
    assert [ts for ts, _ in rows] == list(
        range(int(clock.now()) - 2 * DAY - 3 * 3600 - 25, int(clock.now()) - 25, 60)
    )
    index = {key: position for position, key in enumerate(TRIPHASE_KEYS)}
    for phase_index, phase in enumerate("abc"):
        imported = sum(values[index[f"{phase}_total_act_energy"]] for _, values in rows)
        exported = sum(values[index[f"{phase}_total_act_ret_energy"]] for _, values in rows)
        in_mwh, out_mwh = meter.records.channel_energy_mwh(phase_index)
        assert (imported, exported) == (pytest.approx(in_mwh / 1000), pytest.approx(out_mwh / 1000))
    # At a period boundary the records account for every mWh of the counters.
    clock.advance(35)
    for phase_index in range(3):
        energy_in, energy_out = meter.counters(phase_index)
        assert meter.records.channel_energy_mwh(phase_index) == (
            to_mwh(energy_in * 3600),
            to_mwh(energy_out * 3600),
        )


def test_live_records_hold_the_pinned_power(clock: Clock) -> None:
    meter = SimulatedMeter("pro3em", clock=clock)
    meter.set_power("a", 600)
    meter.set_power("b", -1200, pf=0.5)
    meter.set_voltage("b", 240)
    clock.advance(120)
    reply = RpcApi(meter).call("EMData.GetData", {"id": 0, "ts": 0})
    assert reply["keys"] == list(TRIPHASE_KEYS)
    assert "next_record_ts" not in reply
    (block,) = reply["data"]
    assert (block["ts"], block["period"], len(block["values"])) == (clock.now() - 120, 60, 2)
    row = dict(zip(TRIPHASE_KEYS, block["values"][0], strict=True))
    assert (row["a_total_act_energy"], row["a_fund_act_energy"], row["a_total_act_ret_energy"]) == (
        10.0,
        10.0,
        0.0,
    )
    assert (row["a_max_act_power"], row["a_min_act_power"]) == (600.0, 600.0)
    assert (row["b_total_act_energy"], row["b_total_act_ret_energy"]) == (0.0, 20.0)
    assert (row["b_max_act_power"], row["b_max_aprt_power"]) == (-1200.0, 2400.0)
    assert (row["b_max_voltage"], row["b_min_voltage"], row["b_avg_voltage"]) == (
        240.0,
        240.0,
        240.0,
    )
    assert (row["b_avg_current"], row["b_lag_react_energy"]) == (10.0, 34.641)
    assert [row["n_max_current"], row["n_min_current"], row["n_avg_current"]] == [None, None, None]


def test_get_data_pages_with_next_record_ts(clock: Clock) -> None:
    meter = SimulatedMeter("pro3em", clock=clock, history_days=1)
    api = RpcApi(meter)
    start = int(clock.now()) - 3600
    reply = api.call("EMData.GetData", {"id": 0, "ts": start, "end_ts": start + 20 * 60})
    assert sum(len(block["values"]) for block in reply["data"]) == 6
    assert reply["next_record_ts"] == start + 6 * 60
    assert len(reply["keys"]) == 51
    pages, rows, ts = 0, 0, start
    while True:
        reply = api.call(
            "EMData.GetData", {"id": 0, "ts": ts, "end_ts": start + 20 * 60, "add_keys": False}
        )
        pages += 1
        rows += sum(len(block["values"]) for block in reply["data"])
        if "next_record_ts" not in reply:
            break
        ts = reply["next_record_ts"]
    assert (pages, rows) == (4, 21)  # end_ts is inclusive
    with pytest.raises(RpcError) as raised:
        api.call("EMData.GetData", {"id": 0, "ts": "yesterday"})
    assert (raised.value.code, raised.value.message) == (-103, "Invalid argument 'ts'")
    with pytest.raises(RpcError) as raised:
        api.call("EMData.GetData", {"id": 1})
    assert raised.value.code == -105


def test_em1_records_have_the_fourteen_keys(clock: Clock) -> None:
    meter = SimulatedMeter("emg3", clock=clock, history_days=0.5, rows_per_call=3)
    api = RpcApi(meter)
    reply = api.call("EM1Data.GetData", {"id": 1, "ts": 0})
    assert reply["keys"] == list(EM1_KEYS)
    assert len(reply["keys"]) == 14
    assert len(reply["data"][0]["values"][0]) == 14
    assert reply["next_record_ts"] == reply["data"][0]["ts"] + 180
    assert api.call("EM1Data.GetRecords", {"id": 0}) == {
        "data_blocks": [{"ts": int(clock.now()) - 720 * 60, "period": 60, "records": 720}]
    }


def test_power_loss_starts_a_new_block(clock: Clock) -> None:
    meter = SimulatedMeter("pro3em", clock=clock, history_days=0.25)
    start = int(clock.now()) - 360 * 60
    clock.advance(90)
    meter.power_loss(600)
    before = meter.counters("a")
    assert not meter.reachable()
    clock.advance(600)
    assert meter.counters("a") == before  # counters stood still
    assert meter.reachable()
    assert meter.state().uptime == 0
    clock.advance(300)
    blocks = RpcApi(meter).call("EMData.GetRecords", {"id": 0})["data_blocks"]
    assert blocks == [
        {"ts": start, "period": 60, "records": 362},  # the minute the power went is kept
        {"ts": start + 360 * 60 + 660, "period": 60, "records": 5},
    ]
    since = RpcApi(meter).call("EMData.GetRecords", {"id": 0, "ts": start + 361 * 60})
    assert since["data_blocks"][0] == {"ts": start + 361 * 60, "period": 60, "records": 1}


def test_bogus_records_come_first(clock: Clock) -> None:
    meter = SimulatedMeter("proem50", clock=clock, history_days=0.1)
    meter.bogus_records(3)
    blocks = RpcApi(meter).call("EM1Data.GetRecords", {"id": 0})["data_blocks"]
    assert blocks[0] == {"ts": 1000, "period": 60, "records": 3}
    assert blocks[1]["ts"] > 1_700_000_000
    first = RpcApi(meter).call("EM1Data.GetData", {"id": 0, "ts": 0})
    assert first["data"][0]["ts"] == 1000


def test_retention_drops_the_oldest(clock: Clock) -> None:
    meter = SimulatedMeter("pro3em", clock=clock, history_days=1, retention_days=1)
    oldest = meter.records.blocks[0].ts
    clock.advance(600)
    assert len(meter.records) == 1440
    assert meter.records.blocks[0].ts == oldest + 600


def test_store_trims_and_compacts() -> None:
    store = RecordStore(channels=1, period=60, capacity=5000)

    def records(count: int) -> list[RecordColumns]:
        floats = [1.0] * count
        return [
            RecordColumns(
                list(range(count)), [0] * count, floats, floats, floats, floats, floats, floats
            )
        ]

    store.extend(0, records(4000))
    store.extend(4000 * 60 + 600, records(4000))  # a gap: a second block
    assert len(store) == 5000
    assert [(block.ts, block.count) for block in store.blocks] == [
        (3000 * 60, 1000),
        (4000 * 60 + 600, 4000),
    ]
    store.extend(8000 * 60 + 600, records(5000))  # continues; enough dropped to compact
    assert len(store) == 5000
    assert store.data_blocks() == [{"ts": 8000 * 60 + 600, "period": 60, "records": 5000}]
    assert store.energy_mwh(store.blocks[0].start, 0) == (0, 0)
    with pytest.raises(ValueError):
        store.extend(0, records(1))


@pytest.mark.parametrize(("kind", "period"), [("pro3em", 60), ("3em63g3", 300), ("gen1_3em", 600)])
def test_sixty_days_generate_consistently(kind: str, period: int, clock: Clock) -> None:
    meter = SimulatedMeter(kind, clock=clock, history_days=60, battery_wh=8000)
    assert len(meter.records) == 60 * DAY // period
    for channel in range(3):
        energy_in, energy_out = meter.counters(channel)
        assert meter.records.channel_energy_mwh(channel) == (
            to_mwh(energy_in * 3600),
            to_mwh(energy_out * 3600),
        )
