"""Provision a running MinIO for CryoSpy: bucket, least-privilege identities, bucket notifications.

Idempotent: running it against an already provisioned server converges to the same state (that is what
happens on every ``cryospy serve``). MinIO-only calls (the admin API) stay in this module; the S3 calls use
boto3 so another S3-compatible store could stand in for the data plane.

Identities:
* presigner — may only ``PutObject`` under ``clips/`` and ``live/`` (live parts: live_sweep.py). Presigned URLs
  carry the signer's rights, so a device holding one can do nothing else: not read, list, overwrite (the URL
  pins If-None-Match) or delete.
* handler — reads clips, writes and deletes derived objects, deletes clips for retention, lists the
  bucket for the reconciler.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import urllib3
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError
from minio import MinioAdmin
from minio.credentials import StaticProvider
from minio.error import MinioAdminException

from cryospy.common.liveparts import LIVE_PREFIX
from cryospy.common.objectkeys import CLIP_PREFIX
from cryospy.functions.services import S3Identity

from .deployment import Deployment
from .errors import StorageError
from .event_routes import Route, notification_configuration
from .live_sweep import apply_lifecycle_rule
from .minio_server import webhook_arns


def presigner_policy(bucket: str) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": [f"arn:aws:s3:::{bucket}/{CLIP_PREFIX}*",
                                                                      f"arn:aws:s3:::{bucket}/{LIVE_PREFIX}*"]},
    ]}


def handler_policy(bucket: str) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
         "Resource": [f"arn:aws:s3:::{bucket}/*"]},
        {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
         "Resource": [f"arn:aws:s3:::{bucket}"]},
    ]}


def root_identity(dep: Deployment) -> S3Identity:
    return S3Identity(dep.minio_url, dep.minio_root_user, dep.minio_root_password, dep.region, dep.ca_file)


def minio_admin(dep: Deployment, *, retries: bool = True) -> MinioAdmin:
    """MinIO's admin API as root; over TLS MinIO's certificate must be signed by the deployment's CA.

    ``retries=False`` (the status page) answers within a few seconds whatever MinIO does."""
    url = urlsplit(dep.minio_url)
    tls = {"cert_reqs": "CERT_REQUIRED", "ca_certs": dep.ca_file} if dep.ca_file else {}
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=5, read=60) if retries else urllib3.Timeout(connect=2, read=5),
        retries=urllib3.Retry(total=5, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]) if retries
        else urllib3.Retry(total=0, redirect=0), **tls)
    return MinioAdmin(endpoint=url.netloc, secure=url.scheme == "https", http_client=http,
                      credentials=StaticProvider(dep.minio_root_user, dep.minio_root_password))


def provision(dep: Deployment, routes: list[Route]) -> None:
    s3 = root_identity(dep).client()
    try:
        try:
            s3.create_bucket(Bucket=dep.bucket)
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
        admin = minio_admin(dep)
        for name, user, secret, policy in (
            ("cryospy-presigner", dep.presigner_user, dep.presigner_secret, presigner_policy(dep.bucket)),
            ("cryospy-handler", dep.handler_user, dep.handler_secret, handler_policy(dep.bucket)),
        ):
            admin.policy_add(name, policy=policy)
            admin.user_add(user, secret)
            try:
                admin.attach_policy([name], user=user)
            except MinioAdminException as exc:
                # Attaching an already attached policy is refused; that is the state we want.
                if "already" not in str(exc).lower():
                    raise
        s3.put_bucket_notification_configuration(
            Bucket=dep.bucket,
            NotificationConfiguration=notification_configuration(routes, dep.bucket, webhook_arns(dep)))
        apply_lifecycle_rule(s3, dep.bucket)
    except EndpointConnectionError as exc:
        raise StorageError(f"cannot reach MinIO at {dep.minio_url}: is it running? ({exc})") from None
    except ClientError as exc:
        err = exc.response.get("Error", {})
        if err.get("Code") in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"):
            raise StorageError(
                f"MinIO at {dep.minio_url} refused the root credentials in deployment.json ({err.get('Code')}). "
                "The data dir and the server disagree: point --data-dir at the deployment that created "
                "this MinIO drive."
            ) from None
        raise StorageError(f"provisioning MinIO failed: {err.get('Code')}: {err.get('Message')}") from None
    except (BotoCoreError, MinioAdminException) as exc:
        raise StorageError(f"provisioning MinIO failed: {exc}") from None


def describe_notifications(dep: Deployment) -> str:
    s3 = root_identity(dep).client()
    cfg = s3.get_bucket_notification_configuration(Bucket=dep.bucket)
    cfg.pop("ResponseMetadata", None)
    return json.dumps(cfg, indent=2)
