"""Tests of the Emoncms client and sender, against the Emoncms double over loopback HTTP."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping

import aiohttp
import pytest
from aiohttp import web

from custom_components.shelly_energy.export.emoncms import (
    DEFAULT_BATCH_SIZE,
    DrainResult,
    EmoncmsAuthError,
    EmoncmsClient,
    EmoncmsConnectionError,
    EmoncmsRejectedError,
    EmoncmsSender,
    ExportState,
    clean_input_name,
    clean_node_name,
    retry_delay,
    sendable_values,
)
from custom_components.shelly_energy.export.queue import ExportQueue, Sample
from simulator.emoncms import NOT_AN_OBJECT, EmoncmsDouble

from .conftest import READ_KEY, T0, WRITE_KEY, FakeClock

LOGGER_NAME = "custom_components.shelly_energy.export.emoncms"
USER_AGENT = "ShellyEnergyMonitor/1.2.3 (+https://github.com/shelly-energy-monitor/shelly_energy)"


def make_client(
    session: aiohttp.ClientSession, url: str, key: str = WRITE_KEY, timeout: float = 10.0
) -> EmoncmsClient:
    return EmoncmsClient(session, key, version="1.2.3", url=url, timeout=timeout)


def make_sender(
    client: EmoncmsClient,
    queue: ExportQueue | None = None,
    clock: FakeClock | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> EmoncmsSender:
    return EmoncmsSender(
        client,
        queue if queue is not None else ExportQueue(100_000),
        clock=clock if clock is not None else FakeClock(),
        random=lambda: 0.5,  # no jitter
        batch_size=batch_size,
    )


def our_records(caplog: pytest.LogCaptureFixture, level: int) -> list[tuple[int, str]]:
    """Return the (level, message) of the sender's log records at `level` or above."""
    return [
        (record.levelno, record.getMessage())
        for record in caplog.records
        if record.name == LOGGER_NAME and record.levelno >= level
    ]


# Names and values


@pytest.mark.parametrize(
    ("name", "cleaned"),
    [
        ("Pro 3EM (Garage)!", "Pro_3EM_Garage"),
        ("garage_1-a.b", "garage_1-a.b"),
        ("Küche 2", "Küche_2"),
        ("  a \t&\n b  ", "a_b"),
        ("0123456789abcdefXYZ", "0123456789abcdef"),
        ("0123456789abcde fXYZ", "0123456789abcde"),  # no trailing space after cutting
        ("!!!", ""),
    ],
)
def test_clean_node_name(name: str, cleaned: str) -> None:
    assert clean_node_name(name) == cleaned


def test_clean_input_name_keeps_64_characters() -> None:
    assert clean_input_name("power (W)") == "power W"
    assert clean_input_name("x" * 70) == "x" * 64


def test_sendable_values_keeps_finite_numbers_only() -> None:
    values: dict[str, object] = {
        "int": 5,
        "float": -1.5,
        "zero": 0.0,
        "nan": float("nan"),
        "inf": float("inf"),
        "-inf": float("-inf"),
        "none": None,
        "bool": True,
        "text": "12",
        "(!)": 3.0,  # no usable character in the name
        "power (W)": 2.0,
    }

    assert sendable_values(values) == {"int": 5, "float": -1.5, "zero": 0.0, "power W": 2.0}


# The client


def test_the_client_refuses_urls_that_are_not_http() -> None:
    with pytest.raises(ValueError, match="not an http"):
        EmoncmsClient(None, WRITE_KEY, version="1", url="emoncms.org")  # type: ignore[arg-type]


async def test_repr_and_url_hide_the_key(session: aiohttp.ClientSession) -> None:
    client = make_client(session, f"https://example.org/emoncms/?apikey={WRITE_KEY}#x")

    assert client.url == "https://example.org/emoncms"
    assert repr(client) == "EmoncmsClient(url='https://example.org/emoncms')"


async def test_post_bulk_delivers_node_names_and_times(
    double: EmoncmsDouble, session: aiohttp.ClientSession
) -> None:
    client = make_client(session, double.url)

    await client.post_bulk(
        [
            (T0, "Pro 3EM (Garage)!", {"power a": -1.5, "energy_in (kWh)": 3}),
            (T0 + 10, "Pro 3EM (Garage)!", {"power a": 2.25}),
            (T0 + 10, "house", {"power": 100.0}),
        ]
    )

    assert double.received == {
        "Pro_3EM_Garage": {"power a": [(T0, -1.5), (T0 + 10, 2.25)], "energy_in kWh": [(T0, 3.0)]},
        "house": {"power": [(T0 + 10, 100.0)]},
    }
    [request] = double.requests
    assert (request.method, request.path, request.query_string) == ("POST", "/input/bulk", "time=0")
    assert request.headers["Authorization"] == f"Bearer {WRITE_KEY}"
    assert request.headers["User-Agent"] == USER_AGENT
    assert request.form == {
        "data": f'[[{T0},"Pro_3EM_Garage",{{"power a":-1.5,"energy_in kWh":3}}],'
        f'[{T0 + 10},"Pro_3EM_Garage",{{"power a":2.25}}],[{T0 + 10},"house",{{"power":100.0}}]]'
    }


async def test_post_bulk_below_a_path_prefix(
    socket_enabled: None, session: aiohttp.ClientSession
) -> None:
    async with EmoncmsDouble(
        write_key=WRITE_KEY, read_key=READ_KEY, path_prefix="/emoncms"
    ) as double:
        client = make_client(session, f"{double.url}/")

        await client.post_bulk([(T0, "garage", {"power": 1.0})])

    assert double.url.endswith("/emoncms")
    assert double.requests[0].path == "/emoncms/input/bulk"
    assert double.received == {"garage": {"power": [(T0, 1.0)]}}


async def test_post_bulk_never_sends_nan_none_bools_or_strings(
    double: EmoncmsDouble, session: aiohttp.ClientSession
) -> None:
    client = make_client(session, double.url)

    await client.post_bulk(
        [
            (T0, "garage", {"power": float("nan"), "energy": 1.0, "flag": True, "text": "7"}),
            (T0 + 10, "garage", {"power": None, "energy": float("inf")}),  # nothing left
            (T0 + 20, "garage", {"power": 2.0, "energy": float("-inf")}),
        ]
    )

    assert double.received == {"garage": {"energy": [(T0, 1.0)], "power": [(T0 + 20, 2.0)]}}
    assert double.requests[0].form["data"] == (
        f'[[{T0},"garage",{{"energy":1.0}}],[{T0 + 20},"garage",{{"power":2.0}}]]'
    )


async def test_post_bulk_with_nothing_to_send_posts_nothing(
    double: EmoncmsDouble, session: aiohttp.ClientSession
) -> None:
    client = make_client(session, double.url)

    await client.post_bulk([(T0, "garage", {"power": None})])
    await client.post_bulk([])

    assert double.requests == []


async def test_post_samples_sends_queued_samples_as_they_are(
    double: EmoncmsDouble, session: aiohttp.ClientSession
) -> None:
    client = make_client(session, double.url)

    await client.post_samples(
        [Sample(T0, "garage", {"power": 1.5, "import_kwh": 2.0}), Sample(T0 + 10, "house", {})]
    )
    await client.post_samples([])

    [request] = double.requests
    assert request.form == {
        "data": f'[[{T0},"garage",{{"power":1.5,"import_kwh":2.0}}],[{T0 + 10},"house",{{}}]]'
    }


async def test_an_invalid_key_is_an_auth_error(
    double: EmoncmsDouble, session: aiohttp.ClientSession
) -> None:
    bad_key = "a" * 32
    client = make_client(session, double.url, key=bad_key)

    with pytest.raises(EmoncmsAuthError) as raised:
        await client.post_bulk([(T0, "garage", {"power": 1.0})])

    assert str(raised.value) == "Emoncms refused the API key: Invalid API key"
    assert bad_key not in repr(client)
    assert double.received == {}


async def test_the_read_key_gets_an_empty_200_which_is_an_auth_error(
    double: EmoncmsDouble, session: aiohttp.ClientSession
) -> None:
    client = make_client(session, double.url, key=READ_KEY)

    with pytest.raises(EmoncmsAuthError) as raised:
        await client.post_bulk([(T0, "garage", {"power": 1.0})])

    assert str(raised.value) == "the API key can read but not write: use the write API key"
    assert READ_KEY not in str(raised.value)
    assert double.received == {}


async def test_refused_data_is_a_rejected_error_with_the_server_message(
    double: EmoncmsDouble, session: aiohttp.ClientSession
) -> None:
    double.poison(lambda row_time, node, values: row_time == T0 + 10)
    client = make_client(session, double.url)

    with pytest.raises(EmoncmsRejectedError) as raised:
        await client.post_bulk([(T0 + 10 * i, "garage", {"power": float(i)}) for i in range(3)])

    assert str(raised.value) == NOT_AN_OBJECT
    # The post is not atomic: the row before the refused one was stored, the one after not.
    assert double.received == {"garage": {"power": [(T0, 0.0)]}}


async def test_connection_refused_is_a_connection_error(
    socket_enabled: None, session: aiohttp.ClientSession
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = make_client(session, f"http://127.0.0.1:{port}")

    with pytest.raises(EmoncmsConnectionError, match=rf"cannot reach http://127.0.0.1:{port}: "):
        await client.post_bulk([(T0, "garage", {"power": 1.0})])


async def test_a_dropped_connection_is_a_connection_error(
    double: EmoncmsDouble, session: aiohttp.ClientSession
) -> None:
    double.set_down(True)
    client = make_client(session, double.url)

    with pytest.raises(EmoncmsConnectionError) as raised:
        await client.post_bulk([(T0, "garage", {"power": 1.0})])

    assert str(raised.value) == f"cannot reach {double.url}: Server disconnected"


async def test_a_503_is_a_connection_error(
    double: EmoncmsDouble, session: aiohttp.ClientSession
) -> None:
    double.set_down(True, status=503)
    client = make_client(session, double.url)

    with pytest.raises(EmoncmsConnectionError) as raised:
        await client.post_bulk([(T0, "garage", {"power": 1.0})])

    assert str(raised.value) == "HTTP 503: Service Unavailable"


async def test_garbage_is_a_connection_error_not_a_verdict_on_the_data(
    double: EmoncmsDouble, session: aiohttp.ClientSession
) -> None:
    double.set_garbage(True)
    client = make_client(session, double.url)

    with pytest.raises(EmoncmsConnectionError) as raised:
        await client.post_bulk([(T0, "garage", {"power": 1.0})])

    assert str(raised.value) == (
        "not an Emoncms answer: <html><head><title>Welcome</title></head>"
        "<body><h1>It works!</h1></body></html>"
    )


async def test_an_unknown_controller_406_is_a_connection_error(
    double: EmoncmsDouble, session: aiohttp.ClientSession
) -> None:
    client = make_client(session, f"{double.url}/wrong")

    with pytest.raises(EmoncmsConnectionError) as raised:
        await client.post_bulk([(T0, "garage", {"power": 1.0})])

    assert str(raised.value) == "HTTP 406: URI not acceptable. No route found"


async def test_the_false_of_an_unknown_action_is_a_connection_error(
    double: EmoncmsDouble, session: aiohttp.ClientSession
) -> None:
    client = make_client(session, f"{double.url}/input/x")  # posts to /input/x/input/bulk

    with pytest.raises(EmoncmsConnectionError) as raised:
        await client.post_bulk([(T0, "garage", {"power": 1.0})])

    assert str(raised.value) == "not an Emoncms answer: false"


async def test_the_timeout_is_honoured(
    double: EmoncmsDouble, session: aiohttp.ClientSession
) -> None:
    double.set_delay(2.0)
    client = make_client(session, double.url, timeout=0.2)
    started = time.monotonic()

    with pytest.raises(EmoncmsConnectionError) as raised:
        await client.post_bulk([(T0, "garage", {"power": 1.0})])

    assert time.monotonic() - started < 1.0
    assert str(raised.value) == "no answer within 0.2 s"


class ScriptedServer:
    """A server answering every request with whatever `reply` returns."""

    def __init__(self) -> None:
        self.url = ""
        self.reply: Callable[[web.Request], web.Response] = lambda request: web.Response()


@pytest.fixture
async def scripted(socket_enabled: None) -> AsyncIterator[ScriptedServer]:
    server = ScriptedServer()

    async def handle(request: web.Request) -> web.Response:
        return server.reply(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    server.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield server
    await runner.cleanup()


@pytest.mark.parametrize("body", ["ok", " ok\n", '{"success": true}', '{"success":true}'])
async def test_success_answers(
    scripted: ScriptedServer, session: aiohttp.ClientSession, body: str
) -> None:
    scripted.reply = lambda request: web.Response(text=body)

    await make_client(session, scripted.url).post_bulk([(T0, "garage", {"power": 1.0})])


@pytest.mark.parametrize(
    "answer",
    [
        (200, '{"success": false, "message": "Too bad"}', EmoncmsRejectedError, "Too bad"),
        (200, '{"success": false}', EmoncmsRejectedError, ""),
        (200, '{"success": "yes"}', EmoncmsRejectedError, ""),
        (200, "[1, 2]", EmoncmsConnectionError, "not an Emoncms answer: [1, 2]"),
        (
            200,
            "Error: something",
            EmoncmsConnectionError,
            "not an Emoncms answer: Error: something",
        ),
        (200, "x" * 300, EmoncmsConnectionError, "not an Emoncms answer: " + "x" * 200),
        (401, "", EmoncmsAuthError, "Emoncms refused the API key: HTTP 401"),
        (403, "Forbidden", EmoncmsConnectionError, "HTTP 403: Forbidden"),
        (
            500,
            "<h1>Internal\n  error</h1>",
            EmoncmsConnectionError,
            "HTTP 500: <h1>Internal error</h1>",
        ),
    ],
)
async def test_failure_answers(
    scripted: ScriptedServer,
    session: aiohttp.ClientSession,
    answer: tuple[int, str, type[Exception], str],
) -> None:
    status, body, error, message = answer
    scripted.reply = lambda request: web.Response(status=status, text=body)

    with pytest.raises(error) as raised:
        await make_client(session, scripted.url).post_bulk([(T0, "garage", {"power": 1.0})])

    assert str(raised.value) == message


async def test_a_redirect_is_not_followed(
    scripted: ScriptedServer, session: aiohttp.ClientSession
) -> None:
    requests: list[str] = []

    def reply(request: web.Request) -> web.Response:
        requests.append(request.path)
        return web.Response(status=301, headers={"Location": "https://elsewhere.test/input/bulk"})

    scripted.reply = reply

    with pytest.raises(EmoncmsConnectionError) as raised:
        await make_client(session, scripted.url).post_bulk([(T0, "garage", {"power": 1.0})])

    assert str(raised.value) == "HTTP 301: redirected to https://elsewhere.test/input/bulk"
    assert requests == ["/input/bulk"]


async def test_a_server_echoing_the_key_does_not_leak_it(
    scripted: ScriptedServer, session: aiohttp.ClientSession
) -> None:
    scripted.reply = lambda request: web.Response(
        status=500, text=f"bad request with {request.headers['Authorization']}"
    )

    with pytest.raises(EmoncmsConnectionError) as raised:
        await make_client(session, scripted.url).post_bulk([(T0, "garage", {"power": 1.0})])

    assert str(raised.value) == "HTTP 500: bad request with Bearer ***"


# check_key


async def test_check_key_accepts_the_write_key_and_creates_nothing(
    double: EmoncmsDouble, session: aiohttp.ClientSession
) -> None:
    await make_client(session, double.url).check_key()

    assert double.received == {}
    assert double.requests[0].form == {"data": "[]"}


async def test_check_key_refuses_the_read_key(
    double: EmoncmsDouble, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(EmoncmsAuthError, match="can read but not write"):
        await make_client(session, double.url, key=READ_KEY).check_key()


async def test_check_key_refuses_an_invalid_key(
    double: EmoncmsDouble, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(EmoncmsAuthError, match="Invalid API key"):
        await make_client(session, double.url, key="b" * 32).check_key()


async def test_check_key_fails_on_garbage(
    double: EmoncmsDouble, session: aiohttp.ClientSession
) -> None:
    double.set_garbage(True)

    with pytest.raises(EmoncmsConnectionError):
        await make_client(session, double.url).check_key()


async def test_check_key_accepts_the_ok_of_the_emoncms_org_fast_path(
    scripted: ScriptedServer, session: aiohttp.ClientSession
) -> None:
    scripted.reply = lambda request: web.Response(text="ok")

    await make_client(session, scripted.url).check_key()


# The sender


def test_retry_delay_doubles_from_5_s_to_5_min_with_20_percent_jitter() -> None:
    assert [retry_delay(failures, 0.5) for failures in range(1, 9)] == [
        5.0,
        10.0,
        20.0,
        40.0,
        80.0,
        160.0,
        300.0,
        300.0,
    ]
    assert retry_delay(1, 0.0) == pytest.approx(4.0)
    assert retry_delay(1, 0.999999) == pytest.approx(6.0, abs=1e-5)
    assert retry_delay(100_000, 0.0) == pytest.approx(240.0)


def test_the_batch_size_must_be_positive(session: aiohttp.ClientSession) -> None:
    with pytest.raises(ValueError, match="batch_size must be at least 1, not 0"):
        make_sender(make_client(session, "http://127.0.0.1"), batch_size=0)


async def test_record_and_drain_deliver_everything_in_order(
    double: EmoncmsDouble, session: aiohttp.ClientSession
) -> None:
    clock = FakeClock()
    sender = make_sender(make_client(session, double.url), clock=clock, batch_size=3)
    for i in range(7):
        sender.record(T0 + 10 * i, "Garage (EM)", {"power": float(i), "voltage": None})
        sender.record(T0 + 10 * i, "house", {"power": float(-i), "flag": True})

    result = await sender.drain()

    assert result == DrainResult(sent=14, rejected=0, remaining=0)
    assert double.received == {
        "Garage_EM": {"power": [(T0 + 10 * i, float(i)) for i in range(7)]},
        "house": {"power": [(T0 + 10 * i, float(-i)) for i in range(7)]},
    }
    assert len(double.requests) == 5  # 14 samples, 3 per post
    status = sender.status
    assert status.state is ExportState.SENDING
    assert (status.queued, status.dropped, status.rejected) == (0, 0, 0)
    assert (status.last_success, status.last_error, status.outage_start) == (T0, None, None)


async def test_record_queues_nothing_without_a_sendable_value(
    double: EmoncmsDouble, session: aiohttp.ClientSession
) -> None:
    queue = ExportQueue(10)
    sender = make_sender(make_client(session, double.url), queue)

    sender.record(T0, "garage", {"power": None, "energy": float("nan")})

    assert len(queue) == 0
    assert await sender.drain() == DrainResult(0, 0, 0)
    assert double.requests == []


async def test_an_outage_delivers_every_sample_once_in_order_with_one_line_each_way(
    double: EmoncmsDouble, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    clock = FakeClock()
    sender = make_sender(make_client(session, double.url), clock=clock)
    sample_index = 0

    async def tick() -> None:
        nonlocal sample_index
        sender.record(int(clock()), "garage", {"power": float(sample_index)})
        sample_index += 1
        await sender.drain()
        clock.advance(10)

    for _ in range(3):
        await tick()
    assert len(double.requests) == 3

    double.set_down(True)
    for _ in range(180):  # 30 minutes, one sample every 10 s
        await tick()
    # Tries at +0 s, then after 5, 10, 20, 40, 80, 160 s and every 300 s (no jitter here):
    # 30, 40, 50, 70, 110, 190, 350, 650, 950, 1250, 1550 s after T0; the next is due at 1850.
    assert len(double.requests) == 3 + 11
    status = sender.status
    assert status.state is ExportState.OUTAGE
    assert status.outage_start == T0 + 30
    assert status.next_attempt == T0 + 1850
    assert status.queued == 180
    assert status.last_error == f"cannot reach {double.url}: Server disconnected"

    double.set_down(False)
    for _ in range(3):  # 1830 and 1840 s: not due yet; 1850 s: delivers
        await tick()

    assert double.values("garage", "power") == [(T0 + 10 * i, float(i)) for i in range(186)]
    assert sender.status.state is ExportState.SENDING
    assert sender.status.last_success == T0 + 1850
    assert our_records(caplog, logging.INFO) == [
        (
            logging.WARNING,
            f"Emoncms cannot be reached (cannot reach {double.url}: Server disconnected); "
            "retrying with backoff (queued samples: 1)",
        ),
        (logging.INFO, "Emoncms is reachable again after 0:30:20; samples delivered: 183"),
    ]


async def test_drain_waits_for_the_retry_and_flush_does_not(
    double: EmoncmsDouble, session: aiohttp.ClientSession
) -> None:
    clock = FakeClock()
    sender = make_sender(make_client(session, double.url), clock=clock)
    sender.record(T0, "garage", {"power": 1.0})
    double.set_down(True)
    await sender.drain()
    assert sender.status.next_attempt == T0 + 5

    clock.advance(4)
    assert await sender.drain() == DrainResult(0, 0, 1)
    assert len(double.requests) == 1

    double.set_down(False)
    assert await sender.flush() == DrainResult(1, 0, 0)
    assert len(double.requests) == 2
    assert double.values("garage", "power") == [(T0, 1.0)]
    assert sender.status.next_attempt is None


async def test_a_failure_in_the_middle_of_a_drain_keeps_the_rest_queued(
    double: EmoncmsDouble, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    sender = make_sender(make_client(session, double.url), clock=clock, batch_size=2)
    for i in range(6):
        sender.record(T0 + 10 * i, "garage", {"power": float(i)})

    def go_down_after_this_post(row_time: int, node: str, values: Mapping[str, float]) -> bool:
        if row_time == T0 + 30:
            double.set_down(True)  # for the next request
        return False

    double.poison(go_down_after_this_post)

    assert await sender.drain() == DrainResult(sent=4, rejected=0, remaining=2)
    assert sender.status.last_success == T0

    double.set_down(False)
    clock.advance(5)
    assert await sender.drain() == DrainResult(sent=2, rejected=0, remaining=0)

    assert double.values("garage", "power") == [(T0 + 10 * i, float(i)) for i in range(6)]
    assert our_records(caplog, logging.INFO) == [
        (
            logging.WARNING,
            f"Emoncms cannot be reached (cannot reach {double.url}: Server disconnected); "
            "retrying with backoff (queued samples: 2)",
        ),
        (logging.INFO, "Emoncms is reachable again after 0:00:05; samples delivered: 2"),
    ]


async def test_the_queue_survives_a_restart(
    double: EmoncmsDouble, session: aiohttp.ClientSession
) -> None:
    queue = ExportQueue(1000)
    sender = make_sender(make_client(session, double.url), queue)
    double.set_down(True)
    for i in range(5):
        sender.record(T0 + 10 * i, "garage", {"power": float(i), "energy": 10.0 + i})
    await sender.drain()
    saved = json.loads(json.dumps(queue.to_dict()))

    # Home Assistant restarts: new queue, client and sender, from what was saved.
    double.set_down(False)
    restored = ExportQueue.from_dict(saved, max_samples=1000)
    result = await make_sender(make_client(session, double.url), restored).drain()

    assert result == DrainResult(sent=5, rejected=0, remaining=0)
    assert double.received == {
        "garage": {
            "power": [(T0 + 10 * i, float(i)) for i in range(5)],
            "energy": [(T0 + 10 * i, 10.0 + i) for i in range(5)],
        }
    }


async def test_the_bound_drops_the_oldest_samples_and_counts_them(
    double: EmoncmsDouble, session: aiohttp.ClientSession
) -> None:
    sender = make_sender(make_client(session, double.url), ExportQueue(5))
    for i in range(8):
        sender.record(T0 + 10 * i, "garage", {"power": float(i)})

    assert sender.status.dropped == 3
    assert await sender.drain() == DrainResult(sent=5, rejected=0, remaining=0)
    assert double.values("garage", "power") == [(T0 + 10 * i, float(i)) for i in range(3, 8)]
    assert sender.status.dropped == 3


async def test_samples_recorded_while_a_batch_is_on_the_wire_are_not_lost(
    double: EmoncmsDouble, session: aiohttp.ClientSession
) -> None:
    sender = make_sender(make_client(session, double.url), ExportQueue(4))
    for i in range(4):
        sender.record(T0 + 10 * i, "garage", {"power": float(i)})

    def record_two_more_while_posting(
        row_time: int, node: str, values: Mapping[str, float]
    ) -> bool:
        if row_time == T0:  # the first post is being handled: the queue is full
            sender.record(T0 + 40, "garage", {"power": 4.0})
            sender.record(T0 + 50, "garage", {"power": 5.0})
        return False

    double.poison(record_two_more_while_posting)

    assert await sender.drain() == DrainResult(sent=6, rejected=0, remaining=0)
    assert double.values("garage", "power") == [(T0 + 10 * i, float(i)) for i in range(6)]


async def test_concurrent_drains_send_each_sample_once(
    double: EmoncmsDouble, session: aiohttp.ClientSession
) -> None:
    sender = make_sender(make_client(session, double.url), batch_size=2)
    for i in range(5):
        sender.record(T0 + 10 * i, "garage", {"power": float(i)})

    results = await asyncio.gather(sender.drain(), sender.flush())

    assert list(results) == [DrainResult(5, 0, 0), DrainResult(0, 0, 0)]
    assert double.values("garage", "power") == [(T0 + 10 * i, float(i)) for i in range(5)]


# Poison isolation


async def test_a_poison_sample_is_isolated_and_the_rest_delivered_in_order(
    double: EmoncmsDouble, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    sender = make_sender(make_client(session, double.url))
    for i in range(10):
        sender.record(T0 + 10 * i, "garage", {"power": float(i)})
    double.poison(lambda row_time, node, values: row_time == T0 + 50)

    assert await sender.drain() == DrainResult(sent=9, rejected=1, remaining=0)

    # The refused post stored rows 0-4 (a bulk post is not atomic); the first half was then sent
    # again: the same times and values, written into the same feed slots. Rows 6-9 arrive once.
    arrivals = [row_time for row_time, value in double.values("garage", "power")]
    assert arrivals == [T0 + 10 * i for i in [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 6, 7, 8, 9]]
    assert sorted(set(double.values("garage", "power"))) == [
        (T0 + 10 * i, float(i)) for i in range(10) if i != 5
    ]
    message = (
        f"Emoncms rejected the sample of node 'garage' measured at 2023-11-14T22:14:10+00:00 "
        f"({NOT_AN_OBJECT}); dropped it"
    )
    assert our_records(caplog, logging.INFO) == [(logging.WARNING, message)]
    status = sender.status
    assert (status.state, status.rejected, status.queued) == (ExportState.SENDING, 1, 0)
    assert status.last_error == (
        f"rejected the sample of node 'garage' at 2023-11-14T22:14:10+00:00: {NOT_AN_OBJECT}"
    )


async def test_several_poison_samples_in_one_batch(
    double: EmoncmsDouble, session: aiohttp.ClientSession
) -> None:
    sender = make_sender(make_client(session, double.url))
    for i in range(16):
        sender.record(T0 + 10 * i, "garage", {"power": float(i)})
    poisoned = {T0 + 10 * i for i in (0, 7, 8, 15)}
    double.poison(lambda row_time, node, values: row_time in poisoned)

    assert await sender.drain() == DrainResult(sent=12, rejected=4, remaining=0)

    assert sorted(set(double.values("garage", "power"))) == [
        (T0 + 10 * i, float(i)) for i in range(16) if T0 + 10 * i not in poisoned
    ]
    # First arrivals follow the queue's order.
    arrivals = [row_time for row_time, value in double.values("garage", "power")]
    assert list(dict.fromkeys(arrivals)) == sorted(set(arrivals))


# Authentication


@pytest.mark.parametrize(
    ("key", "error"),
    [
        ("c" * 32, "Emoncms refused the API key: Invalid API key"),
        (READ_KEY, "the API key can read but not write: use the write API key"),
    ],
)
async def test_a_refused_key_pauses_until_a_new_key_is_given(
    double: EmoncmsDouble,
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    key: str,
    error: str,
) -> None:
    clock = FakeClock()
    sender = make_sender(make_client(session, double.url, key=key), clock=clock)
    for i in range(3):
        sender.record(T0 + 10 * i, "garage", {"power": float(i)})

    assert await sender.drain() == DrainResult(0, 0, 3)
    status = sender.status
    assert (status.state, status.last_error, status.next_attempt) == (
        ExportState.PAUSED_AUTH,
        error,
        None,
    )

    clock.advance(3600)
    assert await sender.drain() == DrainResult(0, 0, 3)
    assert await sender.flush() == DrainResult(0, 0, 3)
    assert len(double.requests) == 1

    sender.resume(WRITE_KEY)
    assert sender.status.state is ExportState.SENDING
    assert await sender.drain() == DrainResult(3, 0, 0)
    assert double.values("garage", "power") == [(T0 + 10 * i, float(i)) for i in range(3)]
    assert our_records(caplog, logging.INFO) == [
        (
            logging.WARNING,
            f"Emoncms refused the API key ({error}); export paused until a new write key is "
            "entered (queued samples: 3)",
        ),
        (logging.INFO, "Emoncms export resumed with a new write API key"),
    ]


async def test_resume_when_not_paused_only_replaces_the_key(
    double: EmoncmsDouble, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    sender = make_sender(make_client(session, double.url, key=READ_KEY))
    sender.resume(WRITE_KEY)
    sender.record(T0, "garage", {"power": 1.0})

    assert await sender.drain() == DrainResult(1, 0, 0)
    assert our_records(caplog, logging.INFO) == []


async def test_a_refused_key_ends_an_outage(
    double: EmoncmsDouble, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    sender = make_sender(make_client(session, double.url, key="d" * 32), clock=clock)
    sender.record(T0, "garage", {"power": 1.0})
    double.set_down(True)
    await sender.drain()
    double.set_down(False)
    clock.advance(5)

    await sender.drain()

    status = sender.status
    assert (status.state, status.outage_start, status.next_attempt) == (
        ExportState.PAUSED_AUTH,
        None,
        None,
    )
    assert [message for level, message in our_records(caplog, logging.INFO)][1:] == [
        "Emoncms is reachable again after 0:00:05; samples delivered: 0",
        "Emoncms refused the API key (Emoncms refused the API key: Invalid API key); export "
        "paused until a new write key is entered (queued samples: 1)",
    ]


# Failures that are not verdicts on the data


async def test_garbage_answers_keep_every_sample(
    double: EmoncmsDouble, session: aiohttp.ClientSession
) -> None:
    sender = make_sender(make_client(session, double.url))
    for i in range(3):
        sender.record(T0 + 10 * i, "garage", {"power": float(i)})
    double.set_garbage(True)

    assert await sender.drain() == DrainResult(0, 0, 3)

    status = sender.status
    assert status.state is ExportState.OUTAGE
    assert status.rejected == 0
    assert status.last_error is not None
    assert status.last_error.startswith("not an Emoncms answer: <html>")


async def test_a_timeout_is_an_outage(
    double: EmoncmsDouble, session: aiohttp.ClientSession
) -> None:
    sender = make_sender(make_client(session, double.url, timeout=0.1))
    sender.record(T0, "garage", {"power": 1.0})
    double.set_delay(1.0)

    assert await sender.drain() == DrainResult(0, 0, 1)
    assert sender.status.state is ExportState.OUTAGE
    assert sender.status.last_error == "no answer within 0.1 s"


# The key stays secret


async def test_the_key_never_appears_in_logs_or_urls(
    double: EmoncmsDouble, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bad_key = "e" * 32
    client = make_client(session, double.url)
    sender = make_sender(client, batch_size=4)

    times = itertools.count(T0, 10)

    def record() -> None:
        sender.record(next(times), "garage", {"power": 1.0})

    for _ in range(8):
        record()
    double.poison(lambda row_time, node, values: row_time == T0 + 20)
    await sender.drain()
    assert sender.status.rejected == 1
    double.set_down(True)
    record()
    await sender.flush()
    states = [sender.status.state]
    double.set_down(False)
    double.set_garbage(True)
    await sender.flush()
    double.set_garbage(False)
    for key in (bad_key, READ_KEY):
        client.replace_key(key)
        await sender.flush()
        states.append(sender.status.state)
        sender.resume(WRITE_KEY)
    assert states == [ExportState.OUTAGE, ExportState.PAUSED_AUTH, ExportState.PAUSED_AUTH]
    assert await sender.drain() == DrainResult(1, 0, 0)
    await client.check_key()

    assert len(double.requests) == 12
    for request in double.requests:
        for key in (WRITE_KEY, READ_KEY, bad_key):
            assert key not in request.path
            assert key not in request.query_string
    # Rejection, outage, recovery, two pauses, two resumes and two drain summaries.
    assert len([r for r in caplog.records if r.name == LOGGER_NAME]) == 9
    for key in (WRITE_KEY, READ_KEY, bad_key):
        assert key not in caplog.text
        assert key not in repr(client)
        assert key not in repr(sender.status)
