"""The agent's JSON config: the original client's keys plus what sealing, the spool and the camera need.

Unknown keys are an error (with the closest known key), every number has bounds, and the original's defaults
apply where it had them.

Where recording parameters come from: the server's device settings (synced, cached in the spool) decide
them, so the admin can change a camera from the dashboard. A recording key written in this file
(``clip_seconds``, ``fps``, ``width``/``height``, ``crf``, ``keyframe_seconds``, ``settings_sync_seconds``)
is a *local pin*: it wins over the server's value, for a board that cannot do more than it is told or for
tests and demos that need clips shorter than the server's 5 s minimum. Leave them out to follow the server.

The device's signing key: ``signing_key`` in this file (what ``cryospy devices create`` writes), or, when it is
left out, a key the agent makes itself at first start and keeps in ``signing_key_file`` (default
``<spool_dir>/signing-key``, 0600, beside the chain state it signs). Only its public half ever leaves the
device: the agent registers it with the server (trust on first use).
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryospy.common.objectkeys import is_storage_token
from cryospy.common.strict_keys import message_only, over_defaults, unknown_key_message

from .errors import ConfigError
from .stream_url import is_stream_url

_ORIGINAL = {
    "client_id", "client_secret", "server_url", "camera_device", "buffer_size", "retry_buffer_size",
    "settings_sync_seconds", "server_timeout_seconds", "upload_retry_minutes", "upload_max_retries",
    "proxy_auth_header", "proxy_auth_value",
}
_NEW = {
    "deployment_public_key", "signing_key", "spool_dir", "spool_max_megabytes", "clip_seconds", "width",
    "height", "fps", "loop", "ca_bundle", "tls_verify", "keyframe_seconds", "crf", "encoder_preset",
    "source_retry_max_seconds", "temp_dir", "signing_key_file", "detect_device", "rtsp_transport",
    "storage_token",
}
_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium")


@dataclass(frozen=True)
class AgentConfig:
    client_id: str
    client_secret: str = field(repr=False)
    server_url: str
    deployment_public_key: str      # used until the first settings sync brings the server's current key
    spool_dir: Path
    signing_key: str = field(default="", repr=False)    # "" = the agent's own key in signing_key_file
    signing_key_file: Path | None = None                # resolved: <spool_dir>/signing-key unless set
    camera_device: str = "/dev/video0"
    buffer_size: int = 5            # accepted for compatibility; the disk spool replaced the upload channel
    retry_buffer_size: int = 100    # accepted for compatibility; every spooled clip is retried
    settings_sync_seconds: int | None = None    # pin; else the server's settings_sync_seconds (300)
    server_timeout_seconds: int = 30
    upload_retry_minutes: float = 5
    upload_max_retries: int = 3
    proxy_auth_header: str = ""
    proxy_auth_value: str = field(default="", repr=False)
    spool_max_megabytes: float = 2048
    # Local pins over the server's settings (None = follow the server): see the module docstring.
    clip_seconds: float | None = None
    width: int | None = None        # 0 or None with height: the server's downscale_resolution, else the camera's
    height: int | None = None
    fps: float | None = None
    keyframe_seconds: float | None = None
    crf: int | None = None
    loop: bool = True               # a video-file source restarts at its end
    ca_bundle: str = ""            # the server's CA: PEM text (what `devices create` writes) or a file path
    tls_verify: bool = True
    encoder_preset: str = "veryfast"
    source_retry_max_seconds: float = 30.0
    temp_dir: str = ""              # where plaintext clips live for seconds; "" = a RAM directory if any (scratch.py)
    detect_device: str = ""         # the camera's low-resolution sub-stream, decoded for motion (passthrough)
    rtsp_transport: str = "tcp"     # tcp (reliable through NAT and Wi-Fi) or udp
    storage_token: str = ""         # the device's pseudonym in object keys; the settings document also brings it

    @property
    def spool_max_bytes(self) -> int:
        return int(self.spool_max_megabytes * 1024 * 1024)


def _bounded(doc: dict[str, Any], key: str, kind: type, lo: float, hi: float) -> None:
    if doc.get(key) is None:
        return
    value = doc[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and not isinstance(value, int)):
        raise ConfigError(f"config key {key!r} must be a{'n integer' if kind is int else ' number'}, got {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(f"config key {key!r} must be between {lo} and {hi}, got {value}")


def _check_types(doc: dict[str, Any]) -> None:
    for key in ("loop", "tls_verify"):
        if key in doc and not isinstance(doc[key], bool):
            raise ConfigError(f"config key {key!r} must be true or false, got {doc[key]!r}")
    for key in ("camera_device", "proxy_auth_header", "proxy_auth_value", "ca_bundle", "temp_dir", "spool_dir",
                "detect_device"):
        if doc.get(key) is not None and not isinstance(doc[key], str | int):
            raise ConfigError(f"config key {key!r} must be a string, got {doc[key]!r}")
    for key in ("signing_key", "signing_key_file"):
        if doc.get(key) is not None and not isinstance(doc[key], str):
            raise ConfigError(f"config key {key!r} must be a string, got {type(doc[key]).__name__}")
    if doc.get("rtsp_transport") not in (None, "tcp", "udp"):
        raise ConfigError(f"config key 'rtsp_transport' must be 'tcp' or 'udp', got {doc['rtsp_transport']!r}; tcp "
                          "works through NAT and lossy Wi-Fi, udp has less delay on a clean wired network")
    detect = doc.get("detect_device")
    if detect and not is_stream_url(str(detect)):
        raise ConfigError("config key 'detect_device' must be a stream URL (rtsp://...), the camera's "
                          "low-resolution sub-stream; leave it out to detect motion on the main stream's keyframes")
    if doc.get("storage_token") is not None and not is_storage_token(doc["storage_token"]):
        raise ConfigError(f"config key 'storage_token' must be the token the server gave this device ('_' and 26 "
                          f"letters/digits), got {doc['storage_token']!r}; leave it out to learn it from the server")
    preset = doc.get("encoder_preset")
    if preset is not None and preset not in _PRESETS:
        raise ConfigError(f"config key 'encoder_preset' must be one of {', '.join(_PRESETS)}, got {preset!r}; "
                          "slower presets make smaller files but cost more CPU per recorded second")


def parse_config(doc: Any, base_dir: Path) -> AgentConfig:
    if not isinstance(doc, dict):
        raise ConfigError("the agent config must be a JSON object")
    problem = unknown_key_message(doc, sorted(_ORIGINAL | _NEW), "the agent config")
    if problem:
        raise ConfigError(problem)
    for key in ("client_id", "client_secret", "server_url", "deployment_public_key"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise ConfigError(f"config key {key!r} is required (a non-empty string); `cryospy devices create "
                              "--out agent.json` writes a complete config")
    for key, kind, lo, hi in (
        ("buffer_size", int, 1, 10_000), ("retry_buffer_size", int, 0, 1_000_000),
        ("settings_sync_seconds", int, 5, 86_400), ("server_timeout_seconds", int, 1, 600),
        ("upload_retry_minutes", float, 0, 1440), ("upload_max_retries", int, 0, 1_000_000),
        # 0.1 MiB holds a few tiny clips: enough for tests of the drop policy, useless for a camera.
        ("spool_max_megabytes", float, 0.1, 10_000_000), ("clip_seconds", float, 2, 1800),
        ("width", int, 0, 4096), ("height", int, 0, 4096), ("fps", float, 1, 60),
        ("keyframe_seconds", float, 0.5, 10), ("crf", int, 0, 51), ("source_retry_max_seconds", float, 1, 3600),
    ):
        _bounded(doc, key, kind, lo, hi)
    _check_types(doc)
    for key in ("width", "height"):
        if doc.get(key) and doc[key] % 2:
            raise ConfigError(f"config key {key!r}={doc[key]} is odd; H.264 4:2:0 needs even sizes, use "
                              f"{doc[key] - 1} or {doc[key] + 1}")
    if bool(doc.get("width")) != bool(doc.get("height")):
        raise ConfigError("config keys 'width' and 'height' go together: set both (e.g. 640 and 360) or neither")
    if doc.get("clip_seconds") is not None and doc.get("keyframe_seconds") is not None \
            and doc["keyframe_seconds"] > doc["clip_seconds"]:
        raise ConfigError(f"keyframe_seconds={doc['keyframe_seconds']} is longer than clip_seconds="
                          f"{doc['clip_seconds']}; a clip is made of whole segments, so lower keyframe_seconds")
    if not str(doc["server_url"]).startswith(("http://", "https://")):
        raise ConfigError(f"server_url must start with http:// or https://, got {doc['server_url']!r}")
    # The original treats a null or missing upload_max_retries as 3; keep that (None = the default).
    values = {k: v for k, v in doc.items() if v is not None}
    values["spool_dir"] = (base_dir / values.get("spool_dir", "spool")).resolve()
    if values.get("signing_key") and values.get("signing_key_file"):
        raise ConfigError("config keys 'signing_key' and 'signing_key_file' exclude each other: keep the key in "
                          "this file (signing_key) or let the agent keep its own (signing_key_file), not both")
    if not values.get("signing_key"):
        values["signing_key_file"] = (base_dir / values["signing_key_file"]).resolve() \
            if values.get("signing_key_file") else values["spool_dir"] / "signing-key"
    values["camera_device"] = str(values.get("camera_device", "/dev/video0"))
    if values.get("ca_bundle"):
        values["ca_bundle"] = _ca_bundle(str(values["ca_bundle"]), base_dir)
    for key in ("width", "height"):
        if values.get(key) == 0:
            values.pop(key)
    return AgentConfig(**values)


def _ca_bundle(value: str, base_dir: Path) -> str:
    """``ca_bundle`` checked now rather than at the first upload: PEM text as is, a path resolved beside the
    config file."""
    pem = value.lstrip().startswith("-----BEGIN")
    if not pem:
        value = str((base_dir / value).resolve())
    try:
        if pem:
            ssl.create_default_context(cadata=value)
        else:
            ssl.create_default_context(cafile=value)
    except (OSError, ssl.SSLError, ValueError) as exc:
        what = "PEM text" if pem else f"file {value}"
        raise ConfigError(f"config key 'ca_bundle' ({what}) is not a usable CA certificate: {exc}; copy it from "
                          "the config `cryospy devices create` wrote or the server's <data-dir>/tls/ca.crt") from None
    return value


MAX_CAMERAS = 64


def parse_configs(doc: Any, base_dir: Path) -> list[AgentConfig]:
    """One config per camera. A file for one camera is the object itself; a file for several (one agent
    process near the cameras, as an NVR) has a ``cameras`` list, and its other keys are defaults for every
    camera (typically ``server_url``, ``deployment_public_key``, ``ca_bundle``). Each camera keeps its own
    identity, signing key, chain and spool (``spool_dir`` defaults to ``spool-<client_id>`` there)."""
    if not isinstance(doc, dict) or "cameras" not in doc:
        return [parse_config(doc, base_dir)]
    cameras = doc["cameras"]
    if not isinstance(cameras, list) or not cameras or len(cameras) > MAX_CAMERAS:
        raise ConfigError(f"config key 'cameras' must be a list of 1 to {MAX_CAMERAS} camera objects, each with "
                          "client_id, client_secret and camera_device")
    shared = {k: v for k, v in doc.items() if k != "cameras"}
    configs: list[AgentConfig] = []
    for i, camera in enumerate(cameras):
        if not isinstance(camera, dict):
            raise ConfigError(f"cameras[{i}] must be a JSON object, got {type(camera).__name__}")
        merged = over_defaults(camera, shared, known=sorted(_ORIGINAL | _NEW), what=f"cameras[{i}]",
                               error=message_only(ConfigError))
        if "spool_dir" not in camera and isinstance(merged.get("client_id"), str):
            merged["spool_dir"] = f"spool-{merged['client_id'].replace(' ', '_')}"
        try:
            configs.append(parse_config(merged, base_dir))
        except ConfigError as exc:
            raise ConfigError(f"cameras[{i}]: {exc}") from None
    for attr in ("client_id", "spool_dir"):
        seen: set[object] = set()
        for config in configs:
            value = getattr(config, attr)
            if value in seen:
                raise ConfigError(f"two cameras share {attr} {str(value)!r}; each camera needs its own identity "
                                  "and spool (its chain and clips), so give each its own")
            seen.add(value)
    return configs


def read_config_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"agent config {path} not found; create one with `cryospy devices create "
                          f"<id> --out {path}`") from None
    except ValueError as exc:
        raise ConfigError(f"agent config {path} is not valid JSON: {exc}") from None


def load_configs(path: Path) -> list[AgentConfig]:
    """Every camera in the file (see :func:`parse_configs`)."""
    return parse_configs(read_config_file(path), path.parent)


def load_config(path: Path) -> AgentConfig:
    """The one camera in a single-camera file."""
    configs = load_configs(path)
    if len(configs) != 1:
        raise ConfigError(f"agent config {path} lists {len(configs)} cameras; run them all with `cryospy agent "
                          f"--config {path}`")
    return configs[0]
