"""The channels' errors (drawn in the package docstring)."""

from __future__ import annotations

from cryospy.functions.errors import FunctionsError


class ChannelSettingsError(FunctionsError):
    """``channels`` in server.json is invalid; the message names the key, the bad value and the fix."""


class ChannelError(FunctionsError):
    """A delivery failed; the message names the endpoint and the cause (never a password or secret)."""


class SignatureError(ChannelError):
    """A webhook signature does not verify."""
