from datetime import UTC, datetime, timedelta, timezone

import pytest

from cryospy.common.objectkeys import ObjectKeyError, clip_key, parse_clip_key, validate_device_id


def test_clip_key_is_deterministic_utc_and_parses_back():
    t = datetime(2026, 3, 4, 23, 30, 1, 123456, tzinfo=timezone(timedelta(hours=-2)))
    ck = clip_key("front door+1", t, 42)
    assert ck.key == "clips/front door+1/2026/03/05/20260305T013001.123Z-42.cse"
    assert ck.day == "2026-03-05"
    assert parse_clip_key(ck.key) == ck


@pytest.mark.parametrize("device_id", ["", " lead", "a/b", "..", "a.b", "x" * 64, "ü", "tail "])
def test_bad_device_ids_are_refused(device_id):
    with pytest.raises(ObjectKeyError):
        validate_device_id(device_id)


@pytest.mark.parametrize("key", [
    "clips/a/2026/03/05/20260305T013001.123Z-42.mp4",
    "clips/a/2026/03/06/20260305T013001.123Z-42.cse",     # folders disagree with the timestamp
    "clips/a/2026/03/05/20260305T013001.123Z-042.cse",    # not canonical
    "clips/../2026/03/05/20260305T013001.123Z-1.cse",
    "derived/a/2026/03/05/20260305T013001.123Z-1.cse",
])
def test_foreign_keys_are_refused(key):
    with pytest.raises(ObjectKeyError):
        parse_clip_key(key)


def test_naive_time_and_negative_sequence_are_refused():
    with pytest.raises(ObjectKeyError):
        clip_key("a", datetime(2026, 1, 1), 0)
    with pytest.raises(ObjectKeyError):
        clip_key("a", datetime(2026, 1, 1, tzinfo=UTC), -1)
