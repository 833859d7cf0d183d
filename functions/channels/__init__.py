"""Home integration: real-time events fanned out to channels behind one interface.

Devices post events as they happen (``POST /v1/device/events``, :mod:`.event`); handlers add what the index
learns (a clip stored, a camera deleted). :class:`.hub.ChannelHub` hands each event to every enabled channel
that wants its kind, each with its own bounded queue, worker thread, per-camera-and-kind rate limit and retry
with backoff, so one failing channel never delays another. One module per channel:

    email     the alert mailer (functions/alerts/mailer.py)                           email.py
    mqtt      paho-mqtt, retained state, Home Assistant discovery              mqtt.py   (docs/mqtt.md)
    webhook   JSON POST signed with HMAC-SHA256 (timestamp + signature)        webhook.py
    push      an ntfy-compatible HTTP endpoint                                 push.py

Around them: ``build.py`` makes a hub from settings; ``control.py`` runs server.json's channels with those saved
from the dashboard on top (sealed at rest by ``stored.py``) and swaps the hub when the admin changes one;
``presence.py`` turns an agent's silence into ``camera_offline`` (and its return into ``camera_online``).

Errors::

    FunctionsError
    ├── ChannelSettingsError   the ``channels`` section of server.json is invalid (at start, before any network)
    └── ChannelError           a delivery failed: names the endpoint and the cause, never a password or secret
        └── SignatureError     a webhook signature does not verify (changed body, old timestamp, wrong secret)
"""

from .errors import ChannelError, ChannelSettingsError, SignatureError
from .event import KINDS, HomeEvent, parse_device_events
from .hub import Channel, ChannelHub
from .settings import ChannelsSettings, parse_channels

__all__ = ["KINDS", "Channel", "ChannelError", "ChannelHub", "ChannelSettingsError", "ChannelsSettings",
           "HomeEvent", "SignatureError", "parse_channels", "parse_device_events"]
