"""Exporting measurements to services outside Home Assistant: Emoncms.

Nothing in this package knows Home Assistant.
"""
