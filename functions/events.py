"""Typed views over S3/MinIO notification records, parsed once.

MinIO posts one record per request as ``{"EventName", "Key", "Records": [record]}``; AWS and moto send
``ObjectCreated:Put`` without the ``s3:`` prefix. Keys arrive ``QueryEscape``d (``/``→``%2F``, space→``+``,
``+``→``%2B``) and are decoded here with ``unquote_plus`` so nothing downstream ever sees an escaped key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from cryospy.functions.errors import FunctionsError


class MalformedEvent(FunctionsError):
    pass


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

    def to_record(self) -> dict[str, Any]:
        """Back to an S3-shaped record (key escaped again), so Chalice's S3Event decodes it correctly."""
        from urllib.parse import quote_plus

        obj: dict[str, Any] = {"key": quote_plus(self.key, safe="")}
        for name, value in (("size", self.size), ("eTag", self.etag), ("sequencer", self.sequencer),
                            ("versionId", self.version_id)):
            if value is not None:
                obj[name] = value
        return {"eventVersion": "2.0", "eventSource": "minio:s3", "eventName": self.event_name,
                "s3": {"bucket": {"name": self.bucket}, "object": obj}}

    def to_event(self) -> dict[str, Any]:
        return {"Records": [self.to_record()]}


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


def stored_event_key(body: Any) -> str:
    """The decoded object key of a stored event body (a queued or dead-lettered job), for people to read.

    Tolerant on purpose: a dead letter may be an event that never parsed, so this shows whatever key it has
    (``""`` when none) instead of raising. Stored bodies are S3-shaped, so their keys are escaped."""
    records = body.get("Records") if isinstance(body, dict) else None
    for record in records if isinstance(records, list) else []:
        obj = record.get("s3", {}).get("object", {}) if isinstance(record, dict) else {}
        key = obj.get("key") if isinstance(obj, dict) else None
        if isinstance(key, str) and key:
            return unquote_plus(key)
    key = body.get("key") if isinstance(body, dict) else None
    return key if isinstance(key, str) else ""


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
