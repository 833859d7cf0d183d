"""Device settings: the one schema the server validates and serves and the edge agent applies.

Why one module for both sides: the admin's edits are checked here before they are stored, the API serves
them with an ETag so agents can poll cheaply, and the agent turns them into encoder and motion-detector
parameters. The bounds, defaults and descriptions live in one table (the ``metadata`` of the dataclass
fields below); the validator, :func:`json_schema` and the defaults are all read from it, so the dashboard
form, the OpenAPI file and the checks cannot disagree.

Compared with the original (Yeti47/cryospy):

* the same 19 settings with the same defaults (its 20th field, ``id``, is the device id, not a setting);
* every number is bounded (the original only checked that numbers parsed, then silently replaced zeros and
  negatives with code fallbacks);
* resolutions: the presets plus any even ``WxH`` / ``W:H`` from 16 to 4096 (the original had a fixed list);
* output is pinned to fragmented-MP4 H.264: the server cuts byte-range HLS out of the uploaded file
  without transcoding, so a webm, mkv or HEVC clip could be stored but never played. The original's other
  formats and codecs are still recognised, so the error says why they are refused rather than "unknown";
* new settings the agent needs: motion zones and masks, minimum motion duration, the detector's working
  width, pre/post context, retention, fMP4 segment length, CRF and the sync interval.

Units: ``motion_min_area``, ``motion_min_width`` and ``motion_min_height`` are pixels of the camera frame,
as in the original, so values tuned there keep their meaning; the agent scales them to the
``motion_detect_width`` copy it actually analyses. Polygon points are fractions of the frame (0..1, origin
top left), so zones survive a change of camera or resolution.

Errors::

    CryoSpyError
    └── SettingsError        .field names the setting to fix; exit code 2
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import CryoSpyError
from .strict_keys import over_defaults

__all__ = [
    "DEFAULT_SETTINGS", "RESOLUTION_PRESETS", "DeviceSettings", "EncodeHints", "Polygon", "SettingsError",
    "json_schema", "parse_bitrate", "parse_resolution",
]

Polygon = tuple[tuple[float, float], ...]

RESOLUTION_PRESETS: Mapping[str, tuple[int, int]] = {
    "240p": (426, 240), "360p": (640, 360), "480p": (854, 480), "720p": (1280, 720), "1080p": (1920, 1080),
}
MAX_POLYGONS = 16
MAX_POLYGON_POINTS = 64
# A polygon smaller than this fraction of the frame (about two pixels at 1080p) encloses nothing a camera
# could see move: the points are collinear or the admin clicked one spot several times.
MIN_POLYGON_AREA = 1e-6

# Even numbers 16..4096, spelled as a regular expression so the JSON Schema can carry the exact rule.
_EVEN_DIM = r"(?:1[68]|[2-9][02468]|[1-9][0-9][02468]|[1-3][0-9][0-9][02468]|40[0-8][02468]|409[0246])"
_RESOLUTION_PATTERN = "^(?:|" + "|".join(RESOLUTION_PRESETS) + f"|{_EVEN_DIM}[x:]{_EVEN_DIM})$"
# 100k..20M as whole kilobits ("1500k") or megabits with up to three decimals ("1.5M"). Only lowercase k and
# uppercase M: to ffmpeg a lowercase m means milli, so "2m" would be two thousandths of a bit per second.
_BITRATE_PATTERN = (
    r"^(?:(?:[1-9][0-9]{2,3}|1[0-9]{4}|20000)k"
    r"|(?:0\.[1-9][0-9]{0,2}|(?:[1-9]|1[0-9])(?:\.[0-9]{1,3})?|20(?:\.0{1,3})?)M)$"
)
_RESOLUTION_RE = re.compile(_RESOLUTION_PATTERN)
_BITRATE_RE = re.compile(_BITRATE_PATTERN)
_BITRATE_MIN, _BITRATE_MAX = 100_000, 20_000_000
_SCHEMA_DRAFT = "https://json-schema.org/draft/2020-12/schema"


class SettingsError(CryoSpyError):
    """A settings document CryoSpy refuses; ``field`` is the setting to fix (the unknown key, for typos)."""

    exit_code = 2

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class _Spec:
    """One row of the field table: how to check a setting and how to describe it in the JSON Schema."""

    kind: str                                  # int, float, bool, choice, resolution, bitrate, polygons
    doc: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    refused: tuple[tuple[str, str], ...] = ()  # recognised values we do not support, with the reason


def _int(lo: int, hi: int, doc: str) -> dict[str, _Spec]:
    return {"spec": _Spec("int", doc, lo, hi)}


def _float(lo: float, hi: float, doc: str) -> dict[str, _Spec]:
    return {"spec": _Spec("float", doc, float(lo), float(hi))}


def _meta(kind: str, doc: str, **extra: Any) -> dict[str, _Spec]:
    return {"spec": _Spec(kind, doc, **extra)}


_WHY = "byte-range HLS here needs fragmented MP4 with H.264 (the server never transcodes)"
_REFUSED_FORMATS = (
    ("webm", f"webm cannot be streamed as byte-range HLS: {_WHY}; use mp4"),
    ("mkv", f"Matroska cannot be streamed as byte-range HLS: {_WHY}; use mp4"),
    ("avi", f"AVI cannot be streamed as HLS and browsers do not play it: {_WHY}; use mp4"),
    ("mov", f"QuickTime .mov is not fragmented MP4, so no HLS segments can be cut from it: {_WHY}; use mp4"),
)
_REFUSED_CODECS = (
    ("libx265", "H.265/HEVC does not play in most browsers (Chrome and Firefox on Linux lack it); use libx264"),
    ("libvpx-vp9", f"webm/libvpx-vp9 cannot be streamed as byte-range HLS: {_WHY}; use mp4/libx264"),
    ("ffv1", "FFV1 is a lossless archive codec no browser plays, and clips would be huge; use libx264 with a "
             "low crf (18 looks near-lossless)"),
    ("h264_vaapi", "hardware H.264 encoders need per-machine setup and ignore crf; use libx264 or libopenh264"),
    ("h264_qsv", "hardware H.264 encoders need per-machine setup and ignore crf; use libx264 or libopenh264"),
    ("h264_v4l2m2m", "hardware H.264 encoders need per-machine setup and ignore crf; use libx264 or libopenh264"),
)


@dataclass(frozen=True)
class EncodeHints:
    """What the agent's encoder needs, with the rate-control decision already made.

    ``crf`` with ``bitrate`` is capped CRF: constant quality that never exceeds the bitrate, which suits an
    uplink with a hard ceiling. libopenh264 has no constant-quality mode, so for it ``crf`` is ``None`` and
    ``bitrate`` is the target.
    """

    width: int | None               # None: keep the camera's own size
    height: int | None
    fps: float
    codec: str
    crf: int | None
    bitrate: str
    bitrate_bps: int
    grayscale: bool
    keyframe_seconds: float         # also the fMP4 fragment and HLS segment length
    container: str = "mp4"


@dataclass(frozen=True)
class DeviceSettings:
    """The settings one device records with. Always valid: construction checks every field and rule.

    Build one from JSON with :meth:`from_dict` (strict, with PATCH semantics when ``base`` is given);
    constructing directly or with :func:`dataclasses.replace` runs the same checks.
    """

    # --- the original's 19 settings, with its defaults ---
    storage_limit_megabytes: int = field(default=1024, metadata=_int(
        0, 16_777_216, "Storage quota for this device's clips in MiB; the oldest clips go first. 0 = unlimited."))
    clip_duration_seconds: int = field(default=60, metadata=_int(
        5, 1800, "Length of one recorded clip in seconds (the original allowed 30-1800)."))
    motion_only: bool = field(default=False, metadata=_meta(
        "bool", "Keep only footage with motion (plus motion_pre_seconds/motion_post_seconds of context)."))
    grayscale: bool = field(default=False, metadata=_meta("bool", "Record without colour (smaller clips)."))
    downscale_resolution: str = field(default="", metadata=_meta(
        "resolution", "Output size: '' keeps the camera's size; a preset (" + ", ".join(RESOLUTION_PRESETS)
        + ") or WIDTHxHEIGHT / WIDTH:HEIGHT with even numbers 16-4096. The aspect ratio is not preserved."))
    output_format: str = field(default="mp4", metadata=_meta(
        "choice", "Container; only fragmented MP4, which the server streams as byte-range HLS.",
        choices=("mp4",), refused=_REFUSED_FORMATS))
    output_codec: str = field(default="libx264", metadata=_meta(
        "choice", "H.264 encoder (libopenh264 has no CRF: it uses video_bitrate as its target).",
        choices=("libx264", "libopenh264"), refused=_REFUSED_CODECS))
    video_bitrate: str = field(default="1000k", metadata=_meta(
        "bitrate", "Bitrate cap with crf (capped CRF), e.g. '1500k' or '2M'; 100k-20M."))
    motion_min_area: int = field(default=1000, metadata=_int(
        1, 16_777_216, "Smallest moving area that counts, in camera-frame pixels."))
    motion_max_frames: int = field(default=300, metadata=_int(
        1, 200_000, "Frames motion detection analyses per clip at most, spread evenly over the clip (a CPU cap: "
                    "300 on 60 s clips is 5 frames a second; 200000 covers 1800 s at 60 fps)."))
    motion_warm_up_frames: int = field(default=30, metadata=_int(
        0, 10_000, "Frames used only to train the background model; must be below motion_max_frames."))
    motion_min_width: int = field(default=20, metadata=_int(
        1, 4096, "Narrowest moving box that counts, in camera-frame pixels."))
    motion_min_height: int = field(default=20, metadata=_int(
        1, 4096, "Shortest moving box that counts, in camera-frame pixels."))
    motion_min_aspect: float = field(default=0.3, metadata=_float(
        0.01, 100, "Lowest width/height ratio of a moving box that counts; below motion_max_aspect."))
    motion_max_aspect: float = field(default=3.0, metadata=_float(
        0.01, 100, "Highest width/height ratio of a moving box that counts."))
    motion_mog_history: int = field(default=500, metadata=_int(
        1, 10_000, "MOG2 background model history in frames (longer adapts more slowly to lighting)."))
    motion_mog_var_thresh: float = field(default=16.0, metadata=_float(
        1, 1000, "MOG2 variance threshold (higher ignores more noise)."))
    capture_codec: str = field(default="MJPG", metadata=_meta(
        "choice", "FourCC requested from the camera.", choices=("MJPG", "YUYV", "H264")))
    capture_frame_rate: float = field(default=15.0, metadata=_float(1, 60, "Frames per second recorded."))
    # --- what the new agent needs ---
    motion_zones: tuple[Polygon, ...] = field(default=(), metadata=_meta(
        "polygons", "Where motion counts: polygons of [x, y] points as fractions of the frame (0..1, top "
                    "left origin). Empty = the whole frame."))
    motion_masks: tuple[Polygon, ...] = field(default=(), metadata=_meta(
        "polygons", "Where motion is ignored (trees, a street), same form as motion_zones; masks win."))
    motion_min_seconds: float = field(default=0.5, metadata=_float(
        0, 10, "How long motion must last to count, in seconds (filters flicker and single-frame noise)."))
    motion_detect_width: int = field(default=320, metadata=_int(
        80, 1920, "Width of the downscaled grayscale copy motion detection runs on (smaller is cheaper)."))
    motion_pre_seconds: float = field(default=5.0, metadata=_float(
        0, 60, "In motion_only mode, seconds kept before motion starts."))
    motion_post_seconds: float = field(default=5.0, metadata=_float(
        0, 60, "In motion_only mode, seconds kept after motion ends."))
    retention_days: int = field(default=0, metadata=_int(
        0, 3650, "Delete clips older than this many days; 0 = keep until the storage quota is reached."))
    segment_seconds: float = field(default=1.0, metadata=_float(
        0.5, 10, "fMP4 fragment and keyframe interval = HLS segment length; at most clip_duration_seconds."))
    crf: int = field(default=26, metadata=_int(
        0, 51, "x264 constant quality: 0 lossless, 51 worst, 18-28 typical; capped by video_bitrate."))
    settings_sync_seconds: int = field(default=300, metadata=_int(
        5, 86_400, "How often the agent polls for settings; changes reach it within one interval."))
    # --- cameras that deliver compressed video (RTSP IP cameras) ---
    record_mode: str = field(default="auto", metadata=_meta(
        "choice", "How clips are made. auto: a stream URL (rtsp://, http://) that delivers H.264/H.265 is stored "
                  "as the camera sends it (passthrough: no re-encode, full quality, a fraction of the CPU), unless "
                  "grayscale or downscale_resolution asks for a transform; other sources are encoded. "
                  "passthrough: always store the camera's own stream (stream URLs only). transcode: always "
                  "decode and encode with the settings above.",
        choices=("auto", "passthrough", "transcode")))
    record_audio: bool = field(default=False, metadata=_meta(
        "bool", "Keep the camera's microphone (stored as AAC). Off by default: a microphone is the most "
                "privacy-sensitive sensor in a home; when on, audio is sealed with the video and plays in the "
                "dashboard."))
    motion_detect_fps: float = field(default=5.0, metadata=_float(
        0.2, 30, "In passthrough mode with a detect (sub-)stream: frames per second decoded for motion. "
                 "Without a sub-stream only keyframes of the main stream are decoded (about one a second)."))

    def __post_init__(self) -> None:
        clean = _normalise({name: getattr(self, name) for name in _SPECS}, touched=())
        for name, value in clean.items():
            object.__setattr__(self, name, value)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], *, base: DeviceSettings | None = None) -> DeviceSettings:
        """Parse a JSON object strictly; with ``base``, ``doc`` is a partial update (PATCH) merged onto it.

        The merged result is validated as a whole, so an update that breaks a rule together with a stored
        value (say, a min aspect above the stored max) is refused, naming the field the update set.
        Polygon lists are replaced, not merged.
        """
        if not isinstance(doc, Mapping):
            raise SettingsError("settings", f"settings must be a JSON object, got {_json_type(doc)}; send "
                                            '{"clip_duration_seconds": 60, ...} or {} for the defaults')
        start = base if base is not None else DEFAULT_SETTINGS
        merged = over_defaults(doc, {name: getattr(start, name) for name in _SPECS}, what="settings",
                               error=SettingsError, explain_unknown=_unknown_key_message)
        return cls(**_normalise(merged, touched=doc.keys()))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, keys in table order (stable), polygons as nested lists."""
        out: dict[str, Any] = {}
        for name, spec in _SPECS.items():
            value = getattr(self, name)
            if spec.kind == "polygons":
                value = [[[x, y] for x, y in poly] for poly in value]
            out[name] = value
        return out

    def etag(self) -> str:
        """A strong ETag: sha256 of canonical JSON, identical in every process and on every machine."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)
        return '"' + hashlib.sha256(canonical.encode("ascii")).hexdigest() + '"'

    def encode_settings(self) -> EncodeHints:
        """The encoder's view: output size (None = camera size), rate control, colour, segment length."""
        size = parse_resolution(self.downscale_resolution)
        return EncodeHints(
            width=size[0] if size else None,
            height=size[1] if size else None,
            fps=self.capture_frame_rate,
            codec=self.output_codec,
            crf=None if self.output_codec == "libopenh264" else self.crf,
            bitrate=self.video_bitrate,
            bitrate_bps=parse_bitrate(self.video_bitrate),
            grayscale=self.grayscale,
            keyframe_seconds=self.segment_seconds,
            container=self.output_format,
        )


_SPECS: dict[str, _Spec] = {f.name: f.metadata["spec"] for f in fields(DeviceSettings)}
_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(DeviceSettings)}


def parse_resolution(text: str) -> tuple[int, int] | None:
    """``(width, height)`` for a valid ``downscale_resolution``; ``None`` for "" (the camera's size)."""
    value = _check_resolution("downscale_resolution", text)
    if value == "":
        return None
    if value in RESOLUTION_PRESETS:
        return RESOLUTION_PRESETS[value]
    width, height = value.split("x")
    return int(width), int(height)


def parse_bitrate(text: str) -> int:
    """Bits per second for a valid ``video_bitrate`` ("1500k" -> 1500000, "1.5M" -> 1500000)."""
    value = _check_bitrate("video_bitrate", text)
    number, suffix = value[:-1], value[-1]
    whole, _, fraction = number.partition(".")
    scale = 1_000 if suffix == "k" else 1_000_000
    return int(whole) * scale + (int(fraction.ljust(3, "0")) * scale // 1000 if fraction else 0)


# --- checks, one per kind ---------------------------------------------------------------------------------

def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {_show(value)}"
    if isinstance(value, str):
        return f"the string {_show(value)}"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else repr(float(number))


def _wrong_type(name: str, wanted: str, value: Any) -> SettingsError:
    default = json.dumps(_DEFAULTS[name])
    hint = " (omit the key to keep the current value)" if value is None else ""
    return SettingsError(name, f"{name} must be {wanted}, got {_json_type(value)}{hint}; "
                               f"for example \"{name}\": {default}")


def _check_range(name: str, spec: _Spec, value: float) -> None:
    assert spec.lo is not None and spec.hi is not None
    if not spec.lo <= value <= spec.hi:
        raise SettingsError(name, f"{name}={_fmt(value)} is out of range; use a value from {_fmt(spec.lo)} to "
                                  f"{_fmt(spec.hi)} ({spec.doc.rstrip('.')})")


def _check_int(name: str, spec: _Spec, value: Any) -> int:
    # JSON has one number type: 60.0 is the integer 60 to JSON Schema too, so accept it and store 60.
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong_type(name, "a whole number", value)
    _check_range(name, spec, value)
    return value


def _check_float(name: str, spec: _Spec, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _wrong_type(name, "a number", value)
    if not math.isfinite(value):
        raise SettingsError(name, f"{name}={value!r} is not a finite number; use a value from {_fmt(spec.lo or 0)}"
                                  f" to {_fmt(spec.hi or 0)}")
    _check_range(name, spec, value)
    return float(value)


def _check_bool(name: str, spec: _Spec, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _wrong_type(name, "true or false (a JSON boolean, not 1/0 or \"on\")", value)
    return value


def _check_choice(name: str, spec: _Spec, value: Any) -> str:
    if not isinstance(value, str):
        raise _wrong_type(name, "a string", value)
    if value in spec.choices:
        return value
    refused = dict(spec.refused)
    if value in refused:
        raise SettingsError(name, f"{name}={value!r} is not supported here: {refused[value]}")
    same_case = [c for c in spec.choices if c.lower() == value.strip().lower()]
    if same_case:
        raise SettingsError(name, f"{name}={value!r}: values are case-sensitive; use {same_case[0]!r}")
    allowed = " or ".join(map(repr, spec.choices))
    raise SettingsError(name, f"{name}={_show(value)} is not a recognised value; use {allowed}")


def _check_resolution(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _wrong_type(name, "a string", value)
    if _RESOLUTION_RE.fullmatch(value):
        return value.replace(":", "x")
    presets = ", ".join(RESOLUTION_PRESETS)
    if value.strip().lower() in RESOLUTION_PRESETS:
        raise SettingsError(name, f"{name}={value!r}: write the preset exactly as {value.strip().lower()!r}")
    m = re.fullmatch(r"\s*(\d+)\s*[xX:×*]\s*(\d+)\s*", value)
    if not m:
        raise SettingsError(name, f"{name}={_show(value)} is not a resolution; use '' for the camera's own size, "
                                  f"a preset ({presets}) or WIDTHxHEIGHT with even numbers, e.g. '1280x720'")
    width, height = int(m[1]), int(m[2])
    for label, n in (("width", width), ("height", height)):
        if not 16 <= n <= 4096:
            raise SettingsError(name, f"{name}={value!r}: {label} {n} is outside 16-4096 pixels; use a size in "
                                      f"that range, e.g. '1280x720', or '' for the camera's size")
    if width % 2 or height % 2:
        up = f"{min(width + width % 2, 4096)}x{min(height + height % 2, 4096)}"
        down = f"{width - width % 2}x{height - height % 2}"
        odd = " and ".join(f"{label} {n}" for label, n in (("width", width), ("height", height)) if n % 2)
        verb = "are" if width % 2 and height % 2 else "is"
        raise SettingsError(name, f"{name}={value!r}: {odd} {verb} odd, and H.264 4:2:0 video needs even sizes; use "
                                  f"'{up}' or '{down}'")
    raise SettingsError(name, f"{name}={value!r}: write it as '{width}x{height}' (no spaces or leading zeros)")


def _check_bitrate(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _wrong_type(name, "a string", value)
    if _BITRATE_RE.fullmatch(value):
        return value
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", value)
    if not m:
        raise SettingsError(name, f"{name}={_show(value)} is not a bitrate; write kilobits or megabits per "
                                  "second, e.g. '1500k' or '2M'")
    number, suffix = float(m[1]), m[2]
    if suffix == "m":
        raise SettingsError(name, f"{name}={value!r}: to ffmpeg a lowercase m means milli; write '{m[1]}M'")
    if suffix == "K":
        raise SettingsError(name, f"{name}={value!r}: write the kilo suffix in lowercase, '{m[1]}k'")
    if suffix == "":
        raise SettingsError(name, f"{name}={value!r} has no unit, which is easy to get wrong by 1000x; write "
                                  "kilobits ('1500k') or megabits ('2M')")
    bps = number * (1_000 if suffix == "k" else 1_000_000)
    if not _BITRATE_MIN <= bps <= _BITRATE_MAX:
        raise SettingsError(name, f"{name}={value!r} is out of range; use 100k to 20M (1000k suits 720p at "
                                  "15 fps)")
    raise SettingsError(name, f"{name}={value!r}: write whole kilobits ('1500k') or megabits with up to three "
                              "decimals ('1.5M'), without leading zeros")


def _check_polygons(name: str, spec: _Spec, value: Any) -> tuple[Polygon, ...]:
    if not isinstance(value, list | tuple):
        raise _wrong_type(name, "an array of polygons", value)
    if len(value) > MAX_POLYGONS:
        raise SettingsError(name, f"{name} has {len(value)} polygons; at most {MAX_POLYGONS} are allowed, so "
                                  "merge neighbouring ones")
    return tuple(_check_polygon(name, f"{name}[{i}]", poly) for i, poly in enumerate(value))


def _check_polygon(name: str, where: str, poly: Any) -> Polygon:
    example = "[[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]]"
    if not isinstance(poly, list | tuple):
        raise SettingsError(name, f"{where} must be an array of [x, y] points, got {_json_type(poly)}; "
                                  f"for example {example}")
    if not 3 <= len(poly) <= MAX_POLYGON_POINTS:
        raise SettingsError(name, f"{where} has {len(poly)} points; a polygon needs 3 to {MAX_POLYGON_POINTS}, "
                                  f"e.g. {example}")
    points = tuple(_check_point(name, f"{where}[{j}]", point) for j, point in enumerate(poly))
    if len(set(points)) < 3:
        raise SettingsError(name, f"{where} has fewer than 3 distinct points, so it encloses nothing; add "
                                  "points or remove the polygon")
    if _area(points) < MIN_POLYGON_AREA:
        raise SettingsError(name, f"{where} encloses no area (its points lie on one line); move the points "
                                  "apart or remove the polygon")
    return points


def _check_point(name: str, where: str, point: Any) -> tuple[float, float]:
    if not isinstance(point, list | tuple) or len(point) != 2:
        raise SettingsError(name, f"{where} must be an [x, y] pair, got {_show(point)}; e.g. [0.5, 0.25]")
    for axis, c in zip("xy", point, strict=True):
        if isinstance(c, bool) or not isinstance(c, int | float) or not 0 <= c <= 1:
            raise SettingsError(name, f"{where} {axis}={_show(c)}: coordinates are fractions of the frame from 0 "
                                      "to 1 (0,0 is top left); divide pixels by the frame width or height")
    return float(point[0]), float(point[1])


def _area(points: Polygon) -> float:
    """Shoelace area, as a fraction of the frame."""
    twice = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1], strict=True))
    return abs(twice) / 2


_CHECKS: dict[str, Callable[[str, _Spec, Any], Any]] = {
    "int": _check_int, "float": _check_float, "bool": _check_bool, "choice": _check_choice,
    "resolution": lambda name, spec, v: _check_resolution(name, v),
    "bitrate": lambda name, spec, v: _check_bitrate(name, v),
    "polygons": _check_polygons,
}


# --- rules across fields: (fields involved, holds?, the rule, why it matters) ------------------------------

_RULES: tuple[tuple[tuple[str, str], Callable[[Mapping[str, Any]], bool], str, str], ...] = (
    (("motion_min_aspect", "motion_max_aspect"), lambda v: v["motion_min_aspect"] < v["motion_max_aspect"],
     "motion_min_aspect < motion_max_aspect", "otherwise no moving box can ever count"),
    (("motion_warm_up_frames", "motion_max_frames"), lambda v: v["motion_warm_up_frames"] < v["motion_max_frames"],
     "motion_warm_up_frames < motion_max_frames",
     "warm-up frames count toward the limit, so otherwise no frame is ever analysed"),
    (("segment_seconds", "clip_duration_seconds"), lambda v: v["segment_seconds"] <= v["clip_duration_seconds"],
     "segment_seconds <= clip_duration_seconds", "a clip is made of whole segments"),
    (("segment_seconds", "capture_frame_rate"), lambda v: v["segment_seconds"] * v["capture_frame_rate"] >= 1,
     "segment_seconds * capture_frame_rate >= 1", "every segment starts with a keyframe, so it needs a frame"),
)


def _normalise(values: Mapping[str, Any], touched: Collection[str]) -> dict[str, Any]:
    """Check and normalise every field, then every rule; a broken rule names the field the caller set."""
    clean = {name: _CHECKS[spec.kind](name, spec, values[name]) for name, spec in _SPECS.items()}
    for pair, holds, rule, why in _RULES:
        if not holds(clean):
            name = next((f for f in pair if f in touched), pair[0])
            now = ", ".join(f"{f}={_fmt(clean[f])}" for f in pair)
            raise SettingsError(name, f"need {rule}: {why} (got {now}); change {' or '.join(pair)}")
    return clean


def _unknown_key_message(key: str, others: int) -> str:
    more = f" ({others} more unknown key{'s' if others > 1 else ''} after it)" if others else ""
    if key == "id":
        return ("'id' is not a setting: the device id is fixed when the device is created and is part of the "
                f"URL; remove it from the settings{more}")
    close = difflib.get_close_matches(key, list(_SPECS), n=3, cutoff=0.6)
    if close:
        return f"unknown setting {key!r}; did you mean {' or '.join(map(repr, close))}?{more}"
    return f"unknown setting {_show(key)}; known settings: {', '.join(_SPECS)}{more}"


DEFAULT_SETTINGS = DeviceSettings()


# --- JSON Schema, from the same table ------------------------------------------------------------------------

_POINT_SCHEMA = {"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "number", "minimum": 0,
                                                                          "maximum": 1}}


def _property_schema(spec: _Spec) -> dict[str, Any]:
    if spec.kind in ("int", "float"):
        return {"type": "integer" if spec.kind == "int" else "number", "minimum": spec.lo, "maximum": spec.hi}
    if spec.kind == "bool":
        return {"type": "boolean"}
    if spec.kind == "choice":
        return {"type": "string", "enum": list(spec.choices)}
    if spec.kind == "resolution":
        return {"type": "string", "pattern": _RESOLUTION_PATTERN, "examples": ["", "720p", "1280x720", "640:480"]}
    if spec.kind == "bitrate":
        return {"type": "string", "pattern": _BITRATE_PATTERN, "examples": ["1000k", "1.5M"]}
    polygon = {"type": "array", "minItems": 3, "maxItems": MAX_POLYGON_POINTS, "items": _POINT_SCHEMA}
    return {"type": "array", "maxItems": MAX_POLYGONS, "items": polygon}


def json_schema(*, partial: bool = False) -> dict[str, Any]:
    """JSON Schema (draft 2020-12, usable as an OpenAPI 3.1 schema) of the settings object.

    ``partial=False`` describes what the server serves (every key present); ``partial=True`` describes an
    admin update, where every key is optional. Self-contained (no ``$ref``) so it embeds anywhere. Rules
    across fields and degenerate polygons cannot be expressed in JSON Schema; they are listed in the
    description and enforced by :meth:`DeviceSettings.from_dict`.
    """
    defaults = DEFAULT_SETTINGS.to_dict()
    properties = {}
    for name, spec in _SPECS.items():
        prop = _property_schema(spec)
        prop["default"] = defaults[name]
        prop["description"] = spec.doc
        properties[name] = prop
    rules = "; ".join(rule for _, _, rule, _ in _RULES)
    schema: dict[str, Any] = {
        "$schema": _SCHEMA_DRAFT,
        "title": "DeviceSettings",
        "description": ("Settings one CryoSpy device records with. Also enforced by the server: " + rules
                        + "; every polygon needs 3 distinct points and a non-zero area."),
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
    }
    if not partial:
        schema["required"] = list(properties)
    return schema
