"""What the readings mean: energy-site flows, supply anomalies, tariffs."""
