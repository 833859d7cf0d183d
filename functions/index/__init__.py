"""The clip index: its record types, the store behind it, queries and each clip's fragment table."""
