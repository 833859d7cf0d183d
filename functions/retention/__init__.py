"""Retention and removal: quotas and ages, deleting clips, and following objects that disappear."""
