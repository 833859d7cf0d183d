"""Optional server settings in ``<data-dir>/server.json``: e-mail, alert recipients, auth-failure defence,
trusted proxies and the optional proxy-auth header. Everything is off until configured, as in the original.

Example::

    {
      "smtp": {"host": "mail.example.com", "port": 587, "from_addr": "cryospy@example.com",
               "username": "cryospy", "password": "…"},
      "alerts": {"recipients": ["me@example.com"]},
      "auth_events": {"time_window_minutes": 60, "notification_threshold": 5, "min_interval_minutes": 30,
                      "unknown_id_limit_per_ip": 20},
      "trusted_proxies": ["127.0.0.1", "10.0.0.0/8"],
      "allowed_hosts": ["cryospy.lan"],
      "proxy_auth": {"header": "X-Proxy-Auth", "value": "…"},
      "max_clip_megabytes": 512,
      "slot_ttl_seconds": 600,
      "storage": {"warning_threshold": 0.8, "global_budget_gigabytes": 0, "quarantine_megabytes": 1024,
                  "slots_per_minute": 120},
      "channels": {"mqtt": {"enabled": true, "host": "broker.lan", "username": "cryospy", "password": "…"}},
      "offline_after_seconds": 60,
      "database_url": "postgresql://cryospy:…@db.lan:5432/cryospy",
      "job_lease_seconds": 60
    }

``channels`` (real-time events to e-mail, MQTT/Home Assistant, a signed webhook, ntfy-style push) is parsed
by :func:`cryospy.functions.channels.parse_channels`; its keys are documented there and in docs/home-events.md.
Channels set on the dashboard (Admin → Channels) replace the section of the same name here; they are kept
sealed under the index key (functions/channels/stored.py), not in this file. ``offline_after_seconds``: a
camera whose agent has not been in touch for this long is reported offline (functions/channels/presence.py).

``database_url`` (absent by default) moves the clip index, the job queue, the device registry and the alert
limits from the embedded TinyDB and SQLite files to PostgreSQL, where several runtimes can share them
(``cryospy db migrate`` moves existing data; docs/postgres.md says what the database sees). The file may hold
the SMTP and database passwords, so it is read from a 0600 file and never logged; the URL is only ever logged
with its password replaced (cryospy.common.database.redacted). ``job_lease_seconds`` (with ``database_url``
only; 5 to 3600, 60 by default) is how long a job claimed by a runtime that stopped renewing it (killed,
frozen, cut off) waits before another runtime takes it over (infra/pg_jobqueue.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryospy.common.database import DatabaseError, check_url
from cryospy.common.strict_keys import unknown_key_message
from cryospy.functions.channels import ChannelSettingsError, ChannelsSettings, parse_channels
from cryospy.functions.channels.presence import DEFAULT_OFFLINE_AFTER_S, OFFLINE_AFTER_BOUNDS

from .errors import InfraError
from .pg_jobqueue import LEASE_BOUNDS, LEASE_S

KNOWN = {"smtp", "alerts", "auth_events", "trusted_proxies", "allowed_hosts", "proxy_auth", "max_clip_megabytes",
         "slot_ttl_seconds", "storage", "channels", "offline_after_seconds", "database_url",
         "job_lease_seconds"}
ALERT_KEYS = {"recipients", "attach_thumbnails", "motion_interval_minutes", "storage_interval_minutes",
              "silent_minutes", "silent_interval_minutes", "tamper_interval_minutes"}
STORAGE_KEYS = {"warning_threshold", "global_budget_gigabytes", "quarantine_megabytes", "slots_per_minute"}


class ServerConfigError(InfraError):
    exit_code = 2


@dataclass(frozen=True)
class ServerConfig:
    smtp: dict[str, Any] | None = field(default=None, repr=False)
    alert_recipients: tuple[str, ...] = ()
    auth_events: dict[str, Any] | None = None
    trusted_proxies: tuple[str, ...] = ()
    # Names the runtime answers to besides its host, the public API URL's host, localhost and IP literals.
    allowed_hosts: tuple[str, ...] = ()
    proxy_auth: tuple[str, str] | None = field(default=None, repr=False)
    max_clip_bytes: int = 512 * 1024 * 1024
    slot_ttl_seconds: int = 600
    attach_thumbnails: bool = False
    alert_intervals_minutes: dict[str, float] = field(default_factory=dict)
    silent_minutes: int = 30
    storage_warning_threshold: float = 0.8
    global_budget_bytes: int = 0
    quarantine_bytes: int = 1024 * 1024 * 1024   # per device: the oldest quarantined uploads go beyond this
    slots_per_minute: int = 120                   # per device, with a burst of as many
    channels: ChannelsSettings = field(default_factory=ChannelsSettings, repr=False)
    channels_doc: dict[str, Any] = field(default_factory=dict, repr=False)   # as written, for the dashboard
    offline_after_seconds: float = DEFAULT_OFFLINE_AFTER_S
    database_url: str | None = field(default=None, repr=False)   # None: the embedded files (infra/stores.py)
    job_lease_seconds: float = LEASE_S   # PostgreSQL's job queue only (the embedded one has no other claimer)


def _number(path: Path, doc: dict[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise ServerConfigError(f"{path}: {key} must be a number from {lo} to {hi}, got {value!r}")
    return float(value)


def _section(path: Path, doc: dict[str, Any], name: str, known: set[str]) -> dict[str, Any]:
    section = doc.get(name) or {}
    if not isinstance(section, dict):
        raise ServerConfigError(f"{path}: {name} must be an object")
    problem = unknown_key_message(section, sorted(known), f"{path}: {name}")
    if problem:
        raise ServerConfigError(problem)
    return section


def load_server_config(path: Path) -> ServerConfig:
    if not path.exists():
        return ServerConfig()
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ServerConfigError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ServerConfigError(f"{path} must hold a JSON object")
    problem = unknown_key_message(doc, sorted(KNOWN), str(path))
    if problem:
        raise ServerConfigError(problem)
    alerts = _section(path, doc, "alerts", ALERT_KEYS)
    storage = _section(path, doc, "storage", STORAGE_KEYS)
    recipients = alerts.get("recipients", [])
    if not isinstance(recipients, list) or not all(isinstance(r, str) and "@" in r for r in recipients):
        raise ServerConfigError(f"{path}: alerts.recipients must be a list of e-mail addresses")
    proxies = doc.get("trusted_proxies", [])
    if not isinstance(proxies, list) or not all(isinstance(p, str) for p in proxies):
        raise ServerConfigError(f"{path}: trusted_proxies must be a list of addresses or CIDR ranges")
    hosts = doc.get("allowed_hosts", [])
    if not isinstance(hosts, list) or not all(isinstance(h, str) and h and "/" not in h and ":" not in h
                                              for h in hosts):
        raise ServerConfigError(f"{path}: allowed_hosts must be a list of host names without scheme or port, "
                                f"e.g. [\"cryospy.lan\"], got {hosts!r}")
    proxy_auth = doc.get("proxy_auth")
    if proxy_auth is not None and not (isinstance(proxy_auth, dict) and isinstance(proxy_auth.get("header"), str)
                                       and isinstance(proxy_auth.get("value"), str) and proxy_auth["value"]):
        raise ServerConfigError(f"{path}: proxy_auth must be {{\"header\": \"X-Proxy-Auth\", \"value\": \"…\"}}")
    max_mb = _number(path, doc, "max_clip_megabytes", 512, 1, 5 * 1024)
    ttl = _number(path, doc, "slot_ttl_seconds", 600, 30, 900)
    try:
        channels = parse_channels(doc.get("channels"), smtp_ready=bool(doc.get("smtp")) and bool(recipients))
    except ChannelSettingsError as exc:
        raise ServerConfigError(f"{path}: {exc}") from None
    intervals = {k.removesuffix("_interval_minutes"): _number(path, alerts, k, 0, 0, 10080)
                 for k in ALERT_KEYS if k.endswith("_interval_minutes") and k in alerts}
    return ServerConfig(
        smtp=doc.get("smtp"), alert_recipients=tuple(recipients), auth_events=doc.get("auth_events"),
        trusted_proxies=tuple(proxies), allowed_hosts=tuple(hosts),
        proxy_auth=(proxy_auth["header"], proxy_auth["value"]) if proxy_auth else None,
        max_clip_bytes=int(max_mb) * 1024 * 1024, slot_ttl_seconds=int(ttl),
        attach_thumbnails=bool(alerts.get("attach_thumbnails", False)),
        alert_intervals_minutes=intervals,
        silent_minutes=int(_number(path, alerts, "silent_minutes", 30, 1, 10080)),
        storage_warning_threshold=_number(path, storage, "warning_threshold", 0.8, 0.05, 1.0),
        global_budget_bytes=int(_number(path, storage, "global_budget_gigabytes", 0, 0, 1_000_000) * 1024**3),
        quarantine_bytes=int(_number(path, storage, "quarantine_megabytes", 1024, 0, 1_000_000) * 1024**2),
        slots_per_minute=int(_number(path, storage, "slots_per_minute", 120, 1, 6000)),
        channels=channels, channels_doc=dict(doc.get("channels") or {}),
        offline_after_seconds=_number(path, doc, "offline_after_seconds", DEFAULT_OFFLINE_AFTER_S,
                                      *OFFLINE_AFTER_BOUNDS),
        database_url=_database_url(path, doc.get("database_url")),
        job_lease_seconds=_job_lease(path, doc),
    )


def _job_lease(path: Path, doc: dict[str, Any]) -> float:
    if "job_lease_seconds" in doc and doc.get("database_url") is None:
        raise ServerConfigError(f"{path}: job_lease_seconds applies to the job queue in PostgreSQL only (several "
                                "runtimes); set database_url too, or remove job_lease_seconds")
    return _number(path, doc, "job_lease_seconds", LEASE_S, *LEASE_BOUNDS)


def _database_url(path: Path, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ServerConfigError(f"{path}: database_url must be a string like postgresql://user:password@host/db")
    try:
        return check_url(value)
    except DatabaseError as exc:
        raise ServerConfigError(f"{path}: {exc}") from None
