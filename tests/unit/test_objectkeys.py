from datetime import UTC, datetime, timedelta, timezone

import pytest

from cryospy.common.objectkeys import (
    ObjectKeyError,
    clip_key,
    is_storage_token,
    legacy_clip_key,
    new_storage_token,
    parse_clip_key,
    validate_device_id,
)

TOKEN = "_k7qv2mxw4rj3ta5bycn6dzeh2f"


def test_clip_key_is_deterministic_utc_and_parses_back():
    t = datetime(2026, 3, 4, 23, 30, 1, 123456, tzinfo=timezone(timedelta(hours=-2)))
    ck = clip_key(TOKEN, t, 42)
    assert ck.key == f"clips/{TOKEN}/2026/03/05/20260305T013001.123Z-42.cse"
    assert ck.day == "2026-03-05" and not ck.legacy
    assert parse_clip_key(ck.key) == ck


def test_new_keys_take_a_token_never_a_device_name():
    with pytest.raises(ObjectKeyError, match="storage token"):
        clip_key("front door+1", datetime(2026, 1, 1, tzinfo=UTC), 0)


def test_legacy_keys_that_name_the_camera_still_parse():
    t = datetime(2026, 3, 5, 1, 30, 1, 123000, tzinfo=UTC)
    ck = parse_clip_key("clips/front door+1/2026/03/05/20260305T013001.123Z-42.cse")
    assert (ck.owner, ck.captured_at, ck.sequence, ck.legacy) == ("front door+1", t, 42, True)
    assert ck == legacy_clip_key("front door+1", t, 42)


def test_tokens_are_random_well_formed_and_never_a_valid_device_id():
    tokens = {new_storage_token() for _ in range(200)}
    assert len(tokens) == 200 and all(is_storage_token(t) and len(t) == 27 for t in tokens)
    for token in tokens:   # a token can never be read as a legacy key's device name, nor the other way round
        with pytest.raises(ObjectKeyError):
            validate_device_id(token)
    assert not is_storage_token("porch") and not is_storage_token("_" + "a" * 25) and not is_storage_token(
        "_" + "A" * 26)


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
        clip_key(TOKEN, datetime(2026, 1, 1), 0)
    with pytest.raises(ObjectKeyError):
        clip_key(TOKEN, datetime(2026, 1, 1, tzinfo=UTC), -1)


def test_a_registry_from_before_tokens_gets_one_per_device_kept_across_restarts(tmp_path):
    from cryospy.functions.devices.registry import DeviceRegistry
    from cryospy.functions.errors import NotFound

    old = DeviceRegistry(tmp_path / "devices.json")
    old.create("porch", None, {})
    old.create("bedroom", None, {})
    # Simulate a registry written before storage tokens: the field is absent.
    from tinydb import TinyDB
    with TinyDB(tmp_path / "devices.json") as db:
        db.table("devices").update_multiple([({"storage_token": ""}, lambda d: True)])
    reopened = DeviceRegistry(tmp_path / "devices.json")
    tokens = {d.device_id: d.storage_token for d in reopened.list()}
    assert all(is_storage_token(t) for t in tokens.values()) and len(set(tokens.values())) == 2
    again = DeviceRegistry(tmp_path / "devices.json")
    assert {d.device_id: d.storage_token for d in again.list()} == tokens      # stable: written through
    assert again.resolve(tokens["porch"]).device_id == "porch"
    assert again.resolve("bedroom").device_id == "bedroom"                    # a legacy key's owner
    with pytest.raises(NotFound):
        again.resolve(new_storage_token())


def test_device_hex_round_trips_ids_with_spaces_and_refuses_what_it_never_makes():
    from cryospy.common.objectkeys import device_from_hex, device_hex

    assert device_hex("front door+2") == "66726f6e7420646f6f722b32"
    assert device_from_hex(device_hex("front door+2")) == "front door+2"
    for bad in ("zz", "abc", "ff"):   # not hex, odd length, not UTF-8
        with pytest.raises(ValueError):
            device_from_hex(bad)
