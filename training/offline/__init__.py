"""Offline stand-ins for what the hub provides: a dataset made from real code on the machine and
scaled-down models of the plan's architectures, for the demo and the tests."""
