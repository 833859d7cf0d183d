"""Errors of the Chalice app and its domain code.

::

    CryoSpyError
    └── FunctionsError
        ├── ApiError                 an HTTP-facing failure with a status code and, for 400, the field at fault
        │   ├── BadRequest (400)
        │   ├── Unauthorized (401)   unknown, disabled or wrong credentials: always the same body
        │   ├── NotFound (404)
        │   ├── Conflict (409)
        │   ├── PayloadTooLarge (413)
        │   └── TooManyRequests (429)
        ├── KeysLocked               the private key is not unlocked yet: event work waits, nothing is dropped
        ├── PermanentEventError      an event that can never succeed (dead-letter it with this reason)
        └── BucketError              a MinIO call failed (``code``: the S3 error code); raised by functions.bucket
            ├── ObjectMissing        no such object (NoSuchKey, 404, NotFound; for a copy: its source)
            ├── AccessDenied         the credentials may not do this (AccessDenied, 403, a bad key or signature)
            ├── PreconditionFailed   a conditional write found the object there already (412)
            └── StoreUnavailable     MinIO is down, slow or failing (connection, timeout, 5xx): try again later
"""

from __future__ import annotations

from cryospy.common.errors import CryoSpyError


class FunctionsError(CryoSpyError):
    pass


class ApiError(FunctionsError):
    status = 500

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field

    def body(self) -> dict[str, object]:
        doc: dict[str, object] = {"error": self.message}
        if self.field is not None:
            doc["field"] = self.field
        return doc


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401

    def __init__(self, message: str = "invalid credentials"):
        super().__init__(message)


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class PayloadTooLarge(ApiError):
    status = 413


class TooManyRequests(ApiError):
    status = 429


class KeysLocked(FunctionsError):
    """Raised by work that needs the private key while the runtime is locked; the job is retried later."""


class PermanentEventError(FunctionsError):
    """The event can never be processed (bad object, unknown device, …): dead-letter it with this message."""


class BucketError(FunctionsError):
    """A MinIO/S3 call failed; ``code`` is S3's error code (or the botocore error's class name)."""

    def __init__(self, message: str, *, code: str = "", key: str | None = None):
        super().__init__(message)
        self.code = code
        self.key = key


class ObjectMissing(BucketError):
    """The object (or, for a copy, its source) does not exist."""


class AccessDenied(BucketError):
    """MinIO refused the credentials for this call: check the deployment's MinIO users and policies."""


class PreconditionFailed(BucketError):
    """A conditional request's condition was false (an ``If-None-Match: *`` write over an existing key)."""


class StoreUnavailable(BucketError):
    """MinIO could not be reached or failed on its side; the call may succeed later."""
