"""Deletes from anywhere, age and global retention, gap and silence alerts, on real MinIO and SMTP."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cryospy.common.objectkeys import parse_clip_key, thumbnail_key
from cryospy.functions import maintenance
from cryospy.functions.clips import chain_check
from cryospy.functions.retention import policy
from cryospy.infra.bootstrap import root_identity
from cryospy.infra.runtime import Runtime, RuntimeOptions
from cryospy.infra.server_config import ServerConfig
from cryospy.web.builder import day_page
from tests.conftest import PASSPHRASE
from tests.smtp_sink import SmtpSink
from tests.support import FakeCamera, clip_place, wait_for

pytestmark = pytest.mark.integration


def _indexed(rt, key: str):
    ck = clip_place(rt, key)
    return rt.services.index.get_clip(ck.device_id, ck.day, key)


def _exists(deployment, key: str) -> bool:
    listed = root_identity(deployment).client().list_objects_v2(Bucket=deployment.bucket, Prefix=key)
    return listed.get("KeyCount", 0) > 0


def _removal_handled(deployment, key: str) -> bool:
    """Whether the runtime's queue has finished the removal event for ``key`` (read from its SQLite file)."""
    with sqlite3.connect(deployment.path("runtime", "jobs.sqlite")) as db:
        rows = db.execute("SELECT state FROM jobs WHERE handler='on_clip_removed' AND dedupe LIKE ?",
                          (f"%{key}%",)).fetchall()
    return bool(rows) and all(state == "done" for (state,) in rows)


def _admin(deployment, method: str, path: str, body: dict) -> dict:
    req = urllib.request.Request(f"{deployment.runtime_url}{path}", method=method, data=json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {deployment.admin_token}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_a_delete_from_outside_leaves_a_tombstone_and_is_mailed_but_ours_are_not(mailing_runtime, deployment,
                                                                                  tmp_path: Path):
    rt, smtp = mailing_runtime
    camera = FakeCamera(deployment, "outsider", tmp_path)
    key, ours = camera.upload(), camera.upload()
    record = wait_for(lambda: _indexed(rt, key), what="indexed")
    wait_for(lambda: _indexed(rt, ours), what="indexed")
    assert _exists(deployment, record.thumb_key)
    root_identity(deployment).client().delete_object(Bucket=deployment.bucket, Key=key)   # e.g. `mc rm`
    tomb = wait_for(lambda: (r := _indexed(rt, key)) is not None and r.missing and r,
                    what="a tombstone in the index")
    assert tomb.sequence == record.sequence and tomb.sealed_size == 0 and tomb.missing_since
    wait_for(lambda: not _exists(deployment, thumbnail_key(key)), what="the thumbnail to go")
    mail = wait_for(lambda: [m for m in smtp.messages if m["Subject"] == "CryoSpy footage deleted"],
                    what="the deletion alert")
    assert key in mail[0].get_content() and "outsider" in mail[0].get_content()
    ck = clip_place(rt, key)
    wait_for(lambda: "deleted outside CryoSpy" in (rt.site.get(day_page(ck.device_id, ck.day)) or ""),
             what="the day page to show the tombstone")
    assert rt.services.index.usage("outsider").bytes == _indexed(rt, ours).sealed_size + \
        _indexed(rt, ours).thumb_size
    # CryoSpy's own deletion (the admin API, as retention does it) leaves nothing and mails nothing.
    _admin(deployment, "POST", "/v1/admin/clips/delete", {"key": ours})
    wait_for(lambda: _indexed(rt, ours) is None, what="the admin delete")
    wait_for(lambda: _removal_handled(deployment, ours), what="the removal event handled")
    assert [m["Subject"] for m in smtp.messages].count("CryoSpy footage deleted") == 1
    assert _indexed(rt, ours) is None


def test_age_limit_and_protected_evidence(runtime, deployment, tmp_path: Path):
    camera = FakeCamera(deployment, "aging", tmp_path)
    now = datetime.now(UTC)
    camera.t0 = now - timedelta(days=10)
    old = camera.upload()
    camera.t0 = now - timedelta(days=10) + timedelta(seconds=5)
    evidence = camera.upload()
    camera.t0 = now - timedelta(minutes=5) - timedelta(seconds=20)
    recent = camera.upload()
    for key in (old, evidence, recent):
        wait_for(lambda k=key: _indexed(runtime, k), what="indexed")
    assert _admin(deployment, "POST", "/v1/admin/clips/protect", {"key": evidence, "protected": True})["protected"]
    _admin(deployment, "PATCH", "/v1/admin/devices/aging/settings", {"retention_days": 7})
    result = policy.enforce_device(runtime.services, "aging")
    assert result.deleted == (old,)
    assert _indexed(runtime, old) is None and not _exists(deployment, old)
    assert _indexed(runtime, evidence) and _indexed(runtime, recent)      # evidence is never deleted
    with pytest.raises(urllib.error.HTTPError) as err:
        _admin(deployment, "POST", "/v1/admin/clips/delete", {"key": evidence})
    assert err.value.code == 409


def test_global_budget_removes_the_oldest_of_any_device(runtime, deployment, tmp_path: Path):
    a, b = FakeCamera(deployment, "budget-a", tmp_path), FakeCamera(deployment, "budget-b", tmp_path)
    b.t0 = a.t0 - timedelta(hours=1)
    oldest = b.upload()
    newer = a.upload()
    for key in (oldest, newer):
        wait_for(lambda k=key: _indexed(runtime, k), what="indexed")
    total = runtime.services.index.usage().bytes
    result = policy.enforce_global(dataclasses.replace(runtime.services, global_budget_bytes=total - 1))
    assert result.deleted[0] == oldest and newer not in result.deleted[:1]
    assert result.used_bytes <= total - 1


def test_gap_and_silence_are_mailed_once(deployment, minio, tmp_path: Path):
    with SmtpSink() as smtp:
        config = ServerConfig(smtp=smtp.settings(), alert_recipients=("owner@test.invalid",), silent_minutes=1)
        rt = Runtime(deployment, RuntimeOptions(reconcile_seconds=3600), config)
        rt.unlock(PASSPHRASE)
        rt.start()
        try:
            camera = FakeCamera(deployment, "gappy", tmp_path)
            first = camera.upload()
            camera.sealed()                       # clip #1 is recorded but never arrives
            third = camera.upload()
            for key in (first, third):
                wait_for(lambda k=key: _indexed(rt, k), what="indexed")
            assert _indexed(rt, third).chain == "awaiting-predecessor"
            later = datetime.now(UTC) + chain_check.GAP_GRACE + timedelta(minutes=1)
            def gaps() -> list[str]:   # other tests share this deployment (a full spool makes real gaps)
                return [c.key for c in chain_check.audit_gaps(rt.services, later) if c.device_id == "gappy"]

            assert gaps() == [third]
            assert gaps() == []                                              # reported once
            assert _indexed(rt, third).chain == "gap"
            silent = maintenance.silent_devices(rt.services, datetime.now(UTC) + timedelta(minutes=5))
            assert "gappy" in silent
            maintenance.silent_devices(rt.services, datetime.now(UTC) + timedelta(minutes=6))
            wait_for(lambda: len(smtp.messages) >= 2, what="gap and silence mails")
        finally:
            rt.stop()
    ours = [m["Subject"] for m in smtp.messages if "Device: gappy" in m.get_content()]
    assert ours.count("CryoSpy footage missing") == 1
    assert ours.count("CryoSpy camera silent") == 1     # the second pass is inside the rate limit


def test_a_newest_clip_that_never_arrives_is_mailed_once(mailing_runtime, deployment, tmp_path: Path):
    """No successor will ever reveal that the newest clip vanished; the heartbeat does."""
    rt, smtp = mailing_runtime
    camera = FakeCamera(deployment, "edge", tmp_path)
    first = camera.upload()
    wait_for(lambda: _indexed(rt, first), what="indexed")
    # A camera that is still uploading, or that went quiet after its heartbeat, is not flagged.
    camera.client.heartbeat({"last_sequence": 1, "spool_depth": 1})
    assert chain_check.audit_newest(rt.services, grace=timedelta(0)) == []
    camera.client.heartbeat({"last_sequence": 1, "spool_depth": 0})
    later = datetime.now(UTC) + timedelta(minutes=5)
    assert chain_check.audit_newest(rt.services, now=later) == []        # nothing heard since the heartbeat

    camera.sealed()   # clip #1: sealed and, the camera says, uploaded; it never reaches the index
    assert chain_check.audit_newest(rt.services, grace=timedelta(0)) == [("edge", 1)]
    assert chain_check.audit_newest(rt.services, grace=timedelta(0)) == [("edge", 1)]   # found again, not mailed
    mail = wait_for(lambda: [m for m in smtp.messages if "Clip #1" in m.get_content() and "edge" in m.get_content()],
                    what="the missing-clip alert")
    assert mail[0]["Subject"] == "CryoSpy footage missing"
    assert not rt.services.alerts.limits.claim("edge", "newest-missing-1", 3600)   # claimed once, kept
    assert len([m for m in smtp.messages if "Clip #1" in m.get_content()]) == 1

    # Once the camera's next clip is indexed, its heartbeat points past a clip the index has.
    camera.upload()
    wait_for(lambda: rt.services.index.find_sequence("edge", 2, parse_clip_key(first).day, -1), what="clip #2")
    camera.client.heartbeat({"last_sequence": 2, "spool_depth": 0})
    assert chain_check.audit_newest(rt.services, grace=timedelta(0)) == []
