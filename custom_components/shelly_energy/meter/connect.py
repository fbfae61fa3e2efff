"""Reaching a meter: identify what answers at an address, and make the client for it."""

from __future__ import annotations

from aiohttp import ClientError, ClientSession
from aioshelly.common import get_info
from aioshelly.exceptions import ShellyError

from .client import (
    Credentials,
    DeviceIdentity,
    MeterClient,
    MeterConnectionError,
    NotEnergyMeterError,
    UnsupportedFirmwareError,
)
from .gen1 import Gen1Client
from .models import GEN1_METER_MODELS, RPC_METER_MODELS, firmware_supported
from .rpc import RpcClient


async def probe(session: ClientSession, host: str, port: int) -> DeviceIdentity:
    """Ask the device at host:port what it is (/shelly needs no credentials).

    A Gen1 device is refused here when it is not a meter; a Gen2+ device only once connected,
    since only its status tells (a model we do not list may still be a meter).
    """
    try:
        identity = DeviceIdentity.from_shelly(await get_info(session, host, port=port))
    except (ShellyError, ClientError, OSError, TimeoutError) as err:
        raise MeterConnectionError(f"no Shelly device answers at {host}:{port}") from err
    except (KeyError, TypeError, ValueError) as err:
        raise MeterConnectionError(f"the device at {host}:{port} is not a Shelly") from err
    if identity.generation == 1 and identity.model not in GEN1_METER_MODELS:
        raise NotEnergyMeterError(f"{identity.model} is not an energy meter")
    if not firmware_supported(identity.generation, identity.firmware):
        raise UnsupportedFirmwareError(f"firmware {identity.firmware} is too old")
    return identity


def is_known_meter(identity: DeviceIdentity) -> bool:
    """Return whether the device is a meter model we list (discovery offers only those)."""
    return identity.model in GEN1_METER_MODELS or identity.model in RPC_METER_MODELS


def make_client(
    session: ClientSession, host: str, port: int, generation: int, credentials: Credentials
) -> MeterClient:
    """Return the client for a meter of this generation."""
    if generation == 1:
        return Gen1Client(session, host, port, credentials)
    return RpcClient(session, host, port, credentials)
