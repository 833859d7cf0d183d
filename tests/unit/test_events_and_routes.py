"""Parsing MinIO records (from a recorded real delivery) and routing them by the app's decorators."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cryospy.functions.app import OBJECT_HANDLERS, app
from cryospy.functions.events import MalformedEvent, ObjectEvent, parse_notification, parse_record
from cryospy.infra.event_routes import notification_configuration, routes_from_app

FIXTURES = Path(__file__).parent.parent / "fixtures"
FIXTURE = FIXTURES / "minio-object-created.json"


def test_recorded_minio_delivery_parses_with_decoded_key():
    body = json.loads(FIXTURE.read_text())
    [event] = parse_notification(body)
    assert event.key == "clips/cam +1/2026/01/02/20260102T030405.000Z-7.cse"
    assert body["Records"][0]["s3"]["object"]["key"] == "clips%2Fcam+%2B1%2F2026%2F01%2F02%2F20260102T030405.000Z-7.cse"
    assert event.event_name == "s3:ObjectCreated:Put" and event.created and not event.removed
    assert event.bucket == "cryospy" and event.size == 12 and event.sequencer == "18EC012BADCE4039"


def test_recorded_minio_removal_parses_without_an_etag():
    [event] = parse_notification(json.loads((FIXTURES / "minio-object-removed.json").read_text()))
    assert event.removed and event.event_name == "s3:ObjectRemoved:Delete" and event.etag is None
    assert event.key.startswith("clips/_") and "%2F" not in event.key and event.sequencer


def test_a_batched_s3_body_gives_one_event_per_record_in_order():
    """MinIO posts one record per request; S3 (and Lambda) batch several. Made of two recorded records."""
    created, removed = parse_notification(json.loads((FIXTURES / "s3-batched-created-removed.json").read_text()))
    assert created.created and removed.removed and created.key == removed.key
    assert created.identity != removed.identity


def test_aws_style_names_are_normalised_and_the_stored_form_round_trips():
    event = parse_record({"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"},
                                                                    "object": {"key": "a%2Bb+c%25d"}}})
    assert event.event_name == "s3:ObjectCreated:Put" and event.key == "a+b c%d"
    assert ObjectEvent.from_stored(json.loads(json.dumps(event.to_stored()))) == event


@pytest.mark.parametrize("stored", [None, [], {"v": 2}, {"v": 1, "key": "k"},
                                    {"v": 1, "event_name": "", "bucket": "b", "key": "k", "size": None,
                                     "etag": None, "sequencer": None, "version_id": None}])
def test_a_damaged_stored_event_raises_the_one_error_type(stored):
    with pytest.raises(MalformedEvent):
        ObjectEvent.from_stored(stored)


def test_the_lambda_entry_point_parses_once_and_calls_the_typed_handler(monkeypatch):
    """Under Lambda (`chalice package`) the Chalice function gets an S3 body; it hands each parsed record to
    the same typed handler the runtime's workers call."""
    from cryospy.functions import app as app_module

    seen: list[ObjectEvent] = []
    monkeypatch.setattr(app_module, "clip_created", seen.append)
    body = json.loads((FIXTURES / "s3-batched-created-removed.json").read_text())
    app.handler_map["on_clip_created"](body, None)
    assert [e.event_name for e in seen] == ["s3:ObjectCreated:Put", "s3:ObjectRemoved:Delete"]


@pytest.mark.parametrize("body", [
    None, [], {}, {"Records": []}, {"Records": [{}]}, {"Records": [{"eventName": 1, "s3": {}}]},
    {"Records": [{"eventName": "s3:ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {"key": ""}}}]},
    {"Records": [{"eventName": "x", "s3": {"bucket": {"name": "b"}, "object": {"key": "k", "size": -1}}}]},
    {"Records": [{"eventName": "x", "s3": {"bucket": {"name": "b"}, "object": {"key": "k", "size": "9"}}}]},
])
def test_malformed_bodies_raise_one_error_type(body):
    with pytest.raises(MalformedEvent):
        parse_notification(body)


def test_routes_come_from_the_decorators_and_drive_the_notification_config():
    routes = routes_from_app(app, OBJECT_HANDLERS)
    assert {r.name: r.handler for r in routes} == OBJECT_HANDLERS
    [clip] = [r for r in routes if r.name == "on_clip_created"]
    assert clip.bucket == "cryospy" and clip.prefix == "clips/" and clip.suffix == ".cse"
    assert clip.matches("cryospy", "clips/a/2026/01/01/x.cse", "s3:ObjectCreated:Put")
    assert clip.matches("cryospy", "clips/a/2026/01/01/x.cse", "s3:ObjectCreated:CompleteMultipartUpload")
    assert not clip.matches("cryospy", "clips/a/x.cse", "s3:ObjectRemoved:Delete")
    assert not clip.matches("cryospy", "derived/a.cse", "s3:ObjectCreated:Put")
    assert not clip.matches("other", "clips/a.cse", "s3:ObjectCreated:Put")
    config = notification_configuration(routes, "cryospy")
    entry = next(q for q in config["QueueConfigurations"] if q["Id"] == "on_clip_created")
    assert entry == {"Id": "on_clip_created", "QueueArn": "arn:minio:sqs::CRYOSPY:webhook",
                     "Events": ["s3:ObjectCreated:*"],
                     "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "clips/"},
                                                        {"Name": "suffix", "Value": ".cse"}]}}}
