"""The ``channels`` section of server.json: one strict model per channel, every key known, every number bounded.

Example (every channel is off unless its section says ``"enabled": true``)::

    "channels": {
      "mqtt":    {"enabled": true, "host": "broker.lan", "port": 8883, "tls": true, "ca_file": "/etc/cryospy/ca.pem",
                  "username": "cryospy", "password": "…"},
      "webhook": {"enabled": true, "url": "https://hooks.lan/cryospy", "secret": "at least 16 characters"},
      "push":    {"enabled": true, "url": "https://ntfy.lan/cryospy-alerts", "token": "…"},
      "email":   {"enabled": true}
    }

Keys every channel has: ``enabled``; ``kinds`` (which event kinds it sends; a "send test event" always goes);
``min_interval_seconds`` (per camera and kind: an event of that kind within this time of the last one sent is
skipped); ``queue_size`` (events waiting while the endpoint is down; the oldest are dropped beyond it);
``retry_max_seconds`` (the backoff doubles from 1 s up to this) and ``max_attempts`` (then the event is dropped
and the error stays on the status page). What each channel lets leave the house: docs/home-events.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from cryospy.common.strict_keys import unknown_key_message

from .errors import ChannelSettingsError
from .event import KINDS

COMMON = {"enabled", "kinds", "min_interval_seconds", "queue_size", "retry_max_seconds", "max_attempts"}
SPECIFIC = {
    "email": set(),
    "mqtt": {"host", "port", "username", "password", "tls", "ca_file", "topic_prefix", "discovery_prefix",
             "node_id", "keepalive_seconds"},
    "webhook": {"url", "secret", "timeout_seconds", "ca_file"},
    "push": {"url", "token", "timeout_seconds", "ca_file"},
}
DEFAULT_KINDS = {
    "email": ("camera_offline", "source_problem"),
    "mqtt": KINDS,
    "webhook": tuple(k for k in KINDS if k != "test"),
    "push": ("motion_start", "camera_offline", "source_problem"),
}
DEFAULT_INTERVAL = {"email": 900.0, "mqtt": 0.0, "webhook": 0.0, "push": 60.0}
_TOPIC_SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-/")


@dataclass(frozen=True)
class Delivery:
    """What the hub needs for any channel."""

    kinds: tuple[str, ...]
    min_interval_s: float
    queue_size: int
    retry_max_s: float
    max_attempts: int


@dataclass(frozen=True)
class MqttSettings:
    host: str
    port: int
    username: str = ""
    password: str = field(default="", repr=False)
    tls: bool = False
    ca_file: str = ""
    topic_prefix: str = "cryospy"
    discovery_prefix: str = "homeassistant"
    node_id: str = "cryospy"
    keepalive_s: int = 30


@dataclass(frozen=True)
class HttpSettings:
    """The webhook (``secret`` signs) and push (``token`` is sent as a bearer token) endpoints."""

    url: str
    secret: str = field(default="", repr=False)
    token: str = field(default="", repr=False)
    timeout_s: float = 5.0
    ca_file: str = ""


@dataclass(frozen=True)
class ChannelsSettings:
    delivery: dict[str, Delivery] = field(default_factory=dict)    # enabled channels only
    mqtt: MqttSettings | None = None
    webhook: HttpSettings | None = None
    push: HttpSettings | None = None
    email: bool = False


class _Reader:
    def __init__(self, name: str, doc: dict[str, Any]):
        self.name, self.doc = name, doc

    def fail(self, key: str, want: str) -> ChannelSettingsError:
        return ChannelSettingsError(f"channels.{self.name}.{key} must be {want}, got {self.doc.get(key)!r}")

    def number(self, key: str, default: float, lo: float, hi: float) -> float:
        value = self.doc.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            raise self.fail(key, f"a number from {lo:g} to {hi:g}")
        return float(value)

    def text(self, key: str, default: str = "", required: bool = False, limit: int = 2048) -> str:
        value = self.doc.get(key, default)
        if not isinstance(value, str) or len(value) > limit or (required and not value):
            raise self.fail(key, "a non-empty string" if required else "a string")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.doc.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, "true or false")
        return value

    def url(self, key: str) -> str:
        value = self.text(key, required=True)
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise self.fail(key, "an http:// or https:// URL")
        return value

    def topic(self, key: str, default: str) -> str:
        value = self.text(key, default, required=True, limit=100)
        if not set(value) <= _TOPIC_SAFE or value.startswith("/") or value.endswith("/") or "//" in value:
            raise self.fail(key, "a topic of letters, digits, '_', '-' and inner '/' (no MQTT wildcards)")
        return value


def _delivery(r: _Reader) -> Delivery:
    kinds = r.doc.get("kinds", list(DEFAULT_KINDS[r.name]))
    if not isinstance(kinds, list) or not all(k in KINDS for k in kinds):
        raise r.fail("kinds", f"a list of event kinds from {', '.join(KINDS)}")
    return Delivery(tuple(kinds), r.number("min_interval_seconds", DEFAULT_INTERVAL[r.name], 0, 86_400),
                    int(r.number("queue_size", 1000, 1, 100_000)), r.number("retry_max_seconds", 30, 1, 3600),
                    int(r.number("max_attempts", 10, 1, 1000)))


def parse_channels(doc: Any, *, smtp_ready: bool) -> ChannelsSettings:
    """``doc`` is the section as read from JSON; ``smtp_ready`` says whether smtp and alert recipients are set."""
    if doc is None:
        return ChannelsSettings()
    if not isinstance(doc, dict):
        raise ChannelSettingsError("channels must be an object with any of: email, mqtt, webhook, push")
    problem = unknown_key_message(doc, sorted(SPECIFIC), "channels")
    if problem:
        raise ChannelSettingsError(problem)
    out: dict[str, Any] = {"delivery": {}}
    for name, section in doc.items():
        if not isinstance(section, dict):
            raise ChannelSettingsError(f"channels.{name} must be an object")
        problem = unknown_key_message(section, sorted(COMMON | SPECIFIC[name]), f"channels.{name}")
        if problem:
            raise ChannelSettingsError(problem)
        r = _Reader(name, section)
        if not r.flag("enabled", False):
            continue
        out["delivery"][name] = _delivery(r)
        if name == "email":
            if not smtp_ready:
                raise ChannelSettingsError("channels.email is enabled but smtp or alerts.recipients is not set; "
                                           "configure both (the channel uses the alert mailer) or disable it")
            out["email"] = True
        elif name == "mqtt":
            tls = r.flag("tls", False)
            username, password = r.text("username", limit=256), r.text("password", limit=256)
            if password and not username:
                raise r.fail("username", "set when a password is")
            out["mqtt"] = MqttSettings(
                host=r.text("host", required=True, limit=253), port=int(r.number("port", 8883 if tls else 1883,
                                                                                 1, 65535)),
                username=username, password=password, tls=tls, ca_file=r.text("ca_file"),
                topic_prefix=r.topic("topic_prefix", "cryospy"),
                discovery_prefix=r.topic("discovery_prefix", "homeassistant"),
                node_id=r.topic("node_id", "cryospy"), keepalive_s=int(r.number("keepalive_seconds", 30, 5, 3600)))
            if "/" in out["mqtt"].node_id:
                raise r.fail("node_id", "letters, digits, '_' and '-' only")
        elif name == "webhook":
            secret = r.text("secret", required=True, limit=256)
            if len(secret) < 16:
                raise ChannelSettingsError("channels.webhook.secret must be at least 16 characters (it signs every "
                                           "request; make one with `openssl rand -hex 32`)")
            out["webhook"] = HttpSettings(r.url("url"), secret=secret,
                                          timeout_s=r.number("timeout_seconds", 5, 0.5, 60), ca_file=r.text("ca_file"))
        else:
            out["push"] = HttpSettings(r.url("url"), token=r.text("token", limit=512),
                                       timeout_s=r.number("timeout_seconds", 5, 0.5, 60), ca_file=r.text("ca_file"))
    return ChannelsSettings(**out)
