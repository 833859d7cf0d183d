"""The bucket as the handlers and the dashboard use it: head, get, put, copy, delete, list, with typed errors.

Why a wrapper over boto3: botocore reports every failure as a ``ClientError`` whose meaning is in a string
code (a missing object alone is ``NoSuchKey`` for GET and COPY, ``404`` or ``NotFound`` for HEAD), or as one
of several ``BotoCoreError`` classes for a MinIO that is down. Callers used to spell those lists themselves.
Here every call turns them into the ``BucketError`` tree of :mod:`cryospy.functions.errors`
(``ObjectMissing``, ``AccessDenied``, ``PreconditionFailed``, ``StoreUnavailable``), raised ``from`` the
botocore error, and so does reading a streamed body.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from cryospy.functions.errors import (
    AccessDenied,
    BucketError,
    ObjectMissing,
    PreconditionFailed,
    StoreUnavailable,
)

if TYPE_CHECKING:
    from cryospy.functions.services import Services

__all__ = ["Bucket", "ObjectBody", "translate"]

_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
_DENIED = frozenset({"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden"})
_PRECONDITION = frozenset({"PreconditionFailed", "412"})
_DELETE_BATCH = 1000   # S3's limit per DeleteObjects call


def translate(exc: ClientError | BotoCoreError, key: str | None = None) -> BucketError:
    """The typed error for a botocore failure (``key`` names the object in the message)."""
    where = f" for {key}" if key else ""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        text = f"MinIO answered {code or status}{where}: {error.get('Message') or exc}"
        if code in _MISSING:
            return ObjectMissing(f"no such object{where}", code=code, key=key)
        if code in _DENIED:
            return AccessDenied(text + "; check the deployment's MinIO credentials and policies", code=code,
                                key=key)
        if code in _PRECONDITION:
            return PreconditionFailed(text, code=code, key=key)
        if status >= 500 or code in ("SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"):
            return StoreUnavailable(text + "; try again when MinIO is healthy", code=code, key=key)
        return BucketError(text, code=code, key=key)
    return StoreUnavailable(f"MinIO could not be reached{where} ({exc}); check that it is running",
                            code=type(exc).__name__, key=key)


class ObjectBody:
    """A streamed GET body whose read failures are typed too; close it when done (or use ``with``)."""

    def __init__(self, raw: Any, key: str, size: int):
        self._raw, self.key, self.size = raw, key, size   # size: the bytes this GET returns

    def read(self, size: int = -1) -> bytes:
        try:
            return self._raw.read() if size is None or size < 0 else self._raw.read(size)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, self.key) from exc

    def iter_chunks(self, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        while chunk := self.read(chunk_size):
            yield chunk

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> ObjectBody:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class Bucket:
    """One bucket through one boto3 S3 client."""

    def __init__(self, client: Any, name: str):
        self.client, self.name = client, name

    @classmethod
    def of(cls, services: Services) -> Bucket:
        """The deployment's bucket through the handlers' client."""
        return cls(services.handler_client, services.bucket)

    def head(self, key: str) -> dict[str, Any] | None:
        """The object's HEAD answer, or None when it does not exist; any other failure raises."""
        try:
            return self.client.head_object(Bucket=self.name, Key=key)
        except (ClientError, BotoCoreError) as exc:
            error = translate(exc, key)
            if isinstance(error, ObjectMissing):
                return None
            raise error from exc

    def get(self, key: str, *, first: int | None = None, last: int | None = None) -> ObjectBody:
        """The object's bytes as a stream (bytes ``first``..``last`` inclusive when given); ObjectMissing."""
        extra = {"Range": f"bytes={first}-{last}"} if first is not None else {}
        try:
            answer = self.client.get_object(Bucket=self.name, Key=key, **extra)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, key) from exc
        return ObjectBody(answer["Body"], key, int(answer.get("ContentLength") or 0))

    def read(self, key: str) -> bytes:
        """The whole object (for small ones: thumbnails, live parts)."""
        with self.get(key) as body:
            return body.read()

    def put(self, key: str, body: bytes, **options: Any) -> None:
        """Write an object; ``options`` are boto3's (``ContentType``, ``Metadata``, ``IfNoneMatch``, …)."""
        self._call("put_object", key, Body=body, **options)

    def copy(self, source: str, target: str, **options: Any) -> None:
        """Server-side copy within the bucket; ObjectMissing when ``source`` does not exist."""
        try:
            self.client.copy_object(Bucket=self.name, Key=target, CopySource={"Bucket": self.name, "Key": source},
                                    **options)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, source) from exc

    def delete(self, key: str) -> None:
        """Delete an object (deleting a missing one succeeds, as in S3)."""
        self._call("delete_object", key)

    def delete_many(self, keys: Iterable[str]) -> int:
        """Delete objects in batches of S3's limit, as ``keys`` yields them; returns how many."""
        batch: list[dict[str, str]] = []
        count = 0
        for key in keys:
            batch.append({"Key": key})
            if len(batch) == _DELETE_BATCH:
                self._delete_batch(batch)
                count, batch = count + len(batch), []
        if batch:
            self._delete_batch(batch)
        return count + len(batch)

    def list(self, prefix: str) -> Iterator[dict[str, Any]]:
        """Every object under ``prefix`` (S3's listing entries: ``Key``, ``Size``, ``LastModified``, …)."""
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix):
                yield from page.get("Contents", [])
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, prefix) from exc

    def _delete_batch(self, batch: list[dict[str, str]]) -> None:
        try:
            self.client.delete_objects(Bucket=self.name, Delete={"Objects": batch, "Quiet": True})
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc) from exc

    def _call(self, method: str, key: str, **options: Any) -> Any:
        try:
            return getattr(self.client, method)(Bucket=self.name, Key=key, **options)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, key) from exc
