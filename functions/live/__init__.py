"""Live view: the in-memory hub of watchers and newest parts, and the device side of the exchange."""
