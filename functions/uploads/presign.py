"""AWS Signature Version 4 query-string presigning for one PUT, without botocore on the hot path.

Why not botocore: ``generate_presigned_url`` resolves endpoints and runs its event machinery on every call
(about 0.6 ms here), which made it most of an upload-slot request's cost. The algorithm itself is small and
fixed (canonical request, string to sign, HMAC chain); the signing key is cached per day. A unit test checks
this module against botocore's output for the same inputs and instant, and the integration tests check that
real MinIO accepts exactly the intended request and rejects any change.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

from cryospy.common.timefmt import compact_stamp

_ALGORITHM = "AWS4-HMAC-SHA256"
_UNRESERVED = "-_.~"


_PLAIN = {"": re.compile(r"[A-Za-z0-9\-_.~]*"), "/": re.compile(r"[A-Za-z0-9\-_.~/]*")}


def _uri_encode(value: str, safe: str = "") -> str:
    # Most parts (names, dates, hex, ids) need no escaping; checking that is several times cheaper than quote().
    plain = _PLAIN.get(safe)
    if plain is not None and plain.fullmatch(value):
        return value
    return _quoted(value, safe)


@functools.lru_cache(maxsize=256)
def _quoted(value: str, safe: str) -> str:
    """The parts that do need escaping (the credential, the signed-header list) repeat on every call."""
    return quote(value, safe=_UNRESERVED + safe)


class PutPresigner:
    """Signs PUT URLs for one identity against one endpoint (path-style, as MinIO expects)."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str, region: str = "us-east-1"):
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
            raise ValueError(f"endpoint must be scheme://host[:port] with no path, got {endpoint!r}")
        self.base = f"{parts.scheme}://{parts.netloc}"
        self.host = parts.netloc
        # Default ports are not part of the Host header clients send, so they are not signed either.
        for default in (":80", ":443"):
            if (parts.scheme, default) in (("http", ":80"), ("https", ":443")) and self.host.endswith(default):
                self.host = self.host[: -len(default)]
        self.access_key = access_key
        self._secret = secret_key
        self.region = region
        self._keys: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def _signing_key(self, day: str) -> bytes:
        with self._lock:
            key = self._keys.get(day)
            if key is None:
                key = ("AWS4" + self._secret).encode()
                for part in (day, self.region, "s3", "aws4_request"):
                    key = hmac.new(key, part.encode(), hashlib.sha256).digest()
                self._keys = {day: key}
            return key

    def presign_put(self, bucket: str, key: str, headers: Mapping[str, str], expires: int,
                    now: datetime | None = None) -> str:
        """The URL; the client must send exactly ``headers`` (they are signed) plus Host."""
        if not 1 <= expires <= 604800:
            raise ValueError("expires must be between 1 second and 7 days")
        now = (now or datetime.now(UTC)).astimezone(UTC)
        amz_date, day = compact_stamp(now), now.strftime("%Y%m%d")
        signed = {k.lower(): " ".join(str(v).split()) for k, v in headers.items()}
        signed["host"] = self.host
        names = ";".join(sorted(signed))
        scope = f"{day}/{self.region}/s3/aws4_request"
        query = {"X-Amz-Algorithm": _ALGORITHM, "X-Amz-Credential": f"{self.access_key}/{scope}",
                 "X-Amz-Date": amz_date, "X-Amz-Expires": str(expires), "X-Amz-SignedHeaders": names}
        canonical_query = "&".join(f"{_uri_encode(k)}={_uri_encode(v)}" for k, v in sorted(query.items()))
        path = "/" + _uri_encode(bucket) + "/" + _uri_encode(key, safe="/")
        canonical_headers = "".join(f"{k}:{signed[k]}\n" for k in sorted(signed))
        canonical = "\n".join(["PUT", path, canonical_query, canonical_headers, names, "UNSIGNED-PAYLOAD"])
        to_sign = "\n".join([_ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        signature = hmac.new(self._signing_key(day), to_sign.encode(), hashlib.sha256).hexdigest()
        return f"{self.base}{path}?{canonical_query}&X-Amz-Signature={signature}"
