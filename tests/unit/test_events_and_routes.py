"""Parsing MinIO records (from a recorded real delivery) and routing them by the app's decorators."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cryospy.functions.app import app
from cryospy.functions.events import MalformedEvent, parse_notification, parse_record
from cryospy.infra.event_routes import notification_configuration, routes_from_app

FIXTURE = Path(__file__).parent.parent / "fixtures" / "minio-object-created.json"


def test_recorded_minio_delivery_parses_with_decoded_key():
    body = json.loads(FIXTURE.read_text())
    [event] = parse_notification(body)
    assert event.key == "clips/cam +1/2026/01/02/20260102T030405.000Z-7.cse"
    assert body["Records"][0]["s3"]["object"]["key"] == "clips%2Fcam+%2B1%2F2026%2F01%2F02%2F20260102T030405.000Z-7.cse"
    assert event.event_name == "s3:ObjectCreated:Put" and event.created and not event.removed
    assert event.bucket == "cryospy" and event.size == 12 and event.sequencer == "18EC012BADCE4039"


def test_aws_style_names_are_normalised_and_round_trip_through_chalice_s3event():
    from chalice.app import S3Event

    event = parse_record({"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"},
                                                                    "object": {"key": "a%2Bb+c%25d"}}})
    assert event.event_name == "s3:ObjectCreated:Put" and event.key == "a+b c%d"
    # What the dispatcher hands to a Chalice handler decodes back to the same key.
    assert S3Event(event.to_event(), None).key == "a+b c%d"
    assert parse_notification(event.to_event()) == [event]


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
    routes = routes_from_app(app)
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
