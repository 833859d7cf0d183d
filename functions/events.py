"""Typed views over S3/MinIO notification records, parsed once.

MinIO posts one record per request as ``{"EventName", "Key", "Records": [record]}``; AWS and moto send
``ObjectCreated:Put`` without the ``s3:`` prefix. Keys arrive ``QueryEscape``d (``/``→``%2F``, space→``+``,
``+``→``%2B``) and are decoded here with ``unquote_plus`` so nothing downstream ever sees an escaped key.

The webhook parses a notification once into :class:`ObjectEvent`; that value is what the job queue stores
(:meth:`ObjectEvent.to_stored`, key decoded), what workers hand the handlers and what the dead-letter views
show. Only the Lambda entry points in ``app.py`` parse an S3 body, because that is what Lambda gives them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from cryospy.functions.errors import FunctionsError


class MalformedEvent(FunctionsError):
    pass


STORED_VERSION = 1


@dataclass(frozen=True)
class ObjectEvent:
    event_name: str        # normalised with the "s3:" prefix, e.g. "s3:ObjectCreated:Put"
    bucket: str
    key: str               # decoded
    size: int | None
    etag: str | None
    sequencer: str | None
    version_id: str | None

    @property
    def created(self) -> bool:
        return self.event_name.startswith("s3:ObjectCreated:")

    @property
    def removed(self) -> bool:
        return self.event_name.startswith("s3:ObjectRemoved:")

    @property
    def identity(self) -> str:
        """What makes two deliveries the same event (used to drop duplicates before work starts).

        A creation is identified by its content's ETag: MinIO's notification and the device's upload
        confirmation describe the same object that way (clip keys are write-once, If-None-Match); a
        removal, which has no ETag, by MinIO's sequencer."""
        marker = (self.etag or self.sequencer or "") if self.created else (self.sequencer or self.etag or "")
        return "|".join([self.event_name.rsplit(":", 1)[0], self.bucket, self.key, marker, self.version_id or ""])

    def to_stored(self) -> dict[str, Any]:
        """The form the runtime's job queue keeps: the parsed fields, key decoded (not an S3 body again)."""
        return {"v": STORED_VERSION, "event_name": self.event_name, "bucket": self.bucket, "key": self.key,
                "size": self.size, "etag": self.etag, "sequencer": self.sequencer, "version_id": self.version_id}

    @classmethod
    def from_stored(cls, doc: Any) -> ObjectEvent:
        """Read what :meth:`to_stored` wrote. Queues written before version 1 kept S3-shaped bodies (keys
        escaped); those are parsed as notifications, once, so an upgrade loses no queued or dead job."""
        if isinstance(doc, dict) and "Records" in doc:
            return parse_notification(doc)[0]
        if not isinstance(doc, dict) or doc.get("v") != STORED_VERSION:
            raise MalformedEvent("stored event is neither a version-1 event nor an S3 notification")
        try:
            event = cls(event_name=doc["event_name"], bucket=doc["bucket"], key=doc["key"], size=doc["size"],
                        etag=doc["etag"], sequencer=doc["sequencer"], version_id=doc["version_id"])
        except KeyError as exc:
            raise MalformedEvent(f"stored event lacks {exc.args[0]!r}") from None
        if not all(isinstance(v, str) and v for v in (event.event_name, event.bucket, event.key)):
            raise MalformedEvent("stored event has an empty name, bucket or key")
        return event


def normalise_event_name(name: str) -> str:
    return name if name.startswith("s3:") else f"s3:{name}"


def parse_record(record: Any, *, escaped: bool = True) -> ObjectEvent:
    """One record. Webhook and S3 keys are URL-escaped; MinIO's listen stream sends them as they are."""
    try:
        name = record["eventName"]
        bucket = record["s3"]["bucket"]["name"]
        obj = record["s3"]["object"]
        raw_key = obj["key"]
    except (KeyError, TypeError):
        raise MalformedEvent("record lacks eventName, s3.bucket.name or s3.object.key") from None
    if not all(isinstance(v, str) and v for v in (name, bucket, raw_key)):
        raise MalformedEvent("eventName, bucket and key must be non-empty strings")
    size = obj.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise MalformedEvent(f"object size must be a non-negative integer, got {size!r}")
    return ObjectEvent(
        event_name=normalise_event_name(name), bucket=bucket, key=unquote_plus(raw_key) if escaped else raw_key,
        size=size,
        etag=(_opt_str(obj.get("eTag")) or "").strip('"') or None, sequencer=_opt_str(obj.get("sequencer")),
        version_id=_opt_str(obj.get("versionId")),
    )


def parse_notification(body: Any) -> list[ObjectEvent]:
    """Every record of a notification body (MinIO sends one, S3 may batch several)."""
    if not isinstance(body, dict) or not isinstance(body.get("Records"), list) or not body["Records"]:
        raise MalformedEvent("notification body must be an object with a non-empty 'Records' list")
    return [parse_record(r) for r in body["Records"]]


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
