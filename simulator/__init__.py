"""A Shelly energy meter simulator speaking the real wire protocols on loopback."""
