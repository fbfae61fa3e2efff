"""Where a meter answers: an address as people type it, and as URLs and sockets need it.

IPv4 addresses, host names (`.local` ones too) and IPv6 addresses, in brackets when a port
follows (`[::1]:8080`), bare without one (`fe80::1`, a link-local one with its `%zone`).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

from yarl import URL

DEFAULT_PORT = 80
MAX_PORT = 65535
_HOST_NAME = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9_-]{1,63}(?<!-))*\.?")
_DIGITS_AND_DOTS = re.compile(r"[0-9.]+")
_NOT_IN_AN_ADDRESS = re.compile(r"[\s/@?#]")


class InvalidAddressError(ValueError):
    """Text that is not a meter's address: `part` tells whether the host or the port is wrong."""

    def __init__(self, part: Literal["host", "port"], text: str) -> None:
        """Say which part of what text is wrong."""
        super().__init__(f"not a valid {part}: {text!r}")
        self.part = part


@dataclass(frozen=True, slots=True)
class Address:
    """A meter's host and port; an IPv6 host is kept without brackets."""

    host: str
    port: int = DEFAULT_PORT

    def __post_init__(self) -> None:
        """Refuse a host or port no meter can have (an IP address is kept normalised)."""
        object.__setattr__(self, "host", _checked_host(self.host))
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise InvalidAddressError("port", repr(self.port))
        if not 0 < self.port <= MAX_PORT:
            raise InvalidAddressError("port", str(self.port))

    @classmethod
    def parse(cls, text: str) -> Address:
        """Read "host", "host:port", "[IPv6]:port" or a bare IPv6 address."""
        text = text.strip()
        if not text or _NOT_IN_AN_ADDRESS.search(text):
            raise InvalidAddressError("host", text)
        if text.startswith("["):
            host, bracket, rest = text[1:].partition("]")
            if not bracket or (rest and not rest.startswith(":")) or not _is_ipv6(host):
                raise InvalidAddressError("host", text)
            return cls(host, _port(rest[1:]) if rest else DEFAULT_PORT)
        if text.count(":") > 1:  # a bare IPv6 address: a port needs the brackets
            if not _is_ipv6(text):
                raise InvalidAddressError("host", text)
            return cls(text)
        host, colon, port = text.partition(":")
        return cls(host, _port(port) if colon else DEFAULT_PORT)

    @property
    def is_ipv6(self) -> bool:
        """Return whether the host is an IPv6 address."""
        return ":" in self.host

    def url(self, path: str = "") -> URL:
        """Return the plain HTTP URL of a path on the meter (IPv6 in brackets)."""
        return URL.build(scheme="http", host=self.host, port=self.port, path=path)

    def __str__(self) -> str:
        """Return the address as people write it; `Address.parse` reads it back."""
        if self.port == DEFAULT_PORT:
            return self.host
        host = f"[{self.host}]" if self.is_ipv6 else self.host
        return f"{host}:{self.port}"


def _port(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 0 < int(text) <= MAX_PORT:
        raise InvalidAddressError("port", text)
    return int(text)


def _is_ipv6(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 6
    except ValueError:
        return False


def _checked_host(host: str) -> str:
    if not isinstance(host, str):
        raise InvalidAddressError("host", repr(host))
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    # What looks like an IPv4 address but is not one (999.1.1.1) is a typing mistake too.
    if _DIGITS_AND_DOTS.fullmatch(host) or len(host) > 253 or not _HOST_NAME.fullmatch(host):
        raise InvalidAddressError("host", host)
    return host
