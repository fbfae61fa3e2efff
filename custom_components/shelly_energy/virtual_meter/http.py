"""HTTP and WebSocket RPC, as Hoymiles, Growatt and Solakon batteries read a Shelly meter.

- ``GET /shelly``: the device info;
- ``GET /rpc/<Method>?k=v``: the bare result (arguments parsed as JSON where they can be;
  unknown ones, like Growatt's ``?esp``, are ignored); an error as ``{"code", "message"}`` with
  HTTP 404 (no such method) or 500;
- ``POST /rpc`` with a frame, and a WebSocket on ``/rpc``: frames, as `VirtualMeter.frame`.

While nothing may be served, a request for the power gets no answer: over HTTP the connection
is closed without a response, over a WebSocket no frame is sent (the socket stays open).
The server runs on its own port, apart from Home Assistant's web server.
"""

from __future__ import annotations

import json
import weakref
from typing import Any

from aiohttp import WSMsgType, web

from .meter import Transport, VirtualMeter
from .replies import NO_HANDLER, RpcError, dumps

_JSON = "application/json"


def _argument(text: str) -> Any:
    """Return a query argument as JSON where it is JSON (``id=0`` is 0), else as text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _client(request: web.Request) -> str:
    return request.remote or "unknown"


def _hang_up(request: web.Request) -> web.Response:
    """Close the connection without answering; the returned response is never sent."""
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=503)


class HttpServer:
    """Serve a virtual meter over HTTP and WebSocket on one TCP port."""

    def __init__(self, meter: VirtualMeter, host: str, port: int) -> None:
        """Prepare to listen on ``host``:``port`` (0: any free port)."""
        self._meter = meter
        self._host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        self._sockets: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()

    async def start(self) -> None:
        """Listen; raise OSError when the port cannot be bound (nothing is left running)."""
        app = web.Application()
        app.router.add_get("/shelly", self._shelly)
        app.router.add_get("/rpc", self._websocket)
        app.router.add_post("/rpc", self._post)
        app.router.add_get("/rpc/{method}", self._get)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]

    async def stop(self) -> None:
        """Close every WebSocket and stop listening."""
        for socket in list(self._sockets):
            await socket.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _shelly(self, request: web.Request) -> web.Response:
        result = self._meter.call(
            "Shelly.GetDeviceInfo", {}, client=_client(request), transport=Transport.HTTP
        )
        return web.Response(text=result, content_type=_JSON)

    async def _get(self, request: web.Request) -> web.Response:
        params = {key: _argument(value) for key, value in request.query.items()}
        try:
            result = self._meter.call(
                request.match_info["method"],
                params,
                client=_client(request),
                transport=Transport.HTTP,
            )
        except RpcError as err:
            return web.Response(
                status=404 if err.code == NO_HANDLER else 500,
                text=dumps({"code": err.code, "message": err.message}),
                content_type=_JSON,
            )
        if result is None:
            return _hang_up(request)
        return web.Response(text=result, content_type=_JSON)

    async def _post(self, request: web.Request) -> web.Response:
        reply = self._meter.frame(
            await request.read(), client=_client(request), transport=Transport.HTTP
        )
        if reply is None:
            return _hang_up(request)
        return web.Response(text=reply, content_type=_JSON)

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        socket = web.WebSocketResponse()
        if not socket.can_prepare(request).ok:
            raise web.HTTPNotFound
        await socket.prepare(request)
        self._sockets.add(socket)
        client = _client(request)
        async for message in socket:
            if message.type is not WSMsgType.TEXT:
                continue
            reply = self._meter.frame(message.data, client=client, transport=Transport.WEBSOCKET)
            if reply is not None:
                await socket.send_str(reply)
        return socket
