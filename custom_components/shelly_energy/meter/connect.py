"""Reaching a meter: identify what answers at an address, and make the client for it."""

from __future__ import annotations

from aiohttp import ClientSession

from .address import Address
from .client import (
    Credentials,
    DeviceIdentity,
    MeterClient,
    get_json,
)
from .errors import (
    MeterConnectionError,
    NotEnergyMeterError,
    UnsupportedFirmwareError,
)
from .gen1 import REQUEST_TIMEOUT, Gen1Client
from .models import GEN1_METER_MODELS, RPC_METER_MODELS, firmware_supported
from .rpc import RpcClient


async def probe(session: ClientSession, address: Address) -> DeviceIdentity:
    """Ask the device at an address what it is (/shelly needs no credentials).

    A Gen1 device is refused here when it is not a meter; a Gen2+ device only once connected,
    since only its status tells (a model we do not list may still be a meter).
    """
    try:
        shelly = await get_json(session, address.url("/shelly"), REQUEST_TIMEOUT)
    except MeterConnectionError as err:
        raise MeterConnectionError(f"no Shelly device answers at {address}: {err}") from err
    identity = DeviceIdentity.from_shelly(shelly)
    if identity.generation == 1 and identity.model not in GEN1_METER_MODELS:
        raise NotEnergyMeterError(f"{identity.model} is not an energy meter")
    if not firmware_supported(identity.generation, identity.firmware):
        raise UnsupportedFirmwareError(f"firmware {identity.firmware} is too old")
    return identity


def is_known_meter(identity: DeviceIdentity) -> bool:
    """Return whether the device is a meter model we list (discovery offers only those)."""
    return identity.model in GEN1_METER_MODELS or identity.model in RPC_METER_MODELS


def make_client(
    session: ClientSession,
    address: Address,
    generation: int,
    credentials: Credentials,
    *,
    alive_within: float | None = None,
) -> MeterClient:
    """Return the client for a meter of this generation.

    `alive_within`: how soon a Gen2+ meter's silent WebSocket must be known lost (seconds).
    """
    if generation == 1:
        return Gen1Client(session, address, credentials)
    return RpcClient(session, address, credentials, alive_within=alive_within)
