"""Issue 12, storage side: each test performs the attack (or the fault) against the real runtime and MinIO.

Findings 5 (quarantine fills the disk), 6 (path traversal through ``day``), 7 (forged removal events),
8 (permissions), 10 (retention vs protect, the two-file index write), 12 (heartbeats rewriting the registry)
and the decoded keys of dead letters.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from cryospy.cli.main import main as cli_main
from cryospy.common.objectkeys import device_hex, parse_clip_key
from cryospy.functions.bucket import Bucket
from cryospy.functions.devices.registry import DeviceRegistry
from cryospy.functions.index.records import ClipRecord
from cryospy.functions.retention import policy
from tests.conftest import PASSPHRASE
from tests.support import FakeCamera, cli_setup_browser, clip_place, wait_for
from tests.support import dashboard_login as login

pytestmark = pytest.mark.integration


def webhook(deployment, key: str, event: str = "s3:ObjectCreated:Put") -> int:
    """POST one MinIO-shaped record (key escaped as MinIO escapes it) with the webhook token."""
    escaped = urllib.parse.quote_plus(key, safe="")
    body = {"EventName": event, "Key": f"{deployment.bucket}/{escaped}", "Records": [{
        "eventName": event, "s3": {"bucket": {"name": deployment.bucket},
                                   "object": {"key": escaped, "size": 10, "sequencer": "17A0000000000001"}}}]}
    answer = requests.post(deployment.webhook_url, json=body, timeout=10,
                           headers={"Authorization": f"Bearer {deployment.webhook_token}"})
    return answer.status_code


# -- dead letters show decoded keys ---------------------------------------------------------------------
def test_dead_letters_show_the_decoded_key_in_the_cli_and_on_the_status_page(runtime, deployment, capsys):
    key = "clips/no body+here/2026/01/01/20260101T000000.000Z-7.cse"   # a space and a '+', as camera names have
    assert webhook(deployment, key) == 200
    wait_for(lambda: any(key in j.reason or "no body+here" in j.reason for j in runtime.queue.dead_letters()),
             what="the event dead-lettered")
    assert cli_main(["events", "dead", "--data-dir", str(deployment.data_dir)]) == 0
    printed = capsys.readouterr().out
    assert key in printed and "%2F" not in printed and "no+body%2Bhere" not in printed
    page = login(deployment.runtime_url).get(deployment.runtime_url + "/admin/status", timeout=10).text
    assert key in page and "clips%2Fno" not in page


def handled(deployment, handler: str, key: str) -> bool:
    """Whether the runtime's queue has finished every ``handler`` job about ``key``."""
    with sqlite3.connect(deployment.path("runtime", "jobs.sqlite")) as db:
        states = [s for (s,) in db.execute("SELECT state FROM jobs WHERE handler=? AND dedupe LIKE ?",
                                           (handler, f"%{key}%"))]
    return bool(states) and all(s in ("done", "dead") for s in states)


def exists(runtime, key: str) -> bool:
    return Bucket.of(runtime.services).head(key) is not None


def indexed(runtime, key: str) -> ClipRecord | None:
    ck = clip_place(runtime, key)
    return runtime.services.index.get_clip(ck.device_id, ck.day, key)


# -- finding 7: a forged "object removed" event -----------------------------------------------------------
def test_a_forged_removal_event_hides_nothing_and_the_reconciler_lifts_stale_tombstones(runtime, deployment,
                                                                                        tmp_path: Path):
    key = FakeCamera(deployment, "forged", tmp_path).upload()
    record = wait_for(lambda: indexed(runtime, key), what="indexed")
    assert webhook(deployment, key, "s3:ObjectRemoved:Delete") == 200
    wait_for(lambda: handled(deployment, "on_clip_removed", key), what="the forged event handled")
    after = indexed(runtime, key)
    assert not after.missing and after.sealed_size == record.sealed_size
    assert exists(runtime, key) and exists(runtime, record.thumb_key)
    # A tombstone left behind anyway (by an older runtime, or a removal racing a restore) over an object that
    # is in the bucket: the reconciler's pass queues the clip and ingest lifts the tombstone.
    runtime.services.index.update_clip("forged", record.day, key, missing=True,
                                       missing_since="2026-01-01T00:00:00Z", sealed_size=0, thumb_size=0,
                                       thumb_key=None)
    runtime.services.handler_client.delete_object(Bucket=deployment.bucket, Key=record.thumb_key)
    assert runtime.reconciler.run_once() >= 1
    lifted = wait_for(lambda: (r := indexed(runtime, key)) and not r.missing and r.thumb_key and r,
                      what="the tombstone lifted")
    assert lifted.sealed_size == record.sealed_size and exists(runtime, lifted.thumb_key)
    assert runtime.services.index.usage("forged").bytes == lifted.sealed_size + lifted.thumb_size


# -- finding 6: day goes into index paths ---------------------------------------------------------------
def test_day_playlist_refuses_paths_and_leaks_nothing_about_files(runtime, deployment, tmp_path: Path):
    probe = tmp_path / "probe.db"
    probe.write_bytes(b"not an index shard")
    device = "traverse"
    key = FakeCamera(deployment, device, tmp_path).upload()   # the device's shard folder must exist to climb out
    wait_for(lambda: runtime.services.index.has_clip(device, parse_clip_key(key).day, key), what="indexed")
    shard_dir = runtime.services.index.root / "clips" / device_hex(device)
    climb = "/".join([".."] * (len(shard_dir.resolve().parts) + 2))
    http = login(deployment.runtime_url)

    def day_playlist(day: str) -> tuple[int, str]:
        answer = http.get(f"{deployment.runtime_url}/media/day.m3u8",
                          params={"device": device, "day": day}, timeout=10)
        return answer.status_code, answer.text

    present = day_playlist(f"{climb}{tmp_path}/probe")      # the file exists
    absent = day_playlist(f"{climb}{tmp_path}/nothing")     # it does not
    assert present[0] == absent[0] == 400, (present, absent)
    assert "YYYY-MM-DD" in present[1]
    for bad in ("2026-01-01\x00", "2026-02-30", "2026-1-01", "２０２６-01-01", ""):
        assert day_playlist(bad)[0] == 400, bad
    assert day_playlist("2026-01-01")[0] == 404             # a real date with no clips: the ordinary answer
    assert not list(tmp_path.glob("*.db"))[1:] and probe.read_bytes() == b"not an index shard"


# -- finding 8: permissions ---------------------------------------------------------------------------
def _loose(root: Path) -> list[str]:
    """Everything below ``root`` that a group or other user could read, write or enter."""
    return sorted(f"{oct(p.lstat().st_mode & 0o777)} {p.relative_to(root)}" for p in [root, *root.rglob("*")]
                  if not p.is_symlink() and p.lstat().st_mode & 0o077)


def test_setup_and_every_serve_make_the_data_dir_private_and_minio_writes_private_files(tmp_path: Path,
                                                                                       minio_binary: Path):
    data = tmp_path / "private"
    data.mkdir(mode=0o755)
    data.chmod(0o755)                             # an existing directory, as `mkdir` under umask 022 leaves it
    env = {**os.environ, "CRYOSPY_MINIO_BIN": str(minio_binary)}
    made = cli_setup_browser(data, env)
    assert made.returncode == 0, made.stderr
    assert _loose(data) == []
    # A restore or a copy loosened it again, and left folders as a default umask makes them.
    data.chmod(0o755)
    for name in ("index", "site", "logs", "runtime"):
        (data / name).mkdir(mode=0o755, exist_ok=True)
        (data / name).chmod(0o755)
    errors = tmp_path / "serve.stderr"
    proc = subprocess.Popen([sys.executable, "-m", "cryospy", "serve", "--data-dir", str(data)], env=env,
                            stdout=subprocess.PIPE, stderr=errors.open("w"), stdin=subprocess.DEVNULL, text=True)
    try:
        lines: list[str] = []
        while not any("one-time setup code is in" in line for line in lines):   # MinIO is provisioned by now
            line = proc.stdout.readline()  # type: ignore[union-attr]
            assert line, "serve exited early:\n" + "".join(lines) + errors.read_text()
            lines.append(line)
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        assert _loose(data) == [], _loose(data)     # MinIO's IAM (the handler's secret), config, queue, our folders
        assert list((data / "minio" / "data" / ".minio.sys" / "config").rglob("*"))   # it did write them
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)


# -- finding 12: heartbeats ---------------------------------------------------------------------------
def test_heartbeats_never_rewrite_the_device_registry_and_survive_a_restart(runtime, deployment, tmp_path: Path):
    camera = FakeCamera(deployment, "chatty", tmp_path)
    registry = deployment.path("runtime", "devices.json")
    before = registry.stat()
    for n in range(64):
        camera.client.heartbeat({"agent_version": "t", "spool_depth": n, "source_state": "ok"})
    after = registry.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (before.st_ino, before.st_mtime_ns, before.st_size)
    shown = runtime.services.devices.get("chatty")
    assert shown.heartbeat["spool_depth"] == 63 and shown.last_seen
    runtime.services.devices.flush()                   # what a clean stop does: health reports written behind
    assert DeviceRegistry(registry).get("chatty").heartbeat["spool_depth"] == 63   # as the next start reads it
    assert registry.stat().st_mtime_ns == before.st_mtime_ns


# -- finding 10: retention against protect; the index's two files ------------------------------------------
def test_a_clip_protected_while_retention_runs_is_never_deleted_after_protect_answered(runtime, deployment,
                                                                                       tmp_path: Path):
    camera = FakeCamera(deployment, "race", tmp_path)
    camera.t0 = datetime.now(UTC) - timedelta(days=10)
    keys = [camera.upload() for _ in range(2)]
    for key in keys:
        wait_for(lambda k=key: indexed(runtime, k), what="indexed")
    api = {"Authorization": f"Bearer {deployment.admin_token}"}
    requests.patch(f"{deployment.runtime_url}/v1/admin/devices/race/settings", json={"retention_days": 7},
                   headers=api, timeout=10).raise_for_status()   # both clips are too old
    answers: list[requests.Response] = []
    index = runtime.services.index
    listed = index.oldest_unprotected

    def protect_after_listing(device_id=None):  # type: ignore[no-untyped-def]
        walk = listed(device_id)
        first = next(walk, None)
        # The pass has its first candidate; now the admin protects it, as a click on the day page would.
        click = threading.Thread(target=lambda: answers.append(requests.post(
            f"{deployment.runtime_url}/v1/admin/clips/protect", json={"key": keys[0], "protected": True},
            headers=api, timeout=30)))
        click.start()
        click.join(3)   # the old code answers at once; a protect that waits for the pass's lock resumes later
        if first is not None:
            yield first
        yield from walk

    index.oldest_unprotected = protect_after_listing   # type: ignore[method-assign]
    try:
        result = policy.enforce_device(runtime.services, "race")
    finally:
        del index.oldest_unprotected
    wait_for(lambda: answers, what="the protect click answered")
    assert keys[1] in result.deleted                 # the pass did run and delete
    if answers[0].status_code == 200:             # protected: it must still be there, in the bucket and the index
        assert exists(runtime, keys[0]) and indexed(runtime, keys[0]).protected
    else:                                          # deleted first: the admin is told, not shown a false "protected"
        assert answers[0].status_code == 404 and not exists(runtime, keys[0])


# -- finding 5: quarantine filling the disk -------------------------------------------------------------
def test_a_camera_cannot_fill_the_disk_through_quarantine(deployment, minio, tmp_path: Path):
    from cryospy.edge_agent.api_client import Retryable
    from cryospy.infra.runtime import Runtime, RuntimeOptions
    from cryospy.infra.server_config import ServerConfig

    mib = 1024 * 1024
    config = ServerConfig(quarantine_bytes=mib, slots_per_minute=6)
    rt = Runtime(deployment, RuntimeOptions(reconcile_seconds=3600), config)
    rt.unlock(PASSPHRASE)
    rt.start()
    try:
        rogue = FakeCamera(deployment, "rogue", tmp_path / "r")
        honest = FakeCamera(deployment, "honest", tmp_path / "h")
        junk = [camera_junk(rogue, n) for n in range(5)]          # 5 x 400 KiB that fail verification
        for key in junk:
            wait_for(lambda k=key: handled(deployment, "on_clip_created", k), what="junk handled")
        held = quarantined(rt, "rogue")
        assert sum(held.values()) <= mib and ("quarantine/" + junk[-1]) in held      # capped; the newest kept
        assert rt.services.index.usage("rogue").quarantine_bytes == sum(held.values())
        # The sixth slot is the last this minute: the rogue camera is slowed, the honest one is not.
        good = rogue.upload()
        with pytest.raises(Retryable, match="429"):     # "retry later": the agent keeps the clip
            rogue.reserve()
        honest_key = honest.upload()
        wait_for(lambda: indexed(rt, good) and indexed(rt, honest_key), what="both good clips indexed")
        # Quarantine counts against the device's quota, and goes before its footage does.
        requests.patch(f"{deployment.runtime_url}/v1/admin/devices/rogue/settings",
                       json={"storage_limit_megabytes": 1},
                       headers={"Authorization": f"Bearer {deployment.admin_token}"}, timeout=10).raise_for_status()
        policy.enforce_device(rt.services, "rogue")
        usage = rt.services.index.usage("rogue")
        assert usage.bytes + usage.quarantine_bytes <= mib and indexed(rt, good)
        assert sum(quarantined(rt, "rogue").values()) == usage.quarantine_bytes
    finally:
        rt.stop()


def camera_junk(camera: FakeCamera, n: int) -> str:
    """Upload 400 KiB that are not a sealed clip through a real slot, as a compromised camera would."""
    data = os.urandom(400 * 1024)
    _, _, stamp = camera.sealed()
    slot = camera.slot_for(data, stamp, camera.sequence - 1)
    confirm, camera.confirm = camera.confirm, True
    try:
        return camera.put(slot, data)
    finally:
        camera.confirm = confirm


def quarantined(runtime, device_id: str) -> dict[str, int]:
    token = runtime.services.devices.get(device_id).storage_token
    s3 = runtime.services.handler_client
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=runtime.services.bucket,
                                                           Prefix=f"quarantine/clips/{token}/")
    return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}
