"""SimulatedMeter: the physics and the state of one simulated Shelly device.

A meter has physical channels (phases a, b, c or channels 0, 1), each wired to a `Source` of
its household (see `household.py` for the sign convention). Power is piecewise constant per
10-second slot; the energy counters are its exact integral, advanced lazily to the clock's
`now()` whenever something reads the meter (`sync`), so an idle simulator costs nothing.
Counters are kept in joules internally (integer watts over integer seconds add up exactly) and
only rounded when serialised. Every completed record period appends a record to `records`.

Scenario controls (`set_power`, `reboot`, `voltage_episode`, ...) are plain synchronous
methods; the few that concern the network (`set_online`, dropping connections) are passed on
to the attached `MeterListener`, normally the `MeterServer` serving this meter.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import accumulate, repeat
from operator import add, neg, sub, truediv
from typing import Any, Literal, Protocol

from .clock import Clock
from .faults import garble
from .household import PHASE_NAMES, Household, Source
from .records import LEADING_BELOW_W, RecordColumns, RecordStore, to_mwh, to_mwh_all

SLOT_SECONDS = 10
_SLOTS_PER_MINUTE = 60 // SLOT_SECONDS
# Within a minute household power wobbles by a few percent, slot by slot; the factors average
# to exactly 1 over the six slots of a minute, so a minute's energy does not depend on them.
_WOBBLE = tuple(1 + 0.03 * math.sin(2 * math.pi * k / _SLOTS_PER_MINUTE) for k in range(6))
_NOISE_TABLE_SIZE = 1009  # prime, so slot and channel strides do not line up
# With `noise`, a household's power varies second by second by up to this share, as a real one
# does (fridges, electronics, motors). The variations of a slot's seconds cancel out in pairs, so
# a slot's energy, and so every record, is what it is without noise.
NOISE_POWER_SHARE = 0.06
NOISE_VOLTAGE_V = 0.4  # the voltage's own variation second by second
SUPPLY_IMPEDANCE_OHM = 0.2  # the voltage sags by this times the current a channel draws
NOISE_FREQUENCY_HZ = 0.01
_HALF_SLOT = SLOT_SECONDS // 2
_DAY = 86_400
MAX_RETENTION_DAYS = 60
_GEN1_INVALID_SECONDS = 5.0  # how long Gen1 counters read invalid after a (re)boot

GEN1_FIRMWARE = "20230913-114244/v1.14.0-gcb84623"
GEN2_FIRMWARE = "20250508-110717/1.6.1-g8dbd358"
GEN3_FIRMWARE = "20250508-110823/1.6.1-g8dbd358"
GEN4_FIRMWARE = "20250508-111004/1.6.1-g8dbd358"
_DEFAULT_FIRMWARE = {1: GEN1_FIRMWARE, 2: GEN2_FIRMWARE, 3: GEN3_FIRMWARE, 4: GEN4_FIRMWARE}

ChannelRef = int | str
Profile = Literal["triphase", "monophase"]
OverrideKind = Literal["set", "delete", "invalid_json", "error", "garble"]
OVERRIDE_KINDS: tuple[str, ...] = ("set", "delete", "invalid_json", "error", "garble")
# What an override without a `method` applies to: the status reply of either generation.
STATUS_TARGETS = frozenset({"status", "Shelly.GetStatus"})


@dataclass(frozen=True, slots=True)
class Preset:
    """What a device kind is: identity, layout and defaults."""

    kind: str
    model: str
    gen: int
    app: str  # Gen2+ `app`; Gen1 `type` (same as the model)
    id_prefix: str  # Gen2+ device id / Gen1 hostname before the MAC
    channels: int
    wiring: tuple[str, ...]  # default Source spec per channel
    record_period: int = 60
    three_phase: bool = False  # Gen2 em:0/emdata:0 (triphase profile), Gen1 SHEM-3 layout
    profiles: tuple[Profile, ...] = ()  # switchable at run time (Pro 3EM)
    has_relay: bool = True
    energy_meter: bool = True  # False: a plug, measured through its relay
    pro_line: bool = False  # Pro devices: Ethernet, Modbus, temperature:0
    ct_type: str = "120A"
    id_mac_chars: int = 12  # how much of the MAC ends the id (Gen1 EM: the last 6)
    id_upper: bool = False

    def device_id(self, mac: str) -> str:
        """Return the Gen2+ device id / Gen1 hostname for a MAC."""
        suffix = mac[-self.id_mac_chars :]
        return f"{self.id_prefix}-{suffix if self.id_upper else suffix.lower()}"


_TRIPHASE_GRID = ("grid@a", "grid@b", "grid@c")
PRESETS: dict[str, Preset] = {
    preset.kind: preset
    for preset in (
        Preset(
            "gen1_em",
            "SHEM",
            1,
            "SHEM",
            "shellyem",
            2,
            ("grid", "solar"),
            record_period=600,
            ct_type="50A",
            id_mac_chars=6,
            id_upper=True,
        ),
        Preset(
            "gen1_3em",
            "SHEM-3",
            1,
            "SHEM-3",
            "shellyem3",
            3,
            _TRIPHASE_GRID,
            record_period=600,
            three_phase=True,
            id_upper=True,
        ),
        Preset(
            "pro3em",
            "SPEM-003CEBEU",
            2,
            "Pro3EM",
            "shellypro3em",
            3,
            _TRIPHASE_GRID,
            three_phase=True,
            profiles=("triphase", "monophase"),
            has_relay=False,
            pro_line=True,
        ),
        Preset(
            "proem50",
            "SPEM-002CEBEU50",
            2,
            "ProEM",
            "shellyproem50",
            2,
            ("grid", "load"),
            pro_line=True,
            ct_type="50A",
        ),
        Preset(
            "emg3", "S3EM-002CXCEU", 3, "EMG3", "shellyemg3", 2, ("grid", "load"), ct_type="50A"
        ),
        Preset(
            "3em63g3",
            "S3EM-003CXCEU63",
            3,
            "3EM63G3",
            "shelly3em63g3",
            3,
            _TRIPHASE_GRID,
            record_period=300,
            three_phase=True,
            has_relay=False,
            ct_type="63A",
        ),
        Preset(
            "emg4", "S4EM-002CXCEU", 4, "EMG4", "shellyemg4", 2, ("grid", "load"), ct_type="50A"
        ),
        Preset(
            "plug",
            "SNPL-00112EU",
            2,
            "PlugS",
            "shellyplusplugs",
            1,
            ("load@b",),
            energy_meter=False,
        ),
        Preset(
            "gen1_plug",
            "SHPLG-S",
            1,
            "SHPLG-S",
            "shellyplug-s",
            1,
            ("load@b",),
            energy_meter=False,
            id_mac_chars=6,
            id_upper=True,
        ),
    )
}
METER_KINDS: tuple[str, ...] = tuple(PRESETS)


def firmware_version(fw_id: str) -> str:
    """Return the version part of a firmware id: `20250508-110717/1.6.1-g8dbd358` -> `1.6.1`."""
    version = fw_id.split("/", 1)[-1]
    return version.rsplit("-g", 1)[0]


def power_factor(watts: float) -> float:
    """Return the power factor of a household load drawing `watts` (small loads are poor)."""
    return 0.55 + 0.44 * min(1.0, abs(watts) / 2000.0)


def default_mac(seed: int) -> str:
    """Return a stable MAC for a seed (distinct for seeds below 2**24)."""
    return f"A0DD6C{(seed * 0x9E3779 + 0x5A17) & 0xFFFFFF:06X}"


@dataclass(slots=True)
class ChannelState:
    """What one channel reads at one instant, unrounded; energies in Wh."""

    power: float  # W, signed (see household.py)
    apparent_power: float  # VA
    reactive_power: float  # var, > 0 lagging
    current: float  # A
    voltage: float  # V
    power_factor: float  # signed like `power`; 0 without load
    frequency: float  # Hz; 0 without voltage
    energy_in: float  # Wh, cumulative
    energy_out: float  # Wh, cumulative
    flags: tuple[str, ...]
    errors: tuple[str, ...]


@dataclass(slots=True)
class MeterState:
    """What the whole meter reads at one instant."""

    time: float
    uptime: int
    channels: list[ChannelState]
    counters_valid: bool  # False right after a Gen1 reboot
    invalid_counter_value: float  # what Gen1 publishes for counters while they are invalid
    relay_on: bool
    relay_source: str
    errors: tuple[str, ...]
    temperature: float  # device temperature, degrees C
    rssi: int  # Wi-Fi signal, dBm


@dataclass(slots=True)
class ReplyOverride:
    """A fault injected into the next `count` replies to `method` (None: the status reply).

    Kinds: ``set`` (put `value`, which may be None, at `path`), ``delete`` (remove `path`),
    ``invalid_json`` (a body or frame that is not JSON), ``error`` (Gen2: an RPC error frame
    with `code`/`message`; Gen1: HTTP status `code` with `message` as body), ``garble``
    (`fields` random places damaged, see `faults.garble`; drawn from `rng`). A path is dotted
    into the reply, list indices as numbers: ``em:0.a_act_power``, ``emeters.0.total``.
    """

    kind: OverrideKind
    method: str | None = None
    path: str | None = None
    value: Any = None
    code: int = 500
    message: str = "Internal error"
    count: int = 1
    fields: int = 1
    non_finite: bool = True
    rng: random.Random = field(default_factory=random.Random)

    def matches(self, method: str) -> bool:
        """Whether this override applies to a reply to `method`."""
        return self.method == method or (self.method is None and method in STATUS_TARGETS)

    def apply(self, payload: Any) -> Any:
        """Return the reply as this override makes it (``set``, ``delete``, ``garble``)."""
        if self.kind == "garble":
            return garble(payload, self.rng, fields=self.fields, non_finite=self.non_finite)
        if self.kind not in ("set", "delete") or not self.path:
            return payload
        *parents, last = self.path.split(".")
        node = payload
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if self.kind == "set":
            if isinstance(node, list):
                node[int(last)] = self.value
            else:
                node[last] = self.value
        elif isinstance(node, list):
            del node[int(last)]
        else:
            node.pop(last, None)
        return payload


class MeterListener(Protocol):
    """What a meter tells the server that carries it."""

    def meter_online_changed(self, online: bool) -> None:
        """Stop (False) or resume (True) listening on the meter's port."""

    def meter_dropped_connections(self) -> None:
        """Close every open connection (HTTP keep-alive and WebSocket) to the meter."""


class _PeriodStats:
    """What one channel did during the record period in progress."""

    __slots__ = (
        "apparent_seconds",
        "max_power",
        "max_voltage",
        "min_power",
        "min_voltage",
        "power_seconds",
        "seconds",
        "start_in_mwh",
        "start_out_mwh",
        "voltage_seconds",
    )

    def __init__(self, in_mwh: int, out_mwh: int) -> None:
        self.reset(in_mwh, out_mwh)

    def reset(self, in_mwh: int, out_mwh: int) -> None:
        self.start_in_mwh = in_mwh
        self.start_out_mwh = out_mwh
        self.min_power = math.inf
        self.max_power = -math.inf
        self.min_voltage = math.inf
        self.max_voltage = -math.inf
        self.voltage_seconds = self.power_seconds = self.apparent_seconds = self.seconds = 0.0

    def add(self, watts: float, volts: float, apparent: float, seconds: float) -> None:
        self.min_power = min(self.min_power, watts)
        self.max_power = max(self.max_power, watts)
        self.min_voltage = min(self.min_voltage, volts)
        self.max_voltage = max(self.max_voltage, volts)
        self.voltage_seconds += volts * seconds
        self.power_seconds += abs(watts) * seconds
        self.apparent_seconds += apparent * seconds
        self.seconds += seconds

    def record(self, in_mwh: int, out_mwh: int) -> RecordColumns:
        """Return this period as a one-record `RecordColumns` (needs at least one `add`)."""
        pf = self.power_seconds / self.apparent_seconds if self.apparent_seconds else 0.0
        return RecordColumns(
            [in_mwh - self.start_in_mwh],
            [out_mwh - self.start_out_mwh],
            [self.min_power],
            [self.max_power],
            [self.min_voltage],
            [self.max_voltage],
            [self.voltage_seconds / self.seconds],
            [pf],
        )


class _Channel:
    """State of one physical channel."""

    __slots__ = (
        "disconnected",
        "energy_in",
        "energy_out",
        "errors",
        "flags",
        "glitch_reads",
        "glitch_value",
        "hold_until",
        "hold_voltage",
        "jitter_reads",
        "jitter_wh",
        "minute",
        "minute_power",
        "pinned_pf",
        "pinned_power",
        "pinned_voltage",
        "saved_in",
        "saved_out",
        "source",
        "stats",
        "true_in",
        "true_out",
    )

    def __init__(self, source: Source, energy_j: float) -> None:
        self.source = source
        self.pinned_power: float | None = None
        self.pinned_pf = 1.0
        self.pinned_voltage: float | None = None
        self.hold_voltage = 0.0
        self.hold_until = -math.inf
        self.disconnected = False
        self.energy_in = energy_j  # J
        self.energy_out = 0.0  # J
        self.flags: tuple[str, ...] = ()
        self.errors: tuple[str, ...] = ()
        self.jitter_wh = 0.0
        self.jitter_reads = 0
        self.glitch_value = 0.0
        self.glitch_reads = 0
        # What the device last saved to flash (J): a reboot with rollback returns to it.
        self.saved_in = energy_j
        self.saved_out = 0.0
        # What really flowed (J), whatever the counters say: the truth tests compare with.
        self.true_in = energy_j
        self.true_out = 0.0
        self.minute = -1  # the minute `minute_power` belongs to
        self.minute_power = 0.0
        self.stats = _PeriodStats(to_mwh(self.energy_in), 0)


class SimulatedMeter:
    """One simulated Shelly device: its physics, its counters, records and scenarios.

    Channels are referred to by 0-based index (int, or a string of digits) or, equivalently,
    by phase letter ``a``/``b``/``c``.
    """

    def __init__(
        self,
        kind: str,
        *,
        clock: Clock | None = None,
        seed: int = 0,
        mac: str | None = None,
        name: str | None = None,
        password: str | None = None,
        firmware: str | None = None,
        profile: Profile | None = None,
        wiring: Sequence[str | Source] | None = None,
        nominal_voltage: float = 230.0,
        frequency: float = 50.0,
        history_days: float = 0.0,
        retention_days: float = MAX_RETENTION_DAYS,
        initial_energy_wh: float = 0.0,
        solar_peak_w: float = 4000.0,
        battery_wh: float = 0.0,
        utc_offset: int = 0,
        household: Household | None = None,
        rows_per_call: int = 6,
        csv_bytes_per_second: float | None = None,
        noise: bool = False,
        rpc_latency_s: float = 0.0,
        download_bytes_per_second: float | None = None,
        data_csv: bool = True,
        flash_save_s: int = 300,
    ) -> None:
        """Create a meter of `kind` (see `METER_KINDS`); everything else has a default.

        `history_days` of past records are generated from the household model, ending where
        the live physics start (the start of the current record period), with counters equal
        to `initial_energy_wh` plus everything recorded. `csv_bytes_per_second` throttles Gen1
        `em_data.csv` downloads (None: as fast as possible). `household` is what the channels
        measure, shared with other meters (its own solar, battery and UTC offset then apply);
        by default the meter has one of its own, made from `seed`, `solar_peak_w`, `battery_wh`
        and `utc_offset`. With `noise` household power varies second by second (see
        `NOISE_POWER_SHARE`), and current, apparent power, power factor, voltage and frequency
        follow; without it, power changes every `SLOT_SECONDS`. `rpc_latency_s` is how long a
        Gen2+ device takes to answer each RPC call, and `download_bytes_per_second` how fast it
        sends its data.csv (None: as fast as possible); without `data_csv` it has none (HTTP
        404, as older firmware).
        """
        if kind not in PRESETS:
            raise ValueError(f"unknown meter kind {kind!r}; expected one of {', '.join(PRESETS)}")
        self.preset = PRESETS[kind]
        self.clock = clock or Clock()
        self.seed = seed
        self.mac = (mac or default_mac(seed)).replace(":", "").upper()
        if len(self.mac) != 12 or any(char not in "0123456789ABCDEF" for char in self.mac):
            raise ValueError(f"a MAC is 12 hex digits, not {mac!r}")
        self.name = name
        self.password = password
        self.firmware = firmware or _DEFAULT_FIRMWARE[self.preset.gen]
        if profile is not None and profile not in self.preset.profiles:
            raise ValueError(f"{kind} has no profile {profile!r}")
        self.profile: Profile | None = profile or (
            self.preset.profiles[0] if self.preset.profiles else None
        )
        self.nominal_voltage = nominal_voltage
        self.nominal_frequency = frequency
        self.rows_per_call = rows_per_call
        self.csv_bytes_per_second = csv_bytes_per_second
        self.noise = noise
        self.rpc_latency_s = max(0.0, rpc_latency_s)
        self.download_bytes_per_second = download_bytes_per_second
        self.data_csv = data_csv
        if flash_save_s <= 0 or flash_save_s % SLOT_SECONDS:
            raise ValueError(f"flash_save_s must be a positive multiple of {SLOT_SECONDS}")
        self.flash_save_s = flash_save_s
        self.household = household or Household(
            seed, solar_peak_w=solar_peak_w, battery_wh=battery_wh, utc_offset=utc_offset
        )
        self.utc_offset = self.household.utc_offset
        wiring = wiring or self.preset.wiring
        if len(wiring) != self.preset.channels:
            raise ValueError(
                f"{kind} has {self.preset.channels} channels, wiring has {len(wiring)}"
            )
        initial_j = initial_energy_wh * 3600
        self._channels = [
            _Channel(spec if isinstance(spec, Source) else Source.parse(spec), initial_j)
            for spec in wiring
        ]
        period = self.preset.record_period
        retention_days = min(retention_days, MAX_RETENTION_DAYS)
        self._records = RecordStore(
            len(self._channels), period, int(retention_days * _DAY) // period
        )
        rng = random.Random(seed)
        self._voltage_noise = [rng.uniform(-0.9, 0.9) for _ in range(_NOISE_TABLE_SIZE)]
        self._frequency_noise = [rng.uniform(-0.02, 0.02) for _ in range(_NOISE_TABLE_SIZE)]
        self._second_noise = [rng.uniform(-1.0, 1.0) for _ in range(_NOISE_TABLE_SIZE)]
        self.temperature = round(rng.uniform(40.0, 48.0), 1)

        now = self.clock.now()
        # Live physics start at the beginning of the current record period; history ends there.
        self._time = float(int(now) // period * period)
        self._period_end = self._time + period
        self._powered_in_period = False
        if history_days > 0:
            self._generate_history(int(self._time), history_days)
        self._boot_time = now
        self.cfg_rev = 10
        self.online = True
        self.silent = False  # on the network, but nothing it sends arrives (`set_silent`)
        self.relay_on = True
        self.relay_source = "init"
        self.errors: tuple[str, ...] = ()
        self.frequency_pin: float | None = None
        self.reply_delay = 0.0
        self.available_update: str | None = None
        self.available_beta: str | None = None
        self.status_firmware: str | None = None  # Gen1 update.old_version, when not `firmware`
        self._flap_every: int | None = None  # status reads between two profile flips
        self._status_reads = 0
        self._overrides: list[ReplyOverride] = []
        # What the meter was asked: HTTP paths (a WebSocket once, as /rpc) and RPC methods.
        self.requests: Counter[str] = Counter()
        self._unreachable_until = -math.inf
        self._invalid_until = -math.inf
        self._invalid_reads = 0
        self._invalid_value = -1.0
        self._power_off = (math.inf, math.inf)  # [start, end) of a simulated power loss
        self._events: list[float] = []  # future instants where the physics change
        self._listener: MeterListener | None = None

    # --- identity -------------------------------------------------------------------------

    @property
    def kind(self) -> str:
        """The device kind, e.g. ``pro3em``."""
        return self.preset.kind

    @property
    def model(self) -> str:
        """The device's model id, e.g. ``SPEM-003CEBEU``."""
        return self.preset.model

    @property
    def gen(self) -> int:
        """The device generation (1 to 4)."""
        return self.preset.gen

    @property
    def device_id(self) -> str:
        """Gen2+ device id (also the digest realm) / Gen1 hostname."""
        return self.preset.device_id(self.mac)

    @property
    def version(self) -> str:
        """The firmware version, e.g. ``1.6.1``."""
        return firmware_version(self.firmware)

    @property
    def channel_count(self) -> int:
        """The number of physical channels (phases or single channels)."""
        return len(self._channels)

    @property
    def records(self) -> RecordStore:
        """The stored records, as of now (reading them advances the physics)."""
        self.sync()
        return self._records

    @property
    def wiring(self) -> tuple[Source, ...]:
        """The source each channel measures."""
        return tuple(channel.source for channel in self._channels)

    def attach(self, listener: MeterListener | None) -> None:
        """Attach the server carrying this meter (None detaches)."""
        self._listener = listener

    def channel_index(self, channel: ChannelRef) -> int:
        """Resolve a channel reference (0-based index, digit string or phase letter)."""
        if isinstance(channel, str):
            if channel in PHASE_NAMES:
                channel = PHASE_NAMES.index(channel)
            elif channel.isdigit():
                channel = int(channel)
            else:
                raise ValueError(f"unknown channel {channel!r}")
        if not 0 <= channel < len(self._channels):
            raise ValueError(f"channel {channel} out of range for {self.kind}")
        return channel

    # --- physics --------------------------------------------------------------------------

    def sync(self) -> float:
        """Advance the physics to the clock's now and return it."""
        now = self.clock.now()
        if now > self._time:
            self._advance(now)
        return now

    def counters(self, channel: ChannelRef) -> tuple[float, float]:
        """Return a channel's exact (import, export) counters in Wh, as of now."""
        self.sync()
        state = self._channels[self.channel_index(channel)]
        return state.energy_in / 3600, state.energy_out / 3600

    def true_energy(self, channel: ChannelRef) -> tuple[float, float]:
        """Return what really flowed in and out of a channel (Wh) since the meter was created.

        Unlike `counters`, untouched by rollbacks, resets and corrupt reads: the truth.
        """
        self.sync()
        state = self._channels[self.channel_index(channel)]
        return state.true_in / 3600, state.true_out / 3600

    def state(self, *, read_counters: bool = True) -> MeterState:
        """Return what the meter reads now.

        With `read_counters`, this is a read of the energy counters: it consumes one read of
        a pending `jitter` and of a Gen1 post-reboot invalid period.
        """
        now = self.sync()
        frequency = self._frequency(now)
        powered = not self._is_off(now)
        channels = []
        for index, channel in enumerate(self._channels):
            watts, volts, pf = self._sample(index, channel, now) if powered else (0.0, 0.0, 0.0)
            apparent = abs(watts) / pf if pf else 0.0
            reactive = math.sqrt(max(0.0, apparent * apparent - watts * watts))
            if abs(watts) < LEADING_BELOW_W:
                reactive = -reactive
            energy_in = channel.energy_in / 3600
            energy_out = channel.energy_out / 3600
            if read_counters and channel.jitter_reads > 0:
                channel.jitter_reads -= 1
                energy_in = max(0.0, energy_in - channel.jitter_wh)
                energy_out = max(0.0, energy_out - channel.jitter_wh)
            if read_counters and channel.glitch_reads > 0:
                channel.glitch_reads -= 1
                energy_in = energy_out = channel.glitch_value
            channels.append(
                ChannelState(
                    power=watts,
                    apparent_power=apparent,
                    reactive_power=reactive,
                    current=apparent / volts if volts > 0 else 0.0,
                    voltage=volts,
                    power_factor=math.copysign(pf, watts) if watts else 0.0,
                    frequency=frequency if volts > 0 else 0.0,
                    energy_in=energy_in,
                    energy_out=energy_out,
                    flags=channel.flags,
                    errors=channel.errors,
                )
            )
        counters_valid = now >= self._invalid_until and self._invalid_reads <= 0
        if read_counters and self._invalid_reads > 0:
            self._invalid_reads -= 1
        return MeterState(
            time=now,
            uptime=max(0, int(now - self._boot_time)),
            channels=channels,
            counters_valid=counters_valid,
            invalid_counter_value=self._invalid_value,
            relay_on=self.relay_on,
            relay_source=self.relay_source,
            errors=self.errors,
            temperature=self.temperature,
            rssi=-57 + round(2 * math.sin(now / 97)),  # drifts slowly around -57 dBm
        )

    def reachable(self) -> bool:
        """Whether the device answers on the network now (not rebooting, not without power)."""
        now = self.clock.now()
        return (
            self.online
            and not self.silent
            and now >= self._unreachable_until
            and not self._is_off(now)
        )

    def _is_off(self, t: float) -> bool:
        return self._power_off[0] <= t < self._power_off[1]

    def _frequency(self, t: float) -> float:
        if self.frequency_pin is not None:
            return self.frequency_pin
        slot = int(t // SLOT_SECONDS)
        frequency = self.nominal_frequency + self._frequency_noise[slot * 3 % _NOISE_TABLE_SIZE]
        if self.noise:
            frequency += NOISE_FREQUENCY_HZ * self._second_noise[int(t) * 11 % _NOISE_TABLE_SIZE]
        return frequency

    def _power_variation(self, index: int, t: float) -> float:
        """Return the second's variation of a channel's power (in [-1, 1]).

        The second half of a slot mirrors the first: a slot's variations add up to zero.
        """
        slot, second = divmod(int(t), SLOT_SECONDS)
        value = self._second_noise[
            (slot * _HALF_SLOT + second % _HALF_SLOT + index * 331) % _NOISE_TABLE_SIZE
        ]
        return value if second < _HALF_SLOT else -value

    def _voltage(self, index: int, channel: _Channel, t: float, slot: int) -> float:
        if channel.disconnected:
            return 0.0
        if t < channel.hold_until:
            return channel.hold_voltage
        if channel.pinned_voltage is not None:
            return channel.pinned_voltage
        return (
            self.nominal_voltage + self._voltage_noise[(slot * 7 + index * 331) % _NOISE_TABLE_SIZE]
        )

    def _sample(self, index: int, channel: _Channel, t: float) -> tuple[float, float, float]:
        """Return (W, V, |pf|) of a channel at `t`: constant per slot, or per second with noise."""
        slot = int(t // SLOT_SECONDS)
        volts = self._voltage(index, channel, t, slot)
        if volts < 0.5 * self.nominal_voltage:
            return 0.0, volts, 0.0  # no or too little voltage: loads drop out
        if channel.pinned_power is not None:
            watts, pf = channel.pinned_power, channel.pinned_pf
        elif channel.source.kind == "fixed":
            watts, pf = channel.source.watts, 1.0
        else:
            minute = slot // _SLOTS_PER_MINUTE
            if minute != channel.minute:
                channel.minute = minute
                channel.minute_power = self.household.power(channel.source, minute)
            watts = channel.minute_power * _WOBBLE[(slot + minute + index) % _SLOTS_PER_MINUTE]
            if self.noise:
                watts *= 1 + NOISE_POWER_SHARE * self._power_variation(index, t)
            pf = power_factor(watts)
        if not self.preset.energy_meter and not self.relay_on:
            watts = 0.0
        if self.noise and self._voltage_follows(channel, t):
            second_noise = self._second_noise[(int(t) * 3 + index * 577) % _NOISE_TABLE_SIZE]
            volts += NOISE_VOLTAGE_V * second_noise - SUPPLY_IMPEDANCE_OHM * abs(watts) / volts
        return watts, volts, (pf if watts else 0.0)

    @staticmethod
    def _voltage_follows(channel: _Channel, t: float) -> bool:
        """Whether a channel's voltage follows the grid (neither held, pinned nor absent)."""
        return (
            not channel.disconnected and t >= channel.hold_until and channel.pinned_voltage is None
        )

    def power_at(self, channel: ChannelRef, t: float) -> float:
        """Return the active power (W, unrounded) a channel reads at `t`, past or present.

        A pure function of the seed and the scenario (episodes and pins apply as they are now):
        the benchmark finds with it when a value an entity shows was measured.
        """
        index = self.channel_index(channel)
        return self._sample(index, self._channels[index], t)[0]

    def _advance(self, end: float) -> None:
        t = self._time
        period_end = self._period_end
        channels = self._channels
        # Power is constant per slot, or per second with noise: integrate step by step.
        step = 1 if self.noise else SLOT_SECONDS
        while t < end:
            step_end = min(end, (t // step + 1) * step, period_end)
            for event in self._events:
                if t < event < step_end:
                    step_end = event
            if not self._is_off(t):
                seconds = step_end - t
                for index, channel in enumerate(channels):
                    watts, volts, pf = self._sample(index, channel, t)
                    if watts > 0:
                        channel.energy_in += watts * seconds
                        channel.true_in += watts * seconds
                    elif watts < 0:
                        channel.energy_out -= watts * seconds
                        channel.true_out -= watts * seconds
                    channel.stats.add(watts, volts, abs(watts) / pf if pf else 0.0, seconds)
                self._powered_in_period = True
            t = step_end
            if t % self.flash_save_s == 0:
                for channel in channels:
                    channel.saved_in, channel.saved_out = channel.energy_in, channel.energy_out
            if t == period_end:
                self._close_period(int(period_end) - self._records.period)
                period_end += self._records.period
        self._time = end
        self._period_end = period_end
        self._events = [event for event in self._events if event > end]

    def _close_period(self, ts: int) -> None:
        """Store the record of the period starting at `ts` (if the device had power in it)."""
        columns = []
        for channel in self._channels:
            in_mwh, out_mwh = to_mwh(channel.energy_in), to_mwh(channel.energy_out)
            if self._powered_in_period:
                columns.append(channel.stats.record(in_mwh, out_mwh))
            channel.stats.reset(in_mwh, out_mwh)
        if self._powered_in_period:
            self._records.extend(ts, columns)
        self._powered_in_period = False

    # --- history --------------------------------------------------------------------------

    def _generate_history(self, end_ts: int, days: float) -> None:
        """Fill the records for `days` before `end_ts` and set the counters to match."""
        period = self._records.period
        count = min(int(days * _DAY) // period, self._records.capacity)
        energies = [(channel.energy_in, channel.energy_out) for channel in self._channels]
        columns, energies = self._synthesise(end_ts - count * period, count, energies)
        self._records.extend(end_ts - count * period, columns)
        for channel, (energy_in, energy_out) in zip(self._channels, energies, strict=True):
            channel.energy_in, channel.energy_out = energy_in, energy_out
            channel.saved_in, channel.saved_out = energy_in, energy_out
            channel.stats.reset(to_mwh(energy_in), to_mwh(energy_out))

    def _synthesise(
        self, start_ts: int, count: int, energies: list[tuple[float, float]]
    ) -> tuple[list[RecordColumns], list[tuple[float, float]]]:
        """Compute `count` records from `start_ts` from the household model, minute by minute.

        Start from the given (import, export) counters in J; return the records' columns and
        the counters at their end. Vectorised per minute: no 10-second slots, the wobble only
        widens each record's power range.
        """
        minutes_per_record = self._records.period // 60
        minutes = count * minutes_per_record
        powers = self.household.minute_powers(
            [channel.source for channel in self._channels], start_ts // 60, minutes
        )
        noise = self._voltage_noise
        first_slot = start_ts // SLOT_SECONDS
        slot_step = self._records.period // SLOT_SECONDS
        seconds_per_record = 60.0 * minutes_per_record
        columns: list[RecordColumns] = []
        ends: list[tuple[float, float]] = []
        # map() over builtins and operator functions: 60 days of minutes must take well under
        # a second per channel.
        for index, (series, (energy_in, energy_out)) in enumerate(
            zip(powers, energies, strict=True)
        ):
            fixed = self._channels[index].source.kind == "fixed"
            low, high = (1.0, 1.0) if fixed else (min(_WOBBLE), max(_WOBBLE))
            joules = list(map((60.0).__mul__, series))
            imports = list(map(max, joules, repeat(0.0)))
            exports = list(map(max, map(neg, joules), repeat(0.0)))
            min_power = list(map(min, map(low.__mul__, series), map(high.__mul__, series)))
            max_power = list(map(max, map(low.__mul__, series), map(high.__mul__, series)))
            if minutes_per_record > 1:
                starts = range(0, minutes, minutes_per_record)
                imports = [sum(imports[i : i + minutes_per_record]) for i in starts]
                exports = [sum(exports[i : i + minutes_per_record]) for i in starts]
                min_power = [min(min_power[i : i + minutes_per_record]) for i in starts]
                max_power = [max(max_power[i : i + minutes_per_record]) for i in starts]
            import_totals = list(accumulate(imports, initial=energy_in))
            export_totals = list(accumulate(exports, initial=energy_out))
            import_mwh = to_mwh_all(import_totals)
            export_mwh = to_mwh_all(export_totals)
            base = first_slot * 7 + index * 331
            avg_voltage = [
                self.nominal_voltage + noise[(base + record * slot_step * 7) % _NOISE_TABLE_SIZE]
                for record in range(count)
            ]
            mean_powers = map(truediv, map(add, imports, exports), repeat(seconds_per_record))
            columns.append(
                RecordColumns(
                    import_mwh=list(map(sub, import_mwh[1:], import_mwh)),
                    export_mwh=list(map(sub, export_mwh[1:], export_mwh)),
                    min_power=min_power,
                    max_power=max_power,
                    min_voltage=list(map((-0.4).__add__, avg_voltage)),
                    max_voltage=list(map((0.4).__add__, avg_voltage)),
                    avg_voltage=avg_voltage,
                    power_factor=[
                        (1.0 if fixed else power_factor(watts)) if watts else 0.0
                        for watts in mean_powers
                    ],
                )
            )
            ends.append((import_totals[-1], export_totals[-1]))
        return columns, ends

    # --- scenarios: power and counters ----------------------------------------------------

    def set_power(self, channel: ChannelRef, watts: float, pf: float = 1.0) -> None:
        """Pin a channel's active power (W, signed) and power factor until `release_power`."""
        if not 0 < pf <= 1:
            raise ValueError("pf must be in (0, 1]")
        self.sync()
        state = self._channels[self.channel_index(channel)]
        state.pinned_power = float(watts)
        state.pinned_pf = float(pf)

    def release_power(self, channel: ChannelRef) -> None:
        """Let a channel follow its source again."""
        self.sync()
        self._channels[self.channel_index(channel)].pinned_power = None

    def wire(self, channel: ChannelRef, source: str | Source) -> None:
        """Connect a channel to another source (``grid@a``, ``solar``, ``fixed@500``, ...)."""
        self.sync()
        state = self._channels[self.channel_index(channel)]
        state.source = source if isinstance(source, Source) else Source.parse(source)
        state.minute = -1

    def set_counters(self, channel: ChannelRef, energy_in_wh: float, energy_out_wh: float) -> None:
        """Set a channel's counters (Wh); the jump does not show in the records."""
        self.sync()
        state = self._channels[self.channel_index(channel)]
        state.stats.start_in_mwh += to_mwh(energy_in_wh * 3600) - to_mwh(state.energy_in)
        state.stats.start_out_mwh += to_mwh(energy_out_wh * 3600) - to_mwh(state.energy_out)
        state.energy_in = state.saved_in = energy_in_wh * 3600
        state.energy_out = state.saved_out = energy_out_wh * 3600

    def reset_counters(self, channel: ChannelRef | None = None) -> None:
        """Zero the counters of a channel (None: all) and keep integrating (`ResetCounters`)."""
        self.sync()
        targets = (
            self._channels if channel is None else [self._channels[self.channel_index(channel)]]
        )
        for state in targets:
            state.energy_in = state.energy_out = state.saved_in = state.saved_out = 0.0
            state.stats.start_in_mwh = state.stats.start_out_mwh = 0

    def delete_all_data(self) -> None:
        """Wipe the records and zero the counters (`EMData.DeleteAllData`)."""
        self.reset_counters()
        self._records.clear()

    def corrupt_counters(
        self, channel: ChannelRef | None = None, value: float = 1e308, reads: int = 1
    ) -> None:
        """Make the next `reads` reads of a channel's (None: every channel's) counters `value`.

        A corrupt reply (1e308, 1e30), an overflowed counter (4294967295), a negative number.
        """
        targets = (
            self._channels if channel is None else [self._channels[self.channel_index(channel)]]
        )
        for state in targets:
            state.glitch_value = float(value)
            state.glitch_reads = reads

    def jitter(self, channel: ChannelRef, mwh: float = 3.0, reads: int = 1) -> None:
        """Make the next `reads` reads of a channel's counters `mwh` lower, as real meters do."""
        state = self._channels[self.channel_index(channel)]
        state.jitter_wh = mwh / 1000
        state.jitter_reads = reads

    def bogus_records(self, count: int) -> None:
        """Prepend `count` records stamped before the clock was synced (ts 1000 + i*period)."""
        zero = [(0.0, 0.0)] * len(self._channels)
        columns, _ = self._synthesise(1000, count, zero)
        self._records.prepend(1000, columns)

    # --- scenarios: voltage and grid ------------------------------------------------------

    def voltage_episode(self, channel: ChannelRef | None, volts: float, seconds: float) -> None:
        """Hold a channel's (None: every channel's) voltage at `volts` for `seconds`.

        An overvoltage, a sag, a 1-second spike, an interruption (0 V). Power follows: below
        half the nominal voltage loads drop out (0 W, 0 A); otherwise they keep their power
        and the current follows.
        """
        now = self.sync()
        targets = (
            self._channels if channel is None else [self._channels[self.channel_index(channel)]]
        )
        for state in targets:
            state.hold_voltage = float(volts)
            state.hold_until = now + seconds
        self._events.append(now + seconds)

    def set_voltage(self, channel: ChannelRef, volts: float) -> None:
        """Pin a channel's voltage until `release_voltage`."""
        self.sync()
        self._channels[self.channel_index(channel)].pinned_voltage = float(volts)

    def release_voltage(self, channel: ChannelRef) -> None:
        """Let a channel's voltage follow the grid again."""
        self.sync()
        self._channels[self.channel_index(channel)].pinned_voltage = None

    def disconnect_phase(self, channel: ChannelRef) -> None:
        """Leave a phase unconnected from now on: 0 V, 0 A, 0 W (not an outage)."""
        self.sync()
        self._channels[self.channel_index(channel)].disconnected = True

    def reconnect_phase(self, channel: ChannelRef) -> None:
        """Connect a phase again."""
        self.sync()
        self._channels[self.channel_index(channel)].disconnected = False

    def set_frequency(self, hz: float | None) -> None:
        """Pin the grid frequency (None: back to nominal with a little noise)."""
        self.sync()
        self.frequency_pin = hz

    def power_loss(self, seconds: float) -> None:
        """Lose power from now for `seconds`: unreachable, counters still, no records.

        The records resume in a new block; uptime restarts when power returns, and Gen1
        counters then read invalid for a few seconds as after a `reboot`.
        """
        now = self.sync()
        back = now + seconds
        self._power_off = (now, back)
        self._boot_time = back
        if self.gen == 1:
            self._invalidate_counters(until=back + _GEN1_INVALID_SECONDS, reads=1, value=-1)
        self._events.append(back)
        self._drop_connections()

    # --- scenarios: device ----------------------------------------------------------------

    def set_silent(self, silent: bool) -> None:
        """Stop answering (firmware hung) or answer again.

        Unlike `set_online`, the open connections are not closed: its WebSockets stay open with
        nothing coming back (no reply, no notification, no pong); new connections are refused.
        A link that drops looks the same to the client, except that the client's kernel no
        longer hears TCP acknowledgements, which loopback cannot take away.
        """
        self.silent = silent

    def set_online(self, online: bool) -> None:
        """Take the device off the network (its port refuses connections) or back on."""
        if online == self.online:
            return
        self.online = online
        if self._listener is not None:
            self._listener.meter_online_changed(online)

    def reboot(
        self,
        invalid_for: float = _GEN1_INVALID_SECONDS,
        *,
        invalid_reads: int = 1,
        counter_value: float = -1,
        rollback: bool = False,
    ) -> None:
        """Reboot: uptime restarts and connections drop.

        Gen1: for `invalid_for` seconds and at least `invalid_reads` reads the counters read
        `counter_value` (-1 or 0) with ``is_valid: false``. Gen2+: unreachable for
        `invalid_for` seconds. With `rollback`, every counter returns to what the device last
        saved to flash (every `flash_save_s` seconds): it forgets what it counted since, as real
        meters do; the records keep every minute's energy.
        """
        now = self.sync()
        self._boot_time = now
        if rollback:
            for state in self._channels:
                state.stats.start_in_mwh += to_mwh(state.saved_in) - to_mwh(state.energy_in)
                state.stats.start_out_mwh += to_mwh(state.saved_out) - to_mwh(state.energy_out)
                state.energy_in, state.energy_out = state.saved_in, state.saved_out
        if self.gen == 1:
            self._invalidate_counters(
                until=now + invalid_for, reads=invalid_reads, value=counter_value
            )
        else:
            self._unreachable_until = now + invalid_for
        self._drop_connections()

    def set_password(self, password: str | None) -> None:
        """Require authentication with this password (user ``admin``), or none."""
        self.password = password or None
        self.cfg_rev += 1

    def set_name(self, name: str | None) -> None:
        """Rename the device."""
        self.name = name
        self.cfg_rev += 1

    def set_firmware(self, fw_id: str) -> None:
        """Pretend another firmware is installed."""
        self.firmware = fw_id

    def set_update(self, version: str | None, beta: str | None = None) -> None:
        """Announce an available firmware update (Gen2 `available_updates`, Gen1 `update`)."""
        self.available_update = version
        self.available_beta = beta

    def set_profile(self, profile: Profile) -> None:
        """Switch a Pro 3EM between ``triphase`` and ``monophase`` (connections drop)."""
        if profile not in self.preset.profiles:
            raise ValueError(f"{self.kind} has no profile {profile!r}")
        if profile != self.profile:
            self.profile = profile
            self.cfg_rev += 1
            self._drop_connections()

    def set_status_firmware(self, fw_id: str | None) -> None:
        """Make Gen1 ``/status`` report ``update.old_version`` as `fw_id` (None: the firmware).

        ``/shelly`` keeps telling the real one: the two differ around an update and with beta
        firmware.
        """
        self.status_firmware = fw_id

    def flap_components(self, every: int | None = 1) -> None:
        """Switch a Pro 3EM's profile every `every` full status reads (None: stop).

        The components of ``Shelly.GetStatus`` and the profile of ``Shelly.GetDeviceInfo``
        flip between three-phase and single-phase while connections stay up, as a device
        does that cannot make up its mind.
        """
        if every is not None and (len(self.preset.profiles) < 2 or every < 1):
            raise ValueError(f"{self.kind} cannot flap (needs two profiles and every >= 1)")
        self._flap_every = every
        self._status_reads = 0

    def status_read(self) -> None:
        """Count a full status read (for `flap_components`)."""
        if self._flap_every is None:
            return
        self._status_reads += 1
        if self._status_reads % self._flap_every == 0 and self.profile is not None:
            profiles = self.preset.profiles
            self.profile = profiles[(profiles.index(self.profile) + 1) % len(profiles)]

    def set_relay(self, on: bool, source: str = "button") -> None:
        """Switch the relay output."""
        if not self.preset.has_relay:
            raise ValueError(f"{self.kind} has no relay")
        self.sync()
        self.relay_on = bool(on)
        self.relay_source = source

    def set_flags(self, channel: ChannelRef, flags: Sequence[str]) -> None:
        """Set a channel's flags (``overvoltage``, ``undervoltage``, ``overcurrent``, ...)."""
        self._channels[self.channel_index(channel)].flags = tuple(flags)

    def set_errors(self, errors: Sequence[str]) -> None:
        """Set meter-wide errors (``power_meter_failure``, ``phase_sequence``, ...)."""
        self.errors = tuple(errors)

    def set_channel_errors(self, channel: ChannelRef, errors: Sequence[str]) -> None:
        """Set a channel's errors (``out_of_range:voltage``, ...)."""
        self._channels[self.channel_index(channel)].errors = tuple(errors)

    def set_delay(self, seconds: float) -> None:
        """Delay every reply by `seconds` of real time (for timeout tests)."""
        self.reply_delay = max(0.0, float(seconds))

    def override_reply(
        self,
        kind: OverrideKind,
        *,
        method: str | None = None,
        path: str | None = None,
        value: Any = None,
        code: int = 500,
        message: str = "Internal error",
        count: int = 1,
        fields: int = 1,
        non_finite: bool = True,
        seed: int = 0,
    ) -> None:
        """Corrupt the next `count` replies to `method` (None: the status reply).

        See `ReplyOverride` for the kinds and the path syntax; `fields`, `non_finite` and
        `seed` (for reproducible damage) concern ``garble`` only.
        """
        if kind not in OVERRIDE_KINDS:
            raise ValueError(f"unknown override kind {kind!r}")
        if kind in ("set", "delete") and not path:
            raise ValueError(f"override {kind!r} needs a path")
        self._overrides.append(
            ReplyOverride(
                kind,
                method,
                path,
                value,
                code,
                message,
                count,
                fields,
                non_finite,
                random.Random(seed),
            )
        )

    def clear_reply_overrides(self) -> None:
        """Drop every pending reply override."""
        self._overrides.clear()

    def take_override(self, method: str) -> ReplyOverride | None:
        """Return (and use up one count of) the first override for a reply to `method`."""
        for override in self._overrides:
            if override.matches(method):
                override.count -= 1
                if override.count <= 0:
                    self._overrides.remove(override)
                return override
        return None

    def _invalidate_counters(self, *, until: float, reads: int, value: float) -> None:
        self._invalid_until = until
        self._invalid_reads = reads
        self._invalid_value = value

    def _drop_connections(self) -> None:
        if self._listener is not None:
            self._listener.meter_dropped_connections()
