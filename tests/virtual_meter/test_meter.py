"""A virtual meter's frames, silence while nothing may be served, and who asked what."""

from __future__ import annotations

import json

import pytest

from custom_components.shelly_energy.virtual_meter.guard import GridReading, Refusal, ServedValue
from custom_components.shelly_energy.virtual_meter.meter import (
    MinuteStats,
    RequestSeen,
    Transport,
    VirtualMeter,
)

from .conftest import WALL_START, ManualClock

UDP = Transport.UDP
MARSTEK = b'{"id":7,"method":"EM.GetStatus","params":{"id":0}}'


def test_a_marstek_datagram_gets_a_compact_frame(meter: VirtualMeter) -> None:
    reply = meter.frame(MARSTEK, client="192.0.2.10", transport=UDP)
    assert reply is not None
    frame = json.loads(reply)
    assert reply.startswith('{"id":7,"src":"shellypro3em-02a1b2c3d4e5","dst":"unknown","result":{')
    assert frame["result"]["total_act_power"] == 749.5
    assert 250 <= len(reply) <= 1024


@pytest.mark.parametrize(
    ("request_frame", "head"),
    [
        # dst is the request's src; ids are echoed whatever they are.
        (
            '{"id":"x1","src":"hm","method":"EM.GetStatus"}',
            '{"id":"x1","src":"shellypro3em-02a1b2c3d4e5","dst":"hm"',
        ),
        (
            '{"method":"EM.GetStatus","params":null}',
            '{"id":null,"src":"shellypro3em-02a1b2c3d4e5","dst":"unknown"',
        ),
        (
            '{"id":65535,"src":5,"method":"EM.GetStatus"}',
            '{"id":65535,"src":"shellypro3em-02a1b2c3d4e5","dst":"unknown"',
        ),
    ],
)
def test_frames_echo_the_id_and_answer_the_source(
    meter: VirtualMeter, request_frame: str, head: str
) -> None:
    reply = meter.frame(request_frame, client="192.0.2.10", transport=Transport.WEBSOCKET)
    assert reply is not None
    assert reply.startswith(head + ',"result":{"id":0,')


def test_an_unknown_method_gets_an_error_frame(meter: VirtualMeter) -> None:
    reply = meter.frame(
        '{"id":3,"src":"hm","method":"Foo.Bar"}', client="192.0.2.10", transport=UDP
    )
    assert reply == (
        '{"id":3,"src":"shellypro3em-02a1b2c3d4e5","dst":"hm",'
        '"error":{"code":404,"message":"No handler for Foo.Bar"}}'
    )


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\xff\xfe", b"[1,2]", b'{"id":1}', b'{"id":1,"method":5}', b"not json"],
)
def test_what_is_not_a_request_is_ignored(meter: VirtualMeter, garbage: bytes) -> None:
    assert meter.frame(garbage, client="192.0.2.10", transport=UDP) is None
    assert meter.requests_total == 0


def test_nothing_with_a_power_is_answered_while_stale(
    meter: VirtualMeter, clock: ManualClock
) -> None:
    clock.advance(3.5)
    assert meter.state() is Refusal.STALE
    for method in ("EM.GetStatus", "Shelly.GetStatus", "Shelly.GetComponents"):
        request = json.dumps({"id": 1, "method": method})
        assert meter.frame(request, client="192.0.2.10", transport=UDP) is None
        assert meter.call(method, {}, client="192.0.2.10", transport=Transport.HTTP) is None
    # Identity and configuration still answer, so that pairing works.
    assert meter.call("Shelly.GetDeviceInfo", {}, client="192.0.2.10", transport=UDP)
    assert meter.call("EM.GetConfig", {}, client="192.0.2.10", transport=UDP)
    meter.update(GridReading((1.0, 2.0, 3.0), time=clock.now))
    assert meter.frame(MARSTEK, client="192.0.2.10", transport=UDP) is not None


def test_a_paused_meter_is_silent(meter: VirtualMeter) -> None:
    meter.paused = True
    assert meter.state() is Refusal.PAUSED
    assert meter.frame(MARSTEK, client="192.0.2.10", transport=UDP) is None
    meter.paused = False
    assert isinstance(meter.state(), ServedValue)


def test_requests_are_logged_and_counted_per_minute(
    meter: VirtualMeter, clock: ManualClock
) -> None:
    clock.now = 6000.0  # the start of a minute
    for client in ("192.0.2.10", "192.0.2.10", "192.0.2.11"):
        meter.frame(MARSTEK, client=client, transport=UDP)
    assert meter.last_minute() == MinuteStats(0, frozenset())  # the minute is not over
    clock.advance(60)
    meter.call("Shelly.GetDeviceInfo", {}, client="192.0.2.12", transport=Transport.HTTP)
    assert meter.last_minute() == MinuteStats(3, frozenset({"192.0.2.10", "192.0.2.11"}))
    clock.advance(60)
    assert meter.last_minute() == MinuteStats(1, frozenset({"192.0.2.12"}))
    clock.advance(120)  # a whole minute without requests
    assert meter.last_minute() == MinuteStats(0, frozenset())
    assert meter.requests_total == 4
    assert list(meter.recent)[-1] == RequestSeen(
        WALL_START + 60, "192.0.2.12", Transport.HTTP, "Shelly.GetDeviceInfo", answered=True
    )
    assert meter.recent[0].answered is False  # the value was stale by then


def test_the_log_keeps_the_last_twenty(meter: VirtualMeter) -> None:
    for index in range(25):
        meter.call("Script.List", {}, client=f"192.0.2.{index}", transport=UDP)
    assert len(meter.recent) == 20
    assert meter.recent[0].client == "192.0.2.5"
