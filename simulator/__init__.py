"""Simulated peers of the integration, for tests, development and benchmarks; not shipped.

A Shelly energy meter simulator speaking the real wire protocols on loopback: start with
`Simulator` (many meters, one port each, a control API) or `SimulatedMeter` + `MeterServer`
(one meter); see ``simulator/README.md``. `simulator.emoncms` is a local Emoncms server.
"""

from .clock import Clock
from .gen1 import CSV_BUSY_BODY, Gen1Api, create_gen1_app
from .household import Household, Source
from .meter import (
    METER_KINDS,
    PRESETS,
    ChannelRef,
    ChannelState,
    MeterListener,
    MeterState,
    Preset,
    ReplyOverride,
    SimulatedMeter,
)
from .records import EM1_KEYS, TRIPHASE_KEYS, RecordColumns, RecordStore
from .rpc import DigestAuth, RpcApi, RpcError, create_rpc_app
from .server import CONTROL_ACTIONS, HOST, LOOPBACK_HOSTS, MeterOptions, MeterServer, Simulator

__all__ = [
    "CONTROL_ACTIONS",
    "CSV_BUSY_BODY",
    "EM1_KEYS",
    "HOST",
    "LOOPBACK_HOSTS",
    "METER_KINDS",
    "PRESETS",
    "TRIPHASE_KEYS",
    "ChannelRef",
    "ChannelState",
    "Clock",
    "DigestAuth",
    "Gen1Api",
    "Household",
    "MeterListener",
    "MeterOptions",
    "MeterServer",
    "MeterState",
    "Preset",
    "RecordColumns",
    "RecordStore",
    "ReplyOverride",
    "RpcApi",
    "RpcError",
    "SimulatedMeter",
    "Simulator",
    "Source",
    "create_gen1_app",
    "create_rpc_app",
]
