"""Client-side helpers for the tests: digest auth and aioshelly connections."""

from __future__ import annotations

import hashlib
import re

import aiohttp
from aioshelly.common import ConnectionOptions
from aioshelly.rpc_device import RpcDevice
from aioshelly.rpc_device.wsrpc import WsServer

HOST = "127.0.0.1"


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def digest_authorization(challenge: str, method: str, uri: str, password: str) -> str:
    """Answer a `WWW-Authenticate: Digest ...` challenge as RFC 7616 says (SHA-256, auth)."""
    fields = dict(re.findall(r'(\w+)="?([^",]+)"?', challenge))
    realm, nonce = fields["realm"], fields["nonce"]
    ha1 = sha256_hex(f"admin:{realm}:{password}")
    ha2 = sha256_hex(f"{method}:{uri}")
    nc, cnonce = "00000001", "0a4f113b"
    response = sha256_hex(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
    return (
        f'Digest username="admin", realm="{realm}", nonce="{nonce}", uri="{uri}", '
        f'algorithm=SHA-256, qop=auth, nc={nc}, cnonce="{cnonce}", response="{response}"'
    )


async def digest_get(
    session: aiohttp.ClientSession, port: int, uri: str, password: str
) -> aiohttp.ClientResponse:
    """GET `uri`, answering the digest challenge; return the (read) final response."""
    url = f"http://{HOST}:{port}{uri}"
    async with session.get(url) as first:
        challenge = first.headers.get("WWW-Authenticate", "")
        await first.read()
    if first.status != 401:
        return first
    headers = {"Authorization": digest_authorization(challenge, "GET", uri, password)}
    async with session.get(url, headers=headers) as second:
        await second.read()
        return second


async def rpc_device(
    session: aiohttp.ClientSession, port: int, password: str | None = None
) -> RpcDevice:
    """Return an aioshelly RpcDevice (13.x and 14.x alike); the caller initialises it."""
    options = ConnectionOptions(
        ip_address=HOST,
        port=port,
        username="admin" if password is not None else None,
        password=password,
    )
    return await RpcDevice.create(session, WsServer(), options)
