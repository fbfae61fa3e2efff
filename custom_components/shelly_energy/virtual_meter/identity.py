"""What the virtual meter claims to be: a Shelly model, and one id derived from a stored MAC.

A battery pairs with the meter's id and MAC: they must be the same in every transport (UDP
`src`, `/shelly`, `Shelly.GetDeviceInfo`, the mDNS name and TXT) and across restarts, so the MAC
is drawn once, stored with the config entry, and everything else is derived from it.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

# A firmware that real meters of every emulated model ran (1.6.1, May 2025).
FIRMWARE_ID: Final = "20250508-110717/1.6.1-g8dbd358"
FIRMWARE_VERSION: Final = "1.6.1"
_MAC = re.compile(r"[0-9A-F]{12}")


class MeterModel(StrEnum):
    """The Shelly meters the virtual meter can be: their RPC components differ."""

    PRO_3EM = "pro3em"  # EM: em:0 with phases a, b, c
    PRO_EM_50 = "proem50"  # EM1: em1:0 and em1:1
    EM_GEN3 = "emg3"  # EM1: em1:0 and em1:1

    @property
    def three_phase(self) -> bool:
        """Return whether the model has the EM component (else two EM1 channels)."""
        return self is MeterModel.PRO_3EM


@dataclass(frozen=True, slots=True)
class _ModelFacts:
    model_id: str
    app: str
    id_prefix: str
    generation: int


_FACTS: Final = {
    MeterModel.PRO_3EM: _ModelFacts("SPEM-003CEBEU", "Pro3EM", "shellypro3em", 2),
    MeterModel.PRO_EM_50: _ModelFacts("SPEM-002CEBEU50", "ProEM", "shellyproem50", 2),
    MeterModel.EM_GEN3: _ModelFacts("S3EM-002CXCEU", "EMG3", "shellyemg3", 3),
}


def new_mac() -> str:
    """Return a random MAC (12 upper-case hex digits), unicast and locally administered.

    Locally administered: it cannot be any real device's address.
    """
    octets = bytearray(secrets.token_bytes(6))
    octets[0] = (octets[0] & 0xFC) | 0x02
    return octets.hex().upper()


def valid_mac(mac: str) -> bool:
    """Return whether a stored MAC has the form `new_mac` gives."""
    return _MAC.fullmatch(mac) is not None


@dataclass(frozen=True, slots=True)
class Identity:
    """One virtual meter's identity: its model and MAC, and all that follows from them."""

    model: MeterModel
    mac: str  # 12 upper-case hex digits

    def __post_init__(self) -> None:
        """Refuse a MAC that is not 12 upper-case hex digits."""
        if not valid_mac(self.mac):
            raise ValueError(f"not a MAC: {self.mac!r}")

    @property
    def device_id(self) -> str:
        """Return the device id, e.g. "shellypro3em-02a1b2c3d4e5"."""
        return f"{_FACTS[self.model].id_prefix}-{self.mac.lower()}"

    @property
    def model_id(self) -> str:
        """Return the model id the device reports, e.g. "SPEM-003CEBEU"."""
        return _FACTS[self.model].model_id

    @property
    def app(self) -> str:
        """Return the firmware application name, e.g. "Pro3EM"."""
        return _FACTS[self.model].app

    @property
    def generation(self) -> int:
        """Return the device generation the model belongs to."""
        return _FACTS[self.model].generation

    @property
    def profile(self) -> str | None:
        """Return the Pro 3EM's profile ("triphase"); the EM1 models have none."""
        return "triphase" if self.model.three_phase else None
