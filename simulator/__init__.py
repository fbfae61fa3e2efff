"""Simulated peers of the integration, for tests, development and benchmarks; not shipped to users."""  # noqa: E501
