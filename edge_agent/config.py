"""The agent's JSON config: the original client's keys plus what sealing and the spool need.

Unknown keys are an error (with the list of known ones), every number has bounds, and the original's
defaults apply where it had them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryospy.common.strict_keys import unknown_key_message

from .errors import ConfigError

_ORIGINAL = {
    "client_id", "client_secret", "server_url", "camera_device", "buffer_size", "retry_buffer_size",
    "settings_sync_seconds", "server_timeout_seconds", "upload_retry_minutes", "upload_max_retries",
    "proxy_auth_header", "proxy_auth_value",
}
_NEW = {
    "deployment_public_key", "signing_key", "spool_dir", "spool_max_megabytes", "clip_seconds", "width",
    "height", "fps", "loop", "ca_bundle", "tls_verify", "keyframe_seconds", "crf",
}


@dataclass(frozen=True)
class AgentConfig:
    client_id: str
    client_secret: str = field(repr=False)
    server_url: str
    deployment_public_key: str
    signing_key: str = field(repr=False)
    spool_dir: Path
    camera_device: str = "/dev/video0"
    buffer_size: int = 5
    retry_buffer_size: int = 100
    settings_sync_seconds: int = 300
    server_timeout_seconds: int = 30
    upload_retry_minutes: float = 5
    upload_max_retries: int = 3
    proxy_auth_header: str = ""
    proxy_auth_value: str = field(default="", repr=False)
    spool_max_megabytes: int = 2048
    clip_seconds: float = 60
    width: int = 0          # 0 = the source's own size (made even)
    height: int = 0
    fps: float = 15
    loop: bool = True       # a video-file source restarts at its end
    ca_bundle: str = ""
    tls_verify: bool = True
    keyframe_seconds: float = 1.0
    crf: int = 26


def _bounded(doc: dict[str, Any], key: str, kind: type, lo: float, hi: float) -> None:
    if doc.get(key) is None:
        return
    value = doc[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and not isinstance(value, int)):
        raise ConfigError(f"config key {key!r} must be a{'n integer' if kind is int else ' number'}, got {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(f"config key {key!r} must be between {lo} and {hi}, got {value}")


def parse_config(doc: Any, base_dir: Path) -> AgentConfig:
    if not isinstance(doc, dict):
        raise ConfigError("the agent config must be a JSON object")
    problem = unknown_key_message(doc, sorted(_ORIGINAL | _NEW), "the agent config")
    if problem:
        raise ConfigError(problem)
    for key in ("client_id", "client_secret", "server_url", "deployment_public_key", "signing_key"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise ConfigError(f"config key {key!r} is required (a non-empty string); `cryospy devices create "
                              "--out agent.json` writes a complete config")
    for key, kind, lo, hi in (
        ("buffer_size", int, 1, 10_000), ("retry_buffer_size", int, 0, 1_000_000),
        ("settings_sync_seconds", int, 5, 86_400), ("server_timeout_seconds", int, 1, 600),
        ("upload_retry_minutes", float, 0, 1440), ("upload_max_retries", int, 0, 1_000_000),
        ("spool_max_megabytes", int, 16, 10_000_000), ("clip_seconds", float, 2, 1800),
        ("width", int, 0, 8192), ("height", int, 0, 8192), ("fps", float, 1, 120),
        ("keyframe_seconds", float, 0.5, 10), ("crf", int, 0, 51),
    ):
        _bounded(doc, key, kind, lo, hi)
    if not str(doc["server_url"]).startswith(("http://", "https://")):
        raise ConfigError(f"server_url must start with http:// or https://, got {doc['server_url']!r}")
    values = dict(doc)
    values["spool_dir"] = (base_dir / values.get("spool_dir", "spool")).resolve()
    values["camera_device"] = str(values.get("camera_device", "/dev/video0"))
    # The original treats a null or missing upload_max_retries as 3; keep that.
    for key in [k for k, v in values.items() if v is None]:
        values.pop(key)
    return AgentConfig(**values)


def load_config(path: Path) -> AgentConfig:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"agent config {path} not found; create one with `cryospy devices create "
                          f"<id> --out {path}`") from None
    except ValueError as exc:
        raise ConfigError(f"agent config {path} is not valid JSON: {exc}") from None
    return parse_config(doc, path.parent)
