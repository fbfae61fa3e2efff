"""The device side: talking to Shelly energy meters and reading what they say.

Nothing in this package knows Home Assistant.
"""
