"""functions.bucket on moto's S3: every call answers with the typed errors, never a raw botocore error."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from moto import mock_aws

from cryospy.functions.bucket import Bucket, translate
from cryospy.functions.errors import AccessDenied, BucketError, ObjectMissing, PreconditionFailed, StoreUnavailable


@pytest.fixture
def store():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
        client.create_bucket(Bucket="cryospy-test")
        yield Bucket(client, "cryospy-test")


def test_a_missing_object_is_none_for_head_and_object_missing_for_get_and_copy(store):
    assert store.head("nope") is None
    with pytest.raises(ObjectMissing) as err:
        store.get("nope")
    assert err.value.key == "nope" and isinstance(err.value.__cause__, ClientError)
    with pytest.raises(ObjectMissing):
        store.copy("nope", "elsewhere")
    store.delete("nope")   # deleting what is not there succeeds, as in S3


def test_put_get_range_copy_list_and_delete_many(store):
    store.put("a/1", b"0123456789", ContentType="application/octet-stream")
    assert store.head("a/1")["ContentLength"] == 10
    with store.get("a/1", first=2, last=4) as body:
        assert body.size == 3 and body.read() == b"234"
    store.copy("a/1", "a/2")
    assert store.read("a/2") == b"0123456789"
    assert [o["Key"] for o in store.list("a/")] == ["a/1", "a/2"]
    assert store.delete_many(o["Key"] for o in store.list("a/")) == 2
    assert list(store.list("a/")) == []


@pytest.mark.parametrize(("code", "status", "kind"), [
    ("NoSuchKey", 404, ObjectMissing), ("404", 404, ObjectMissing), ("AccessDenied", 403, AccessDenied),
    ("SignatureDoesNotMatch", 403, AccessDenied), ("PreconditionFailed", 412, PreconditionFailed),
    ("InternalError", 500, StoreUnavailable), ("SlowDown", 503, StoreUnavailable), ("InvalidRange", 416, BucketError),
])
def test_error_codes_map_to_one_typed_error_each(code, status, kind):
    exc = ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
                      "GetObject")
    error = translate(exc, "k")
    assert type(error) is kind and error.code == code


def test_an_unreachable_minio_is_store_unavailable():
    error = translate(EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), "k")
    assert isinstance(error, StoreUnavailable) and "running" in str(error)
