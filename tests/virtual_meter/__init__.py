"""Tests of the virtual meter, free of Home Assistant."""
