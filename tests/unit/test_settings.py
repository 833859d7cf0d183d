"""The device settings schema: defaults, strict parsing, PATCH merging, rules, ETag and JSON Schema agreement.

The expected field table below is written out by hand on purpose: it pins the contract the server, the
dashboard and the agent rely on, so a bound or default that changes in the module fails here first.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re

import pytest

from cryospy.common.errors import CryoSpyError
from cryospy.common.settings import (
    DEFAULT_SETTINGS,
    DeviceSettings,
    EncodeHints,
    SettingsError,
    json_schema,
    parse_bitrate,
    parse_resolution,
)

try:
    import jsonschema
except ImportError:  # pragma: no cover - the venv installs it; keep the rest of the file useful without it
    jsonschema = None

# name: (kind, default, lo, hi); lo/hi are None for non-numeric settings.
TABLE: dict[str, tuple[str, object, float | None, float | None]] = {
    "storage_limit_megabytes": ("int", 1024, 0, 16_777_216),
    "clip_duration_seconds": ("int", 60, 5, 1800),
    "motion_only": ("bool", False, None, None),
    "grayscale": ("bool", False, None, None),
    "downscale_resolution": ("resolution", "", None, None),
    "output_format": ("choice", "mp4", None, None),
    "output_codec": ("choice", "libx264", None, None),
    "video_bitrate": ("bitrate", "1000k", None, None),
    "motion_min_area": ("int", 1000, 1, 16_777_216),
    "motion_max_frames": ("int", 300, 1, 200_000),
    "motion_warm_up_frames": ("int", 30, 0, 10_000),
    "motion_min_width": ("int", 20, 1, 4096),
    "motion_min_height": ("int", 20, 1, 4096),
    "motion_min_aspect": ("float", 0.3, 0.01, 100),
    "motion_max_aspect": ("float", 3.0, 0.01, 100),
    "motion_mog_history": ("int", 500, 1, 10_000),
    "motion_mog_var_thresh": ("float", 16.0, 1, 1000),
    "capture_codec": ("choice", "MJPG", None, None),
    "capture_frame_rate": ("float", 15.0, 1, 60),
    "motion_zones": ("polygons", [], None, None),
    "motion_masks": ("polygons", [], None, None),
    "motion_min_seconds": ("float", 0.5, 0, 10),
    "motion_detect_width": ("int", 320, 80, 1920),
    "motion_pre_seconds": ("float", 5.0, 0, 60),
    "motion_post_seconds": ("float", 5.0, 0, 60),
    "retention_days": ("int", 0, 0, 3650),
    "segment_seconds": ("float", 1.0, 0.5, 10),
    "crf": ("int", 26, 0, 51),
    "settings_sync_seconds": ("int", 300, 5, 86_400),
    "record_mode": ("choice", "auto", None, None),
    "record_audio": ("bool", False, None, None),
    "motion_detect_fps": ("float", 5.0, 0.2, 30),
}
NUMERIC = [name for name, (kind, *_) in TABLE.items() if kind in ("int", "float")]

# The original dashboard's "/clients/new" defaults (and its clients table), keyed by our names.
ORIGINAL_DEFAULTS = {
    "storage_limit_megabytes": 1024, "clip_duration_seconds": 60, "capture_codec": "MJPG",
    "capture_frame_rate": 15.0, "downscale_resolution": "", "grayscale": False, "output_format": "mp4",
    "output_codec": "libx264", "video_bitrate": "1000k", "motion_only": False, "motion_min_area": 1000,
    "motion_max_frames": 300, "motion_warm_up_frames": 30, "motion_min_width": 20, "motion_min_height": 20,
    "motion_min_aspect": 0.3, "motion_max_aspect": 3.0, "motion_mog_history": 500, "motion_mog_var_thresh": 16.0,
}

SQUARE = [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]]
TRIANGLE = [[0, 0], [1, 0], [0, 1]]

# A valid value different from the default, for every setting (used for ETag and round trips).
OTHER = {
    "storage_limit_megabytes": 0, "clip_duration_seconds": 120, "motion_only": True, "grayscale": True,
    "downscale_resolution": "1280x720", "output_format": "mp4", "output_codec": "libopenh264",
    "video_bitrate": "1.5M", "motion_min_area": 500, "motion_max_frames": 900, "motion_warm_up_frames": 10,
    "motion_min_width": 8, "motion_min_height": 12, "motion_min_aspect": 0.2, "motion_max_aspect": 5.0,
    "motion_mog_history": 200, "motion_mog_var_thresh": 25.5, "capture_codec": "YUYV", "capture_frame_rate": 30.0,
    "motion_zones": [SQUARE], "motion_masks": [TRIANGLE, SQUARE], "motion_min_seconds": 2.0,
    "motion_detect_width": 640, "motion_pre_seconds": 3.0, "motion_post_seconds": 10.0, "retention_days": 30,
    "segment_seconds": 2.0, "crf": 20, "settings_sync_seconds": 60, "record_mode": "transcode",
    "record_audio": True, "motion_detect_fps": 2.5,
}


def refused(doc: dict, *, base: DeviceSettings | None = None) -> SettingsError:
    with pytest.raises(SettingsError) as info:
        DeviceSettings.from_dict(doc, base=base)
    return info.value


# --- defaults, table, round trip ---------------------------------------------------------------------------

def test_defaults_equal_the_originals_and_the_new_ones_are_as_specified():
    doc = DEFAULT_SETTINGS.to_dict()
    assert {k: doc[k] for k in ORIGINAL_DEFAULTS} == ORIGINAL_DEFAULTS
    assert doc == {name: default for name, (_, default, _, _) in TABLE.items()}
    assert "id" not in doc and len(doc) == 32
    assert DeviceSettings.from_dict({}) == DEFAULT_SETTINGS == DeviceSettings()


def test_to_dict_keeps_table_order_and_is_json_ready():
    doc = DeviceSettings.from_dict(OTHER).to_dict()
    assert list(doc) == list(TABLE)
    assert json.loads(json.dumps(doc, allow_nan=False)) == doc


@pytest.mark.parametrize("doc", [{}, OTHER], ids=["defaults", "every-field-changed"])
def test_round_trip(doc):
    settings = DeviceSettings.from_dict(doc)
    assert DeviceSettings.from_dict(settings.to_dict()) == settings
    assert DeviceSettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings
    if doc:
        assert settings.to_dict() == OTHER


def test_settings_are_frozen_and_hashable():
    settings = DeviceSettings.from_dict(OTHER)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.crf = 1  # type: ignore[misc]
    assert hash(settings) == hash(DeviceSettings.from_dict(OTHER))


def test_direct_construction_and_replace_are_validated_too():
    with pytest.raises(SettingsError) as info:
        DeviceSettings(crf=52)
    assert info.value.field == "crf"
    with pytest.raises(SettingsError):
        dataclasses.replace(DEFAULT_SETTINGS, downscale_resolution="853x480")
    assert DeviceSettings(capture_frame_rate=30).to_dict()["capture_frame_rate"] == 30.0


def test_error_is_a_cryospy_error_with_exit_code_2_and_the_field():
    error = refused({"crf": 99})
    assert isinstance(error, CryoSpyError) and error.exit_code == 2
    assert error.field == "crf" and error.message == str(error)
    assert "99" in error.message and "0 to 51" in error.message


# --- partial updates ----------------------------------------------------------------------------------------

def test_partial_update_merges_onto_base_and_leaves_base_alone():
    base = DeviceSettings.from_dict(OTHER)
    updated = DeviceSettings.from_dict({"crf": 18, "motion_zones": [TRIANGLE]}, base=base)
    assert updated.crf == 18
    assert updated.to_dict()["motion_zones"] == [TRIANGLE]          # lists are replaced, not merged
    assert {k: v for k, v in updated.to_dict().items() if k not in ("crf", "motion_zones")} == {
        k: v for k, v in OTHER.items() if k not in ("crf", "motion_zones")}
    assert base == DeviceSettings.from_dict(OTHER)
    assert DeviceSettings.from_dict({}, base=base) == base


def test_partial_update_is_validated_against_the_stored_values_and_names_the_field_it_set():
    base = DeviceSettings.from_dict({"motion_max_aspect": 2.0})
    error = refused({"motion_min_aspect": 2.5}, base=base)
    assert error.field == "motion_min_aspect"
    assert "motion_max_aspect=2" in error.message
    error = refused({"motion_max_aspect": 0.2}, base=base)
    assert error.field == "motion_max_aspect"


def test_a_non_object_document_is_refused():
    error = refused([("crf", 20)])  # type: ignore[arg-type]
    assert error.field == "settings" and "JSON object" in error.message


# --- types and ranges ---------------------------------------------------------------------------------------

WRONG_TYPES = {
    "int": ["60", True, 1.5, None, [], {}],
    "float": ["15", True, None, [1.0]],
    "bool": [1, 0, "on", "true", None],
    "choice": [1, True, None, ["mp4"]],
    "resolution": [720, None, ["1280", "720"]],
    "bitrate": [1000, 1000.0, None, True],
    "polygons": ["", None, {}, 1, [SQUARE[0]]],
}


@pytest.mark.parametrize(("name", "value"), [
    (name, value) for name, (kind, *_) in TABLE.items() for value in WRONG_TYPES[kind]
])
def test_every_field_rejects_wrong_json_types(name, value):
    error = refused({name: value})
    assert error.field == name and name in error.message


def _outside(name: str) -> list[float]:
    kind, _, lo, hi = TABLE[name]
    step = 1 if kind == "int" else 0.001
    return [lo - step, hi + step, 1e12, -1e12]


@pytest.mark.parametrize(("name", "value"), [(name, value) for name in NUMERIC for value in _outside(name)])
def test_every_number_rejects_out_of_range_values(name, value):
    error = refused({name: value})
    assert error.field == name
    assert "out of range" in error.message and name in error.message


def _with_partners(name: str, value: float) -> dict:
    """The doc setting ``name`` to a boundary, plus whatever the cross-field rules need to stay satisfied."""
    doc: dict = {name: value}
    if name == "motion_warm_up_frames":
        doc["motion_max_frames"] = value + 1
    elif name == "motion_max_frames" and value < 31:
        doc["motion_warm_up_frames"] = 0
    elif name == "motion_min_aspect":
        doc["motion_max_aspect"] = 100 if value < 100 else None
    elif name == "motion_max_aspect" and value <= 0.3:
        doc["motion_min_aspect"] = 0.01 if value > 0.01 else None
    elif name == "segment_seconds":
        doc["clip_duration_seconds"] = 10
    elif name == "clip_duration_seconds":
        doc["segment_seconds"] = 1.0
    return doc


@pytest.mark.parametrize(("name", "end"), [(name, end) for name in NUMERIC for end in (2, 3)])
def test_every_number_accepts_its_bounds(name, end):
    value = TABLE[name][end]
    doc = _with_partners(name, value)
    if None in doc.values():
        # min_aspect=100 / max_aspect=0.01 are in range but leave no room for the other end: the strict
        # min < max rule (not the range check) refuses them, naming the field.
        error = refused({name: value})
        assert error.field == name and "need motion_min_aspect < motion_max_aspect" in error.message
        return
    settings = DeviceSettings.from_dict(doc)
    assert getattr(settings, name) == value
    assert type(getattr(settings, name)) is (int if TABLE[name][0] == "int" else float)


def test_ints_are_accepted_for_float_fields_and_whole_floats_for_int_fields():
    settings = DeviceSettings.from_dict({"capture_frame_rate": 30, "clip_duration_seconds": 120.0})
    assert settings.capture_frame_rate == 30.0 and type(settings.capture_frame_rate) is float
    assert settings.clip_duration_seconds == 120 and type(settings.clip_duration_seconds) is int
    # the same JSON value spelled 30 or 30.0 must give the same settings, or ETags would differ for nothing
    assert settings.etag() == DeviceSettings.from_dict({"capture_frame_rate": 30.0,
                                                        "clip_duration_seconds": 120}).etag()


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused(value):
    assert refused({"motion_mog_var_thresh": value}).field == "motion_mog_var_thresh"
    assert refused({"crf": value}).field == "crf"


@pytest.mark.parametrize(("value", "hint"), [("on", "JSON boolean"), (1, "JSON boolean")])
def test_checkbox_style_booleans_get_a_hint(value, hint):
    assert hint in refused({"motion_only": value}).message


# --- unknown keys -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("key", "suggestion"), [
    ("clip_duration", "clip_duration_seconds"),
    ("motion_min_areas", "motion_min_area"),
    ("capture_framerate", "capture_frame_rate"),
    ("retention_day", "retention_days"),
    ("motion_zone", "motion_zones"),
])
def test_unknown_key_names_it_and_suggests_close_matches(key, suggestion):
    error = refused({key: 1})
    assert error.field == key
    assert repr(key) in error.message and repr(suggestion) in error.message


def test_unknown_key_without_a_close_match_lists_the_known_ones():
    error = refused({"zzz": 1, "crf": 20})
    assert error.field == "zzz" and "known settings" in error.message and "settings_sync_seconds" in error.message


def test_the_device_id_is_not_a_setting():
    error = refused({"id": "front-door"})
    assert error.field == "id" and "not a setting" in error.message


def test_several_unknown_keys_report_the_first_and_count_the_rest():
    error = refused({"b_unknown": 1, "a_unknown": 2})
    assert error.field == "a_unknown" and "1 more unknown key" in error.message


# --- rules across fields ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("doc", "field"), [
    ({"motion_min_aspect": 3.0}, "motion_min_aspect"),                          # equal is refused too
    ({"motion_max_aspect": 0.2}, "motion_max_aspect"),
    ({"motion_warm_up_frames": 300}, "motion_warm_up_frames"),                  # nothing would be analysed
    ({"motion_max_frames": 30}, "motion_max_frames"),
    ({"segment_seconds": 6, "clip_duration_seconds": 5}, "segment_seconds"),
    ({"clip_duration_seconds": 5, "segment_seconds": 5.5}, "segment_seconds"),
    ({"segment_seconds": 0.5, "capture_frame_rate": 1.5}, "segment_seconds"),  # 0.75 frames per segment
])
def test_cross_field_rules(doc, field):
    error = refused(doc)
    assert error.field == field
    assert "need " in error.message and "change " in error.message


def test_cross_field_rules_accept_their_edges():
    DeviceSettings.from_dict({"motion_warm_up_frames": 299, "segment_seconds": 5, "clip_duration_seconds": 5})
    DeviceSettings.from_dict({"segment_seconds": 1.0, "capture_frame_rate": 1})
    DeviceSettings.from_dict({"motion_min_aspect": 2.99})


# --- resolution ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "size", "stored"), [
    ("", None, ""),
    ("240p", (426, 240), "240p"), ("360p", (640, 360), "360p"), ("480p", (854, 480), "480p"),
    ("720p", (1280, 720), "720p"), ("1080p", (1920, 1080), "1080p"),
    ("1280x720", (1280, 720), "1280x720"), ("640:480", (640, 480), "640x480"),
    ("16x16", (16, 16), "16x16"), ("4096x4096", (4096, 4096), "4096x4096"),
    ("800x600", (800, 600), "800x600"), ("1024x768", (1024, 768), "1024x768"),  # the original's fixed list
])
def test_resolutions_accepted(text, size, stored):
    assert parse_resolution(text) == size
    settings = DeviceSettings.from_dict({"downscale_resolution": text})
    assert settings.downscale_resolution == stored
    assert (settings.encode_settings().width, settings.encode_settings().height) == (size or (None, None))


@pytest.mark.parametrize(("text", "says"), [
    ("853x480", "'854x480' or '852x480'"),
    ("1280x721", "'1280x722' or '1280x720'"),
    ("641:481", "width 641 and height 481 are odd"),
    ("4095x2160", "'4096x2160' or '4094x2160'"),
    ("14x480", "outside 16-4096"),
    ("8192x4320", "outside 16-4096"),
    ("720P", "'720p'"),
    ("1280 x 720", "'1280x720'"),
    ("01280x720", "'1280x720'"),
    ("1280X720", "'1280x720'"),
    ("2160p", "a preset"),
    ("big", "WIDTHxHEIGHT"),
])
def test_resolutions_refused_with_a_fix(text, says):
    error = refused({"downscale_resolution": text})
    assert error.field == "downscale_resolution"
    assert says in error.message
    if "odd" in says or "'8" in says:
        assert "even" in error.message


def test_the_resolution_pattern_accepts_exactly_even_sizes_16_to_4096():
    pattern = re.compile(json_schema()["properties"]["downscale_resolution"]["pattern"])
    for n in range(0, 5000):
        expected = 16 <= n <= 4096 and n % 2 == 0
        assert bool(pattern.fullmatch(f"{n}x480")) is expected, n
        assert bool(pattern.fullmatch(f"640:{n}")) is expected, n


# --- bitrate ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "bps"), [
    ("100k", 100_000), ("1000k", 1_000_000), ("1500k", 1_500_000), ("20000k", 20_000_000),
    ("500k", 500_000), ("4000k", 4_000_000), ("8000k", 8_000_000), ("15000k", 15_000_000),  # the original's list
    ("0.1M", 100_000), ("1M", 1_000_000), ("1.5M", 1_500_000), ("2.25M", 2_250_000), ("19.999M", 19_999_000),
    ("20M", 20_000_000), ("20.0M", 20_000_000),
])
def test_bitrates_accepted(text, bps):
    assert parse_bitrate(text) == bps
    assert DeviceSettings.from_dict({"video_bitrate": text}).encode_settings().bitrate_bps == bps


@pytest.mark.parametrize(("text", "says"), [
    ("50k", "100k to 20M"), ("99k", "100k to 20M"), ("25M", "100k to 20M"), ("20.5M", "100k to 20M"),
    ("0.05M", "100k to 20M"),
    ("2m", "milli"), ("1500K", "'1500k'"), ("1500000", "no unit"),
    ("1500.5k", "whole kilobits"), ("01500k", "leading zeros"), ("1.2345M", "three decimals"),
    ("fast", "'1500k' or '2M'"), ("", "'1500k' or '2M'"),
])
def test_bitrates_refused_with_a_fix(text, says):
    error = refused({"video_bitrate": text})
    assert error.field == "video_bitrate" and says in error.message


def test_the_bitrate_pattern_matches_the_range_exactly():
    pattern = re.compile(json_schema()["properties"]["video_bitrate"]["pattern"])
    for n in range(0, 25_000):
        assert bool(pattern.fullmatch(f"{n}k")) is (100 <= n <= 20_000), n
    for tenths in range(0, 250):
        text = f"{tenths // 10}.{tenths % 10}M"
        assert bool(pattern.fullmatch(text)) is (1 <= tenths <= 200), text


# --- codecs and formats -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "value", "says"), [
    ("output_format", "webm", "byte-range HLS"),
    ("output_format", "mkv", "byte-range HLS"),
    ("output_format", "avi", "use mp4"),
    ("output_format", "mov", "fragmented MP4"),
    ("output_codec", "libvpx-vp9", "use mp4/libx264"),
    ("output_codec", "libx265", "browsers"),
    ("output_codec", "ffv1", "libx264"),
    ("output_codec", "h264_vaapi", "hardware"),
])
def test_the_originals_other_formats_and_codecs_are_refused_with_the_reason(name, value, says):
    error = refused({name: value})
    assert error.field == name and "not supported here" in error.message and says in error.message


@pytest.mark.parametrize(("name", "value", "says"), [
    ("capture_codec", "mjpg", "use 'MJPG'"),
    ("capture_codec", "MP4V", "'MJPG' or 'YUYV' or 'H264'"),
    ("output_codec", "LIBX264", "use 'libx264'"),
    ("output_format", "flv", "'mp4'"),
])
def test_unknown_choices_list_what_is_accepted(name, value, says):
    error = refused({name: value})
    assert error.field == name and says in error.message


@pytest.mark.parametrize("codec", ["MJPG", "YUYV", "H264"])
def test_capture_codecs(codec):
    assert DeviceSettings.from_dict({"capture_codec": codec}).capture_codec == codec


# --- polygons -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["motion_zones", "motion_masks"])
def test_valid_polygons_are_stored_as_float_tuples(name):
    closed = [*SQUARE, SQUARE[0]]                     # a repeated closing point is fine
    settings = DeviceSettings.from_dict({name: [TRIANGLE, closed, [[0.5, 0]] + [[i / 63, 1] for i in range(63)]]})
    polygons = getattr(settings, name)
    assert polygons[0] == ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0))
    assert all(isinstance(c, float) for poly in polygons for point in poly for c in point)
    assert settings.to_dict()[name][0] == [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]
    assert DeviceSettings.from_dict({name: [SQUARE] * 16}).to_dict()[name] == [SQUARE] * 16


@pytest.mark.parametrize(("value", "says"), [
    ([SQUARE] * 17, "at most 16"),
    ([SQUARE[:2]], "3 to 64"),
    ([[[i / 64, 0.5 + (i % 2) / 4] for i in range(65)]], "3 to 64"),
    ([[[0, 0], [0, 0], [1, 1]]], "fewer than 3 distinct"),
    ([[[0, 0], [1, 1], [1, 1], [0, 0]]], "fewer than 3 distinct"),
    ([[[0, 0], [0.5, 0.5], [1, 1]]], "no area"),
    ([[[0, 0], [1, 0], [1.5, 1]]], "from 0 to 1"),
    ([[[0, 0], [1, 0], [-0.1, 1]]], "from 0 to 1"),
    ([[[0, 0], [1, 0], [True, 1]]], "from 0 to 1"),
    ([[[0, 0], [1, 0], ["0", 1]]], "from 0 to 1"),
    ([[[0, 0], [1, 0], [0, 1, 0]]], "[x, y] pair"),
    ([[[0, 0], [1, 0], {"x": 0, "y": 1}]], "[x, y] pair"),
    ([SQUARE, "square"], "array of [x, y] points"),
])
def test_broken_polygons_are_refused(value, says):
    for name in ("motion_zones", "motion_masks"):
        error = refused({name: value})
        assert error.field == name and says in error.message


def test_polygon_errors_point_at_the_polygon_and_point():
    error = refused({"motion_masks": [SQUARE, [[0, 0], [1, 0], [2, 1]]]})
    assert "motion_masks[1][2]" in error.message


# --- etag ---------------------------------------------------------------------------------------------------

def test_etag_is_a_quoted_sha256_of_canonical_json_and_pinned_for_the_defaults():
    etag = DEFAULT_SETTINGS.etag()
    canonical = json.dumps(DEFAULT_SETTINGS.to_dict(), sort_keys=True, separators=(",", ":"))
    assert etag == '"' + hashlib.sha256(canonical.encode()).hexdigest() + '"'
    # Pinned: computed in another process. Changing a default changes every device's ETag, so it is
    # deliberate to have to update this.
    assert etag == '"45c76340445eb7cfd5fcdc96a2d1efb50cd863bcb86e1746c3d56b2e7fb6246d"'


def test_etag_ignores_key_order_and_number_spelling():
    forward = DeviceSettings.from_dict(OTHER)
    backward = DeviceSettings.from_dict(dict(reversed(list(OTHER.items()))))
    assert forward.etag() == backward.etag()


@pytest.mark.parametrize("name", [n for n in TABLE if OTHER[n] != TABLE[n][1]])
def test_etag_changes_with_any_field(name):
    changed = DeviceSettings.from_dict({name: OTHER[name]} | (
        {"clip_duration_seconds": 120} if name == "segment_seconds" else {}))
    assert changed.etag() != DEFAULT_SETTINGS.etag()


# --- encoder hints ------------------------------------------------------------------------------------------

def test_encode_settings_for_defaults_and_capped_crf():
    assert DEFAULT_SETTINGS.encode_settings() == EncodeHints(
        width=None, height=None, fps=15.0, codec="libx264", crf=26, bitrate="1000k", bitrate_bps=1_000_000,
        grayscale=False, keyframe_seconds=1.0, container="mp4")
    hints = DeviceSettings.from_dict({"downscale_resolution": "720p", "grayscale": True, "segment_seconds": 2,
                                      "capture_frame_rate": 25, "crf": 22, "video_bitrate": "2M"}).encode_settings()
    assert (hints.width, hints.height, hints.fps, hints.crf, hints.bitrate, hints.grayscale) == (
        1280, 720, 25.0, 22, "2M", True)
    assert hints.keyframe_seconds == 2.0


def test_libopenh264_has_no_crf_so_the_bitrate_is_the_target():
    hints = DeviceSettings.from_dict({"output_codec": "libopenh264"}).encode_settings()
    assert hints.crf is None and hints.bitrate == "1000k" and hints.codec == "libopenh264"


# --- JSON Schema agreement ----------------------------------------------------------------------------------

def test_schema_lists_every_field_with_its_default_and_bounds():
    schema = json_schema()
    assert list(schema["properties"]) == list(TABLE) == schema["required"]
    assert schema["additionalProperties"] is False
    for name, (kind, default, lo, hi) in TABLE.items():
        prop = schema["properties"][name]
        assert prop["default"] == default and prop["description"]
        if lo is not None:
            assert (prop["type"], prop["minimum"], prop["maximum"]) == (
                "integer" if kind == "int" else "number", lo, hi)
    assert "required" not in json_schema(partial=True)
    assert "$ref" not in json.dumps(schema)          # embeddable in an OpenAPI document as is


BAD_DOCS = [
    {"clip_duration": 60}, {"id": "x"},
    *({name: value} for name, (kind, *_) in TABLE.items() for value in WRONG_TYPES[kind]),
    *({name: value} for name in NUMERIC for value in _outside(name)),
    {"output_format": "webm"}, {"output_codec": "libx265"}, {"output_codec": "libvpx-vp9"},
    {"capture_codec": "mjpg"},
    {"downscale_resolution": "853x480"}, {"downscale_resolution": "8192x4320"}, {"downscale_resolution": "720P"},
    {"downscale_resolution": "1280 x 720"}, {"downscale_resolution": "1280X720"},
    {"video_bitrate": "50k"}, {"video_bitrate": "25M"}, {"video_bitrate": "2m"}, {"video_bitrate": "1500"},
    {"video_bitrate": "1500K"}, {"video_bitrate": "01500k"},
    {"motion_zones": [SQUARE] * 17}, {"motion_zones": [SQUARE[:2]]}, {"motion_masks": [[[0, 0], [1, 0], [1.5, 1]]]},
    {"motion_masks": [[[0, 0], [1, 0], [0, 1, 0]]]}, {"motion_zones": [[[0, 0], [1, 0], [True, 1]]]},
]
GOOD_DOCS = [
    {}, OTHER, {"downscale_resolution": "640:480"}, {"downscale_resolution": "16x4096"},
    {"video_bitrate": "100k"}, {"video_bitrate": "0.1M"}, {"video_bitrate": "20M"},
    {"capture_frame_rate": 30}, {"clip_duration_seconds": 120.0}, {"motion_zones": [TRIANGLE]},
]


@pytest.fixture
def validator():
    if jsonschema is None:
        pytest.skip("jsonschema is not installed in this venv, so the schema cannot be checked against inputs")
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_schema_accepts_the_defaults(validator):
    assert validator.is_valid(DEFAULT_SETTINGS.to_dict())
    assert jsonschema.Draft202012Validator(json_schema(partial=True)).is_valid({})


@pytest.mark.parametrize("doc", BAD_DOCS, ids=lambda d: json.dumps(d, default=str)[:50])
def test_schema_rejects_what_from_dict_rejects(validator, doc):
    with pytest.raises(SettingsError):
        DeviceSettings.from_dict(doc)
    assert not validator.is_valid(DEFAULT_SETTINGS.to_dict() | doc)


@pytest.mark.parametrize("doc", GOOD_DOCS, ids=lambda d: json.dumps(d)[:50])
def test_schema_accepts_what_from_dict_accepts(validator, doc):
    DeviceSettings.from_dict(doc)
    assert validator.is_valid(DEFAULT_SETTINGS.to_dict() | doc)
