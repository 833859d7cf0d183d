"""Our SigV4 presigner produces exactly what botocore produces for the same request and instant."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest

from cryospy.functions.services import S3Identity
from cryospy.functions.uploads.presign import PutPresigner

HEADERS = {"Content-Length": "4000000", "Content-Type": "application/octet-stream",
           "x-amz-checksum-sha256": "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=", "If-None-Match": "*"}


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:9480", "https://media.example.com", "http://minio:9000"])
@pytest.mark.parametrize("key", ["clips/porch/2026/01/02/20260102T030405.678Z-3.cse",
                                 "clips/front door+2/2026/01/02/20260102T030405.678Z-12.cse"])
def test_matches_botocore(endpoint: str, key: str):
    boto = S3Identity(endpoint, "csd0123456789abcdef", "s3cr3t/with+chars", "us-east-1").client()
    theirs = boto.generate_presigned_url("put_object", ExpiresIn=600, HttpMethod="PUT", Params={
        "Bucket": "cryospy", "Key": key, "ContentLength": 4000000, "ContentType": "application/octet-stream",
        "ChecksumSHA256": HEADERS["x-amz-checksum-sha256"], "IfNoneMatch": "*"})
    stamp = parse_qs(urlsplit(theirs).query)["X-Amz-Date"][0]
    now = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    ours = PutPresigner(endpoint, "csd0123456789abcdef", "s3cr3t/with+chars").presign_put(
        "cryospy", key, HEADERS, 600, now)
    a, b = urlsplit(ours), urlsplit(theirs)
    assert (a.scheme, a.netloc, a.path) == (b.scheme, b.netloc, b.path)
    assert parse_qs(a.query) == parse_qs(b.query)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        PutPresigner("ftp://x", "a", "b")
    with pytest.raises(ValueError):
        PutPresigner("http://x:1/path", "a", "b")
    with pytest.raises(ValueError):
        PutPresigner("http://x:1", "a", "b").presign_put("b", "k", {}, 604801)
