"""The meaning: what the meters' readings say about a home's energy.

Nothing in this package knows Home Assistant.
"""
