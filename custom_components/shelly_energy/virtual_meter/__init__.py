"""A virtual Shelly energy meter that home batteries read, free of Home Assistant.

`identity` is what the meter claims to be, `guard` decides what value may be served, `replies`
answers the RPC methods, and `udp` and `http` carry them; `meter.VirtualMeter` ties them together.
"""
