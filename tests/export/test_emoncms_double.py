"""Tests of the Emoncms double: does it answer as the wire facts say Emoncms does?"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from simulator import emoncms
from simulator.emoncms import (
    FORMAT_ERROR,
    GARBAGE_PAGE,
    NO_DATA,
    NO_LAST_ITEM_DATA,
    NODE_IS_OBJECT,
    NOT_AN_OBJECT,
    EmoncmsDouble,
    serve_forever,
)

from .conftest import READ_KEY, T0, WRITE_KEY

REPOSITORY = Path(__file__).parents[2]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def failure(message: str) -> str:
    return f'{{"success": false, "message": "{message}"}}'


async def request(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    form: Mapping[str, str] | None = None,
) -> tuple[int, str]:
    async with session.request(method, url, headers=headers, params=params, data=form) as reply:
        return reply.status, await reply.text()


async def bulk(
    session: aiohttp.ClientSession,
    double: EmoncmsDouble,
    data: str | None,
    *,
    params: Mapping[str, str] | None = None,
    key: str = WRITE_KEY,
) -> tuple[int, str]:
    return await request(
        session,
        "POST",
        f"{double.url}/input/bulk",
        headers=bearer(key),
        params={"time": "0"} if params is None else params,
        form=None if data is None else {"data": data},
    )


async def post(
    session: aiohttp.ClientSession,
    double: EmoncmsDouble,
    form: Mapping[str, str],
    *,
    path: str = "/input/post",
    params: Mapping[str, str] | None = None,
) -> tuple[int, str]:
    return await request(
        session, "POST", f"{double.url}{path}", headers=bearer(WRITE_KEY), params=params, form=form
    )


async def get(
    session: aiohttp.ClientSession, double: EmoncmsDouble, path: str, key: str = READ_KEY
) -> Any:
    status, text = await request(session, "GET", f"{double.url}{path}", headers=bearer(key))
    assert status == 200
    return json.loads(text)


# Keys


async def test_a_bulk_post_with_the_write_key_is_stored(
    double: EmoncmsDouble, session: aiohttp.ClientSession
) -> None:
    data = f'[[{T0},"garage",{{"power":1.5,"energy":2}}],[{T0 + 10},"house",{{"power":-3}}]]'

    assert await bulk(session, double, data) == (200, "ok")

    assert double.received == {
        "garage": {"power": [(T0, 1.5)], "energy": [(T0, 2.0)]},
        "house": {"power": [(T0 + 10, -3.0)]},
    }
    [recorded] = double.requests
    assert (recorded.method, recorded.path, recorded.query_string) == (
        "POST",
        "/input/bulk",
        "time=0",
    )
    assert recorded.headers["Authorization"] == f"Bearer {WRITE_KEY}"
    assert recorded.form == {"data": data}


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"bearer {WRITE_KEY}"},  # the scheme word is case-sensitive
        {"Authorization": WRITE_KEY},
        bearer("0" * 32),
    ],
)
async def test_an_invalid_key_gets_401(
    double: EmoncmsDouble, session: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    status_and_text = await request(
        session,
        "POST",
        f"{double.url}/input/bulk",
        headers=headers,
        form={"data": f'[[{T0},"n",{{"a":1}}]]'},
    )

    assert status_and_text == (401, "Invalid API key")
    assert double.received == {}


@pytest.mark.parametrize("where", ["params", "form"])
async def test_the_apikey_parameter_is_accepted(
    double: EmoncmsDouble, session: aiohttp.ClientSession, where: str
) -> None:
    form = {"data": f'[[{T0},"n",{{"a":1}}]]', "time": "0"}
    if where == "form":
        form["apikey"] = WRITE_KEY
    params = {"apikey": WRITE_KEY} if where == "params" else None

    reply = await request(session, "POST", f"{double.url}/input/bulk", params=params, form=form)

    assert reply == (200, "ok")
    assert double.values("n", "a") == [(T0, 1.0)]


@pytest.mark.parametrize("headers", [bearer(READ_KEY), {}])
@pytest.mark.parametrize("action", ["bulk", "post", "unknown"])
async def test_the_read_key_or_no_key_gets_an_empty_200_on_a_post(
    double: EmoncmsDouble, session: aiohttp.ClientSession, headers: dict[str, str], action: str
) -> None:
    form = {"data": f'[[{T0},"n",{{"a":1}}]]', "node": "n", "fulljson": '{"a":1}'}

    reply = await request(
        session, "POST", f"{double.url}/input/{action}", headers=headers, form=form
    )

    assert reply == (200, "")
    assert double.received == {}


async def test_reading_needs_a_key(double: EmoncmsDouble, session: aiohttp.ClientSession) -> None:
    assert await request(session, "GET", f"{double.url}/input/list.json") == (200, "")
    assert await get(session, double, "/input/list.json", key=READ_KEY) == []
    assert await get(session, double, "/input/list.json", key=WRITE_KEY) == []


async def test_stopping_twice_is_harmless(socket_enabled: None) -> None:
    double = EmoncmsDouble(write_key=WRITE_KEY, read_key=READ_KEY)
    await double.stop()
    async with double:
        pass
    await double.stop()


# input/bulk


@pytest.mark.parametrize(
    ("params", "data", "times"),
    [
        ({"time": "0"}, f'[[{T0},"n",{{"a":1}}]]', [T0]),
        ({"time": "1000"}, '[[-10,"n",{"a":1}]]', [990]),
        ({"sentat": "60"}, '[[45,"n",{"a":1}],[50,"n",{"a":2}]]', [T0 - 15, T0 - 10]),
        # The server computes now - offset: a negative offset moves rows into the future.
        ({"offset": "-10"}, '[[-10,"n",{"a":1}],[-6,"n",{"a":2}]]', [T0, T0 + 4]),
        ({}, '[[0,"n",{"a":1}],[4,"n",{"a":2}]]', [T0 - 4, T0]),  # legacy: last row is now
    ],
)
async def test_bulk_time_modes(
    double: EmoncmsDouble,
    session: aiohttp.ClientSession,
    params: dict[str, str],
    data: str,
    times: list[int],
) -> None:
    assert await bulk(session, double, data, params=params) == (200, "ok")

    assert [row_time for row_time, value in double.values("n", "a")] == times


async def test_bulk_time_in_the_form(double: EmoncmsDouble, session: aiohttp.ClientSession) -> None:
    reply = await request(
        session,
        "POST",
        f"{double.url}/input/bulk.json",
        headers=bearer(WRITE_KEY),
        form={"data": '[[5,"n",{"a":1}]]', "time": "100"},
    )

    assert reply == (200, "ok")
    assert double.values("n", "a") == [(105, 1.0)]


async def test_a_bulk_post_is_not_atomic(
    double: EmoncmsDouble, session: aiohttp.ClientSession
) -> None:
    data = f'[[{T0},"n",{{"a":1}}],[{T0 + 10},{{"x":1}},{{"a":2}}],[{T0 + 20},"n",{{"a":3}}]]'

    assert await bulk(session, double, data) == (200, failure(NODE_IS_OBJECT))

    assert double.received == {"n": {"a": [(T0, 1.0)]}}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (None, NO_DATA),
        ("", NO_DATA),
        (f'[[{T0},"n",{{"a":NaN}}]]', FORMAT_ERROR),
        (f'[[{T0},"n",{{"a":Infinity}}]]', FORMAT_ERROR),
        ("[[1,", FORMAT_ERROR),
        ("[]", FORMAT_ERROR),
        ("{}", FORMAT_ERROR),
        (f'[[{T0},"n",{{"a":1}}],[]]', NO_LAST_ITEM_DATA),
        (f'[[{T0},"n",{{"a":1}}],5]', NO_LAST_ITEM_DATA),
        (f'[[{T0},"n",[1]]]', NOT_AN_OBJECT),
    ],
)
async def test_bulk_format_errors(
    double: EmoncmsDouble, session: aiohttp.ClientSession, data: str | None, message: str
) -> None:
    assert await bulk(session, double, data) == (200, failure(message))

    assert double.received == {}


async def test_bulk_values_are_cast_as_php_does(
    double: EmoncmsDouble, session: aiohttp.ClientSession
) -> None:
    values = {
        "null": None,
        "true": True,
        "false": False,
        "prefix": "12.5abc",
        "exponent": " 1e3",
        "text": "abc",
        "array": [1],
        "object": {"x": 1},
        "empty": [],
    }

    assert await bulk(session, double, json.dumps([[T0, "n", values]])) == (200, "ok")

    assert {name: pairs[0][1] for name, pairs in double.received["n"].items()} == {
        "null": 0.0,
        "true": 1.0,
        "false": 0.0,
        "prefix": 12.5,
        "exponent": 1000.0,
        "text": 0.0,
        "array": 1.0,
        "object": 1.0,
        "empty": 0.0,
    }


async def test_bulk_bare_values_are_numbered_and_short_rows_skipped(
    double: EmoncmsDouble, session: aiohttp.ClientSession
) -> None:
    data = f'[[{T0},"n"],[{T0},7,5,"",null,"3",{{"named":4}}]]'

    assert await bulk(session, double, data) == (200, "ok")

    assert double.received == {
        "7": {"1": [(T0, 5.0)], "4": [(T0, 3.0)], "named": [(T0, 4.0)]},
    }


@pytest.mark.parametrize(
    ("node", "stored_as"),
    [
        ('"Pro 3EM (Garage)!"', "Pro 3EM Garage"),
        ('"a & b"', "a  b"),  # the server removes characters, it does not collapse spaces
        ('""', "0"),
        ("null", "0"),
        ("5.0", "5"),
        ("2.5", "2.5"),
        ("true", "1"),
        ("false", "0"),
    ],
)
async def test_bulk_node_names_are_cleaned(
    double: EmoncmsDouble, session: aiohttp.ClientSession, node: str, stored_as: str
) -> None:
    data = f'[[{T0},{node},{{"power (W)!":1}}]]'

    assert await bulk(session, double, data) == (200, "ok")

    assert double.received == {stored_as: {"power W": [(T0, 1.0)]}}


async def test_poison_refuses_matching_rows_as_malformed(
    double: EmoncmsDouble, session: aiohttp.ClientSession
) -> None:
    seen: list[tuple[int, str, Mapping[str, float]]] = []

    def predicate(row_time: int, node: str, values: Mapping[str, float]) -> bool:
        seen.append((row_time, node, dict(values)))
        return row_time == T0 + 10

    double.poison(predicate)
    data = json.dumps([[T0 + 10 * i, "n (1)", {"a": i}] for i in range(3)])

    assert await bulk(session, double, data) == (200, failure(NOT_AN_OBJECT))

    assert double.received == {"n 1": {"a": [(T0, 0.0)]}}
    assert seen == [(T0, "n 1", {"a": 0.0}), (T0 + 10, "n 1", {"a": 1.0})]

    double.poison(None)
    assert await bulk(session, double, data) == (200, "ok")


# input/post


async def test_input_post_with_fulljson(
    double: EmoncmsDouble, session: aiohttp.ClientSession
) -> None:
    reply = await post(session, double, {"node": "garage", "fulljson": '{"power":12.5,"e":3.2}'})

    assert reply == (200, '{"success": true}')
    assert double.received == {"garage": {"power": [(T0, 12.5)], "e": [(T0, 3.2)]}}


async def test_input_post_time_parameter_wins_over_the_time_key(
    double: EmoncmsDouble, session: aiohttp.ClientSession
) -> None:
    await post(session, double, {"node": "a", "fulljson": f'{{"time":{T0 + 7},"p":1}}'})
    await post(
        session, double, {"node": "b", "fulljson": '{"time":5,"p":2}'}, params={"time": "100"}
    )

    assert double.received == {
        "a": {"p": [(T0 + 7, 1.0)]},
        "b": {"time": [(100, 5.0)], "p": [(100, 2.0)]},
    }


async def test_input_post_node_from_the_path_or_none(
    double: EmoncmsDouble, session: aiohttp.ClientSession
) -> None:
    await post(session, double, {"fulljson": '{"p":1}'}, path="/input/post/meter (1)")
    await post(session, double, {"fulljson": '{"p":2}'})

    assert double.received == {"meter 1": {"p": [(T0, 1.0)]}, "0": {"p": [(T0, 2.0)]}}


@pytest.mark.parametrize(
    ("fulljson", "message"),
    [
        (None, NO_DATA),
        ('{"p":NaN}', "Error decoding JSON string (invalid or too deeply nested)"),
        ('{"p":{"q":1}}', "Error decoding JSON string (invalid or too deeply nested)"),
        ("[1,2]", "Input must be a JSON object"),
    ],
)
async def test_input_post_failures(
    double: EmoncmsDouble, session: aiohttp.ClientSession, fulljson: str | None, message: str
) -> None:
    form = {"node": "n"} if fulljson is None else {"node": "n", "fulljson": fulljson}

    assert await post(session, double, form) == (200, failure(message))
    assert double.received == {}


# Reading inputs


async def test_input_get_and_list_show_the_last_value_written(
    double: EmoncmsDouble, session: aiohttp.ClientSession
) -> None:
    data = f'[[{T0 + 10},"garage",{{"power":2,"energy":5}}],[{T0},"garage",{{"power":1}}]]'
    await bulk(session, double, data)
    await bulk(session, double, f'[[{T0},"house",{{"power":3}}]]')

    garage = {"power": {"time": T0, "value": 1.0}, "energy": {"time": T0 + 10, "value": 5.0}}
    assert await get(session, double, "/input/get/garage") == garage
    assert await get(session, double, "/input/get") == {
        "garage": garage,
        "house": {"power": {"time": T0, "value": 3.0}},
    }
    assert await get(session, double, "/input/get/nowhere") == {
        "success": False,
        "message": "Node does not exist",
    }
    assert await get(session, double, "/input/list.json") == [
        {
            "id": 1,
            "nodeid": "garage",
            "name": "power",
            "description": "",
            "processList": "",
            "time": T0,
            "value": 1.0,
        },
        {
            "id": 2,
            "nodeid": "garage",
            "name": "energy",
            "description": "",
            "processList": "",
            "time": T0 + 10,
            "value": 5.0,
        },
        {
            "id": 3,
            "nodeid": "house",
            "name": "power",
            "description": "",
            "processList": "",
            "time": T0,
            "value": 3.0,
        },
    ]
    assert double.values("nowhere", "power") == []


# Routes


async def test_an_unknown_controller_gets_406_and_an_unknown_action_false(
    double: EmoncmsDouble, session: aiohttp.ClientSession
) -> None:
    headers = bearer(WRITE_KEY)

    assert await request(session, "POST", f"{double.url}/feed/insert", headers=headers) == (
        406,
        "URI not acceptable. No route found",
    )
    assert await request(session, "POST", f"{double.url}/input/nothing", headers=headers) == (
        200,
        "false",
    )


async def test_a_path_prefix(socket_enabled: None, session: aiohttp.ClientSession) -> None:
    async with EmoncmsDouble(
        write_key=WRITE_KEY, read_key=READ_KEY, path_prefix="/emoncms/", clock=lambda: T0
    ) as double:
        assert double.url.endswith("/emoncms")
        assert await bulk(session, double, f'[[{T0},"n",{{"a":1}}]]') == (200, "ok")
        base = double.url.removesuffix("/emoncms")
        assert await request(session, "POST", f"{base}/input/bulk") == (404, "Not Found")
        assert await request(session, "GET", f"{base}/emoncmsx/input") == (404, "Not Found")


# Controls


async def test_down_drops_connections_or_answers_a_status(
    double: EmoncmsDouble, session: aiohttp.ClientSession
) -> None:
    double.set_down(True)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await bulk(session, double, f'[[{T0},"n",{{"a":1}}]]')

    double.set_down(True, status=503)
    assert await bulk(session, double, f'[[{T0},"n",{{"a":1}}]]') == (503, "Service Unavailable")

    double.set_down(False)
    assert await bulk(session, double, f'[[{T0},"n",{{"a":1}}]]') == (200, "ok")
    assert double.values("n", "a") == [(T0, 1.0)]
    assert len(double.requests) == 3


async def test_garbage_answers_html_with_200(
    double: EmoncmsDouble, session: aiohttp.ClientSession
) -> None:
    double.set_garbage(True)

    assert await bulk(session, double, f'[[{T0},"n",{{"a":1}}]]') == (200, GARBAGE_PAGE)

    double.set_garbage(False)
    assert await bulk(session, double, f'[[{T0},"n",{{"a":1}}]]') == (200, "ok")


async def test_delay_holds_each_answer(
    double: EmoncmsDouble, session: aiohttp.ClientSession
) -> None:
    double.set_delay(0.2)
    started = time.monotonic()

    assert await bulk(session, double, f'[[{T0},"n",{{"a":1}}]]') == (200, "ok")

    assert time.monotonic() - started >= 0.2


# Running it


async def test_serve_forever_says_where_it_listens(
    socket_enabled: None, session: aiohttp.ClientSession, capsys: pytest.CaptureFixture[str]
) -> None:
    double = EmoncmsDouble(write_key=WRITE_KEY, read_key=READ_KEY)
    task = asyncio.create_task(serve_forever(double))
    output = ""
    while "listening" not in output:
        await asyncio.sleep(0.01)
        output += capsys.readouterr().out

    assert await request(session, "GET", f"{double.url}/input/list", headers=bearer(READ_KEY)) == (
        200,
        "[]",
    )
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert output == (
        f"Emoncms double listening on {double.url}\n"
        f"  write key: {WRITE_KEY}\n  read key:  {READ_KEY}\n"
    )


@pytest.mark.parametrize("interrupt", [False, True])
def test_main_builds_the_double_from_the_command_line(
    monkeypatch: pytest.MonkeyPatch, interrupt: bool
) -> None:
    served: list[EmoncmsDouble] = []

    async def fake_serve_forever(double: EmoncmsDouble) -> None:
        served.append(double)
        if interrupt:
            raise KeyboardInterrupt

    monkeypatch.setattr(emoncms, "serve_forever", fake_serve_forever)

    emoncms.main(
        ["--port", "8099", "--write-key", WRITE_KEY, "--read-key", READ_KEY, "--path-prefix", "/e"]
    )

    [double] = served
    assert (double.url, double.write_key, double.read_key) == (
        "http://127.0.0.1:8099/e",
        WRITE_KEY,
        READ_KEY,
    )


def test_main_makes_up_keys_when_none_are_given(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[EmoncmsDouble] = []

    async def fake_serve_forever(double: EmoncmsDouble) -> None:
        served.append(double)

    monkeypatch.setattr(emoncms, "serve_forever", fake_serve_forever)

    emoncms.main([])

    [double] = served
    assert double.url == "http://127.0.0.1:8091"
    assert len(double.write_key) == 32
    assert len(double.read_key) == 32
    assert double.write_key != double.read_key


async def test_python_m_simulator_emoncms_runs_it(
    socket_enabled: None, session: aiohttp.ClientSession
) -> None:
    command = [sys.executable, "-m", "simulator.emoncms", "--port", "0"]
    process = await asyncio.create_subprocess_exec(
        *command, "--write-key", WRITE_KEY, "--read-key", READ_KEY,
        cwd=REPOSITORY, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        first_line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
        url = first_line.decode().strip().removeprefix("Emoncms double listening on ")
        reply = await request(
            session,
            "POST",
            f"{url}/input/bulk",
            headers=bearer(WRITE_KEY),
            params={"time": "0"},
            form={"data": f'[[{T0},"n",{{"a":1}}]]'},
        )
        assert reply == (200, "ok")
    finally:
        process.terminate()
        await process.wait()
