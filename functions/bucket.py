"""Small questions the handlers ask the bucket, answered one way everywhere.

MinIO and S3 report a missing object as ``NoSuchKey`` (GET, COPY), ``404`` or ``NotFound`` (HEAD); every
caller used to spell that list itself.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from cryospy.functions.services import Services

_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


def is_missing(exc: ClientError) -> bool:
    """Whether a botocore error says the object (or its source, for a copy) does not exist."""
    return exc.response.get("Error", {}).get("Code") in _MISSING_CODES


def head(services: Services, key: str) -> dict[str, Any] | None:
    """The object's HEAD answer, or None when it does not exist; any other failure raises."""
    try:
        return services.handler_client.head_object(Bucket=services.bucket, Key=key)
    except ClientError as exc:
        if is_missing(exc):
            return None
        raise
