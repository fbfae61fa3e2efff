"""What the readings mean: energy-site flows, supply anomalies, tariffs and bills.

Nothing in this package knows Home Assistant.
"""
