"""Meter addresses: every form people type, and back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from custom_components.shelly_energy.meter.address import Address, InvalidAddressError


@pytest.mark.parametrize(
    ("text", "host", "port", "url"),
    [
        ("192.168.1.5", "192.168.1.5", 80, "http://192.168.1.5/shelly"),
        (" 192.168.1.5:8080 ", "192.168.1.5", 8080, "http://192.168.1.5:8080/shelly"),
        (
            "shellyem-A1B2C3.local",
            "shellyem-A1B2C3.local",
            80,
            "http://shellyem-a1b2c3.local/shelly",
        ),
        ("shelly.local:65535", "shelly.local", 65535, "http://shelly.local:65535/shelly"),
        ("meter", "meter", 80, "http://meter/shelly"),
        ("[::1]:8080", "::1", 8080, "http://[::1]:8080/shelly"),
        ("[::1]", "::1", 80, "http://[::1]/shelly"),
        ("::1", "::1", 80, "http://[::1]/shelly"),
        ("fe80::1", "fe80::1", 80, "http://[fe80::1]/shelly"),
        ("fe80::1%eth0", "fe80::1%eth0", 80, "http://[fe80::1%eth0]/shelly"),
        ("[fe80::1%eth0]:81", "fe80::1%eth0", 81, "http://[fe80::1%eth0]:81/shelly"),
        ("[2001:DB8::0005]:1", "2001:db8::5", 1, "http://[2001:db8::5]:1/shelly"),
    ],
)
def test_addresses(text: str, host: str, port: int, url: str) -> None:
    address = Address.parse(text)
    assert (address.host, address.port) == (host, port)
    assert str(address.url("/shelly")) == url
    assert Address.parse(str(address)) == address


@pytest.mark.parametrize(
    ("text", "part"),
    [
        ("", "host"),
        ("a b", "host"),
        ("http://192.168.1.5", "host"),
        ("user@host", "host"),
        ("host/path", "host"),
        ("[shelly.local]:80", "host"),
        ("[::1", "host"),
        ("[::1]8080", "host"),
        ("::bad::", "host"),
        ("999.1.1.1", "host"),
        ("-meter", "host"),
        ("a..b", "host"),
        ("host:", "port"),
        ("host:0", "port"),
        ("host:65536", "port"),
        ("host:-1", "port"),
        ("host:http", "port"),
        ("host:8O80", "port"),
        ("host:٨٠", "port"),  # digits, but not ASCII ones
        ("[::1]:", "port"),
        ("[::1]:99999", "port"),
    ],
)
def test_what_is_no_address(text: str, part: str) -> None:
    with pytest.raises(InvalidAddressError) as raised:
        Address.parse(text)
    assert raised.value.part == part


def test_an_address_is_always_valid() -> None:
    with pytest.raises(InvalidAddressError, match="port"):
        Address("::1", 0)
    with pytest.raises(InvalidAddressError, match="port"):
        Address("::1", True)
    with pytest.raises(InvalidAddressError, match="host"):
        Address(7, 80)  # type: ignore[arg-type]
    assert str(Address("fe80::1", 8080)) == "[fe80::1]:8080"
    assert str(Address("fe80::1")) == "fe80::1"


@given(
    host=st.one_of(
        st.ip_addresses().map(str),
        st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]{1,10}){0,3}", fullmatch=True),
    ),
    port=st.integers(min_value=1, max_value=65535),
)
def test_what_is_written_reads_back(host: str, port: int) -> None:
    try:
        address = Address(host, port)
    except InvalidAddressError:
        assert host.replace(".", "").isdigit()  # only names that look like a bad IPv4
        return
    assert Address.parse(str(address)) == address
    assert address.url().port == port


@given(st.text(max_size=60))
def test_any_text_is_an_address_or_refused(text: str) -> None:
    try:
        address = Address.parse(text)
    except InvalidAddressError:
        return
    assert 0 < address.port < 65536
    assert address.url().host
