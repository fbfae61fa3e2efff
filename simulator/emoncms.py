"""A local Emoncms server: the input API as the Emoncms source implements it, for tests and demos.

It shares no code with the integration's exporter, so that a shared misunderstanding cannot hide.
What it implements (see docs: the Emoncms input API wire facts):

- keys: `Authorization: Bearer <key>` (the scheme word is case-sensitive) or an `apikey`
  parameter; an invalid key gets 401 `Invalid API key`; a read key or no key gets an empty 200
  from the input module, whose every action needs write access except the reads;
- `POST /input/bulk`: form field `data`, query or form `time`, `sentat`, `offset` (with the
  server's inverted sign) or none (legacy); rows before a failing row are stored, rows after it
  are lost; `ok` on success, `{"success": false, "message": ...}` on failure;
- `POST /input/post` with `node` and `fulljson` (a `time` parameter wins over a "time" key);
- `GET /input/get[/<node>]` and `GET /input/list.json`;
- an unknown controller answers 406, an unknown action of the input module 200 `false`;
- names are cleaned as the server does, values cast as PHP does (null -> 0, true -> 1, ...),
  and a NaN literal is invalid JSON.

It stores every (time, value) it receives per node and input, in arrival order, in `received`,
logs every request in `requests`, and can be made to fail: `set_down`, `set_garbage`,
`set_delay`, `poison`.

Run it on its own: `python -m simulator.emoncms --port 8091 --write-key KEY --read-key KEY`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from types import TracebackType
from typing import Any, Self

from aiohttp import web

RowPredicate = Callable[[int, str, Mapping[str, float]], bool]

FORMAT_ERROR = "Format error, json string supplied is not valid"
NO_DATA = "Request contains no data via csv, json or data tag"
NO_LAST_ITEM_DATA = "Format error, last item in bulk data does not contain any data"
NODE_IS_OBJECT = "Format error, node must not be an object"
NOT_AN_OBJECT = "Input in not a valid JSON object"
GARBAGE_PAGE = "<html><head><title>Welcome</title></head><body><h1>It works!</h1></body></html>"

_REJECTED_NAME_CHARACTERS = re.compile(r"[^\w\s.-]")  # PHP: /[^\p{N}\p{L}_\s\-.]/u
_NUMERIC_PREFIX = re.compile(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_INPUT_READ_ACTIONS = frozenset({"get", "list"})  # every other action needs the write key


class _Failure(Exception):
    """The input module refuses the request with this message."""


class _InvalidKey(Exception):
    """The request carries a key of no user."""


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """A request as the server received it."""

    method: str
    path: str
    query_string: str
    headers: Mapping[str, str]
    form: Mapping[str, str]


class EmoncmsDouble:
    """A local Emoncms server with one user, listening on 127.0.0.1 (any free port by default).

    Use it as an async context manager; `url` is its root (with `path_prefix`, if given).
    """

    def __init__(
        self,
        *,
        write_key: str,
        read_key: str,
        port: int = 0,
        path_prefix: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.write_key = write_key
        self.read_key = read_key
        self._port = port
        self._prefix = path_prefix.rstrip("/")
        self._clock = clock
        self._runner: web.AppRunner | None = None
        self._down = False
        self._down_status: int | None = None
        self._garbage = False
        self._delay = 0.0
        self._poison: RowPredicate | None = None
        self._input_ids: dict[tuple[str, str], int] = {}
        self.received: dict[str, dict[str, list[tuple[int, float]]]] = {}
        self.requests: list[RecordedRequest] = []

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start listening."""
        # PHP's default post_max_size is 8 MB.
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # A request whose client gave up (e.g. on a timeout during set_delay) is dropped
        # unprocessed, and a request still held at shutdown does not hold the shutdown up.
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._port)
        await site.start()
        self._port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Stop listening and close every connection."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        """Return the root URL of the server."""
        return f"http://127.0.0.1:{self._port}{self._prefix}"

    def set_down(self, down: bool, *, status: int | None = None) -> None:
        """Fail every request: drop the connection unanswered, or answer `status` (e.g. 503)."""
        self._down = down
        self._down_status = status

    def set_garbage(self, garbage: bool) -> None:
        """Answer every request with an HTML page and 200, like a captive portal."""
        self._garbage = garbage

    def set_delay(self, seconds: float) -> None:
        """Wait this long before handling each request (dropped if the client leaves meanwhile)."""
        self._delay = seconds

    def poison(self, predicate: RowPredicate | None) -> None:
        """Refuse bulk rows for which predicate(time, node, values) is true (None: refuse none).

        The refusal is a format error at that row: the rows before it are stored, the rest not.
        """
        self._poison = predicate

    def values(self, node: str, name: str) -> list[tuple[int, float]]:
        """Return every (time, value) received for an input, in arrival order."""
        return self.received.get(node, {}).get(name, [])

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        """Answer one request as Emoncms would, unless told to fail."""
        form = {name: str(value) for name, value in (await request.post()).items()}
        self.requests.append(
            RecordedRequest(
                request.method, request.path, request.query_string, dict(request.headers), form
            )
        )
        if self._delay:
            await asyncio.sleep(self._delay)
        if self._down:
            if self._down_status is None:
                assert request.transport is not None
                request.transport.close()
                raise asyncio.CancelledError  # nothing to answer on a closed connection
            return web.Response(status=self._down_status, text="Service Unavailable")
        if self._garbage:
            return web.Response(text=GARBAGE_PAGE, content_type="text/html")
        params = {**request.query, **form}
        try:
            access = self._access(request, params)
        except _InvalidKey:
            return web.Response(status=401, text="Invalid API key")
        if not request.path.startswith(f"{self._prefix}/"):
            return web.Response(status=404, text="Not Found")
        controller, _, route = request.path[len(self._prefix) + 1 :].partition("/")
        if controller != "input":
            return web.Response(status=406, text="URI not acceptable. No route found")
        action, _, subaction = route.partition("/")
        return self._input(action.partition(".")[0], subaction, params, access)

    def _access(self, request: web.Request, params: Mapping[str, str]) -> str | None:
        """Return "write", "read" or None (no key); raise _InvalidKey for an invalid key."""
        header = request.headers.get("Authorization")
        if header is not None:
            key: str | None = header.removeprefix("Bearer ") if header.startswith("Bearer ") else ""
        else:
            key = params.get("apikey")
        if key is None:
            return None
        if key == self.write_key:
            return "write"
        if key == self.read_key:
            return "read"
        raise _InvalidKey

    def _input(
        self, action: str, subaction: str, params: Mapping[str, str], access: str | None
    ) -> web.Response:
        """Answer an action of the input module."""
        if access is None or (access == "read" and action not in _INPUT_READ_ACTIONS):
            return web.Response(text="")
        try:
            if action == "bulk":
                self._bulk(params)
                return web.Response(text="ok")
            if action == "post":
                self._post(subaction or params.get("node", ""), params)
                return web.json_response({"success": True})
        except _Failure as failure:
            return web.json_response({"success": False, "message": str(failure)})
        if action == "get":
            return web.json_response(self._get(subaction))
        if action == "list":
            return web.json_response(self._list())
        return web.json_response(False)

    def _bulk(self, params: Mapping[str, str]) -> None:
        """Store the rows of a bulk post up to the first failing one."""
        data = _parse_json(params.get("data", ""), NO_DATA, FORMAT_ERROR)
        if not isinstance(data, list) or not data:
            raise _Failure(FORMAT_ERROR)
        last = data[-1]
        if not isinstance(last, list) or not last:
            raise _Failure(NO_LAST_ITEM_DATA)
        now = int(self._clock())
        if "sentat" in params:
            time_reference = now - _php_int(params["sentat"])
        elif "offset" in params:
            time_reference = now - _php_int(params["offset"])  # sic: the server inverts it
        elif "time" in params:
            time_reference = _php_int(params["time"])
        else:
            time_reference = now - _php_int(last[0])
        for item in data:
            if isinstance(item, list) and len(item) > 2:
                self._bulk_row(time_reference + _php_int(item[0]), item[1], item[2:])

    def _bulk_row(self, row_time: int, node: object, elements: list[Any]) -> None:
        """Store one bulk row: objects give named inputs, bare values numbered ones."""
        if isinstance(node, dict):
            raise _Failure(NODE_IS_OBJECT)
        values: dict[str, float] = {}
        number = 1
        for element in elements:
            if isinstance(element, dict):
                values.update((_clean(str(name)), _php_float(v)) for name, v in element.items())
            elif isinstance(element, list):
                raise _Failure(NOT_AN_OBJECT)
            else:
                if _php_string(element):
                    values[str(number)] = _php_float(element)
                number += 1
        node_name = _clean(_php_string(node)) or "0"
        if self._poison is not None and self._poison(row_time, node_name, values):
            raise _Failure(NOT_AN_OBJECT)
        self._store(row_time, node_name, values)

    def _post(self, node: str, params: Mapping[str, str]) -> None:
        """Store an input/post with fulljson."""
        inputs = _parse_json(
            params.get("fulljson", ""),
            NO_DATA,
            "Error decoding JSON string (invalid or too deeply nested)",
        )
        if not isinstance(inputs, dict):
            raise _Failure("Input must be a JSON object")
        if any(isinstance(value, dict | list) for value in inputs.values()):
            raise _Failure("Error decoding JSON string (invalid or too deeply nested)")
        if "time" in params:
            post_time = _php_int(params["time"])
        elif "time" in inputs:
            post_time = _php_int(inputs.pop("time"))
        else:
            post_time = int(self._clock())
        values = {_clean(name): _php_float(value) for name, value in inputs.items()}
        self._store(post_time, _clean(node) or "0", values)

    def _store(self, row_time: int, node: str, values: Mapping[str, float]) -> None:
        """Write values into the inputs of a node, creating inputs as needed."""
        inputs = self.received.setdefault(node, {})
        for name, value in values.items():
            pairs = inputs.get(name)
            if pairs is None:
                pairs = inputs[name] = []
                self._input_ids[node, name] = len(self._input_ids) + 1
            pairs.append((row_time, value))

    def _get(self, node: str) -> Any:
        """Return the last time and value of the inputs of a node, or of every node."""
        if not node:
            return {name: self._last_values(name) for name in self.received}
        if node not in self.received:
            return {"success": False, "message": "Node does not exist"}
        return self._last_values(node)

    def _last_values(self, node: str) -> dict[str, dict[str, float]]:
        """Return {input: {"time": T, "value": V}} of a node: the last written, whatever T."""
        return {
            name: {"time": pairs[-1][0], "value": pairs[-1][1]}
            for name, pairs in self.received[node].items()
        }

    def _list(self) -> list[dict[str, Any]]:
        """Return every input as input/list.json does."""
        return [
            {
                "id": input_id,
                "nodeid": node,
                "name": name,
                "description": "",
                "processList": "",
                "time": self.received[node][name][-1][0],
                "value": self.received[node][name][-1][1],
            }
            for (node, name), input_id in self._input_ids.items()
        ]


def _parse_json(text: str, empty_message: str, invalid_message: str) -> Any:
    """Decode JSON as PHP's json_decode does (no NaN or Infinity literals)."""
    if not text:
        raise _Failure(empty_message)
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except ValueError as err:
        raise _Failure(invalid_message) from err


def _refuse_constant(literal: str) -> float:
    """Refuse NaN, Infinity and -Infinity, which are not JSON."""
    raise ValueError(f"{literal} is not JSON")


@lru_cache(maxsize=1024)
def _clean(name: str) -> str:
    """Remove the characters Emoncms does not keep in names."""
    return _REJECTED_NAME_CHARACTERS.sub("", name)


def _php_string(value: object) -> str:
    """Return a JSON scalar as PHP converts it to a string."""
    if value is None or value is False:
        return ""
    if value is True:
        return "1"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _php_float(value: object) -> float:
    """Return a JSON value as PHP's (float) cast does: null -> 0, true -> 1, "12abc" -> 12."""
    if isinstance(value, (int, float)):  # bool included: True -> 1.0
        return float(value)
    if isinstance(value, str):
        match = _NUMERIC_PREFIX.match(value)
        return float(match.group()) if match else 0.0
    return 1.0 if value else 0.0  # null, or an array / object


def _php_int(value: object) -> int:
    """Return a JSON value as PHP's (int) cast does."""
    number = _php_float(value)
    return int(number) if math.isfinite(number) else 0


async def serve_forever(double: EmoncmsDouble) -> None:
    """Run the double until cancelled, saying where it listens and with which keys."""
    async with double:
        print(
            f"Emoncms double listening on {double.url}\n"
            f"  write key: {double.write_key}\n  read key:  {double.read_key}",
            flush=True,
        )
        await asyncio.Event().wait()


def main(argv: Sequence[str] | None = None) -> None:
    """Run the double from the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m simulator.emoncms", description="A local Emoncms server on 127.0.0.1."
    )
    parser.add_argument("--port", type=int, default=8091, help="0: any free port")
    parser.add_argument("--write-key", default=secrets.token_hex(16), help="default: random")
    parser.add_argument("--read-key", default=secrets.token_hex(16), help="default: random")
    parser.add_argument("--path-prefix", default="", help="e.g. /emoncms")
    args = parser.parse_args(argv)
    double = EmoncmsDouble(
        write_key=args.write_key,
        read_key=args.read_key,
        port=args.port,
        path_prefix=args.path_prefix,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever(double))


if __name__ == "__main__":  # pragma: no cover - run by test_python_m_simulator_emoncms_runs_it
    main()
