"""Live parts on the real thing: a real agent with a synthetic camera, the real runtime and MinIO.

On demand (nothing while nobody watches, parts within 2 s of a viewer, none after the grace period), ten viewers
cost the agent what one does, parts leave the bucket after their lifetime, quota, retention, the chain check and
the index never see them, the server's disks hold no plaintext video while live runs, and a part of another
device or a forged one is refused.
"""

from __future__ import annotations

import io
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from cryospy.cli.devices import create_device
from cryospy.common.keys import generate_device_signing_key
from cryospy.common.liveparts import LIVE_CONTENT_TYPE, LIVE_PREFIX, NO_CHAIN, parse_live_part_key
from cryospy.common.sealed import seal_bytes
from cryospy.functions.clips import chain_check
from cryospy.functions.clips.mp4 import parse_mp4
from cryospy.functions.live.parts import PART_LIFETIME_S
from cryospy.functions.retention import policy
from cryospy.infra.bootstrap import root_identity
from cryospy.infra.live_sweep import RULE_ID, LiveSweeper
from tests.live_support import ask, live_agent, live_objects
from tests.support import FakeCamera, RunningAgent, dashboard_login, sample_clip, wait_for

pytestmark = pytest.mark.integration

# What plaintext video or pictures look like: an MP4 box sequence or a JPEG start. Sealed bytes are random, so
# these (8 and more bytes) turn up by chance about once in 2^64 places.
PLAINTEXT = re.compile(rb"ftyp(isom|iso[2-9]|mp4[12]|avc1|dash)|moof\x00\x00\x00\x10mfhd"
                       rb"|\xff\xd8\xff[\xe0\xe1]..(JFIF|Exif)", re.S)


def plaintext_on_disk(root: Path) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as fh:
                while block := fh.read(8 << 20):
                    if PLAINTEXT.search(block):
                        found.append(str(path.relative_to(root)))
                        break
    return found


def hub_parts(runtime, device: str) -> int:  # type: ignore[no-untyped-def]
    return len(runtime.services.live.parts(device))


def test_parts_only_while_watched_ten_viewers_cost_one_and_nothing_of_them_is_evidence(runtime, deployment,
                                                                                      tmp_path: Path):
    device = "live-porch"
    base = deployment.runtime_url
    runtime.services.live.grace_s = 3.0
    cam = live_agent(deployment, device, tmp_path)
    try:
        # Nobody watches for 30 s: no part is made, sealed or sent; the long-poll is all there is.
        time.sleep(30)
        assert cam.agent.live_parts.sent == 0 and cam.agent.live_parts.exchanges == 0
        assert live_objects(runtime, device) == [] and hub_parts(runtime, device) == 0
        assert cam.agent.live_watch.polls <= 3

        # A viewer opens the page: parts within 2 s.
        http = dashboard_login(base)
        opened = time.monotonic()
        ask(http, base, device)
        wait_for(lambda: hub_parts(runtime, device) > 0, timeout=2.0, what="the first live part within 2 s")
        first_after = time.monotonic() - opened

        # One viewer, then ten, for 8 s each: the agent makes the same parts and the same requests.
        def watch(sessions: list[requests.Session], seconds: float) -> tuple[int, int, int]:
            before = (cam.agent.live_parts.sent, cam.agent.live_parts.exchanges, cam.agent.live_watch.polls)
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                for s in sessions:
                    ask(s, base, device)
                time.sleep(0.5)
            after = (cam.agent.live_parts.sent, cam.agent.live_parts.exchanges, cam.agent.live_watch.polls)
            return after[0] - before[0], after[1] - before[1], after[2] - before[2]

        one = watch([http], 8)
        ten = watch([http] + [dashboard_login(base) for _ in range(9)], 8)
        assert abs(one[0] - ten[0]) <= 1 and abs(one[1] - ten[1]) <= 1 and ten[2] == one[2] == 0, (one, ten)
        assert 6 <= one[0] <= 10, one           # a 1 s fragment per second

        # While live runs: nothing plaintext on the server's disks (MinIO's drive, the index, the site, queues).
        assert plaintext_on_disk(deployment.data_dir) == []
        keys = live_objects(runtime, device)
        token = runtime.services.devices.get(device).storage_token      # parts name no camera, as clips do
        assert keys and all(parse_live_part_key(k).owner == token and device not in k for k in keys)

        # The viewer leaves: parts stop within the grace period (plus the fragment being sent).
        left = time.monotonic()
        wait_for(lambda: not cam.agent.live_watch.watched.is_set(), timeout=runtime.services.live.grace_s + 2,
                 what="the agent told nobody watches")
        stopped_after = time.monotonic() - left
        sent = cam.agent.live_parts.sent
        time.sleep(3)
        assert cam.agent.live_parts.sent <= sent + 1

        # Not evidence: the index, quota, retention and the chain check see only clips.
        wait_for(lambda: runtime.services.index.days(device), timeout=60, what="a clip indexed")
        index = runtime.services.index
        clips = [c for d in index.days(device) for c in index.clips_for_day(device, d)]
        assert clips and all(c.key.startswith("clips/") for c in clips)
        assert runtime.services.index.usage(device).bytes == sum(c.stored_bytes for c in clips)
        policy.enforce_device(runtime.services, device)
        assert set(keys) <= set(live_objects(runtime, device))        # retention never deletes a part
        assert not [g for g in chain_check.audit_gaps(runtime.services) if g.get("device_id") == device]
        # The reconciler queues no part: a pass finds nothing to queue once the clip the agent was uploading
        # meanwhile is indexed (a part would be queued again by every pass).
        wait_for(lambda: runtime.reconciler.run_once() == 0, timeout=60, what="a reconcile pass that queues nothing")
    finally:
        cam.stop()
    assert cam.error is None
    print(f"\nfirst part {first_after:.2f} s after the viewer; agent told {stopped_after:.2f} s after the viewer left "
          f"(grace {runtime.services.live.grace_s:g} s); one viewer {one}, ten {ten} (parts, exchanges, polls)")

    # Parts leave after their lifetime: the runtime's sweep (every 30 s) and a 1-day lifecycle rule as backstop.
    rules = root_identity(deployment).client().get_bucket_lifecycle_configuration(Bucket=runtime.services.bucket)
    assert {"ID": RULE_ID, "Status": "Enabled", "Filter": {"Prefix": LIVE_PREFIX}, "Expiration": {"Days": 1}} in [
        {k: r[k] for k in ("ID", "Status", "Filter", "Expiration")} for r in rules["Rules"]]
    s3 = lambda: runtime.services.handler_client  # noqa: E731
    assert LiveSweeper(s3, runtime.services.bucket).sweep_once() == 0     # not yet
    later = LiveSweeper(s3, runtime.services.bucket,
                        clock=lambda: datetime.now(UTC) + timedelta(seconds=PART_LIFETIME_S + 1))
    assert later.sweep_once() >= len(keys)
    assert live_objects(runtime) == []
    assert runtime.services.index.days(device) and clips[0].key in {  # clips are untouched
        c.key for d in runtime.services.index.days(device) for c in runtime.services.index.clips_for_day(device, d)}


def test_parts_of_another_device_or_forged_are_refused(runtime, deployment, tmp_path: Path):
    a, b = FakeCamera(deployment, "live-a", tmp_path / "a"), FakeCamera(deployment, "live-b", tmp_path / "b")
    clip = sample_clip(seconds=2.0)
    info = parse_mp4(lambda o, n: clip[o:o + n], len(clip))
    frag = info.fragments[0]
    plain = clip[:info.init_size] + clip[frag.offset:frag.offset + frag.size]

    def slots(cam: FakeCamera, n: int) -> list[dict]:  # type: ignore[type-arg]
        runtime.services.live.viewer_seen(cam.config.client_id)
        status, answer = cam.client.call("POST", "/v1/device/live/parts", {"slots": n})
        assert status == 200 and answer["watch"] is True, answer
        return answer["slots"]

    def sealed(cam: FakeCamera, key: str, signer=None, content_type: str = LIVE_CONTENT_TYPE) -> bytes:  # type: ignore[no-untyped-def]
        owner = parse_live_part_key(key).owner             # the header names the device as the key does
        data, _ = seal_bytes(plain, object_key=key, device_id=owner, sequence=0,
                             captured_at=datetime.now(UTC), content_type=content_type, prev_hash=NO_CHAIN,
                             recipient=cam.recipient, signer=signer or cam.signer)
        return data

    def put(cam: FakeCamera, slot: dict, data: bytes) -> int:  # type: ignore[type-arg]
        return cam.client.put_bytes(slot["url"], slot["headers"], data)

    def report(cam: FakeCamera, key: str) -> dict:  # type: ignore[type-arg]
        status, answer = cam.client.call("POST", "/v1/device/live/parts", {"uploaded": [key]})
        assert status == 200, answer
        return answer

    genuine, forged, clip_typed, foreign = slots(a, 4)
    b_slot = slots(b, 1)[0]
    token_a = runtime.services.devices.get("live-a").storage_token
    assert all(parse_live_part_key(s["key"]).owner == token_a for s in (genuine, forged, clip_typed, foreign))
    assert put(a, genuine, sealed(a, genuine["key"])) == 200
    assert report(a, genuine["key"])["accepted"] == [genuine["key"]]

    # Sealed by another key (someone with bucket access, or a stolen slot): refused and deleted.
    assert put(a, forged, sealed(a, forged["key"], signer=generate_device_signing_key())) == 200
    assert "not a genuine live part" in report(a, forged["key"])["refused"][forged["key"]]
    # Genuinely the device's, but a clip, not a part: refused.
    assert put(a, clip_typed, sealed(a, clip_typed["key"], content_type="video/mp4")) == 200
    assert "not a genuine live part" in report(a, clip_typed["key"])["refused"][clip_typed["key"]]
    # Device B's part reported by A: refused, and B's object is not touched.
    assert put(b, b_slot, sealed(b, b_slot["key"])) == 200
    assert report(a, b_slot["key"])["refused"][b_slot["key"]] == "that key belongs to another device"
    # A's slot cannot write under B's prefix: the key is in the signature.
    moved = foreign["url"].replace(foreign["key"], b_slot["key"].replace(".cse", "0.cse"))
    assert moved != foreign["url"]
    assert a.client.put_bytes(moved, foreign["headers"], sealed(a, foreign["key"])) == 403

    assert live_objects(runtime, "live-a") == [genuine["key"]]
    assert live_objects(runtime, "live-b") == [b_slot["key"]]
    assert [p.key for p in runtime.services.live.parts("live-a")] == [genuine["key"]]
    assert runtime.services.live.parts("live-b") == []

    # Only what the hub accepted is served; the playlist names the genuine part alone.
    http = dashboard_login(deployment.runtime_url)
    playlist = http.get(f"{deployment.runtime_url}/media/live-parts.m3u8", params={"device": "live-a"}, timeout=10)
    assert playlist.status_code == 200 and quote(genuine["key"], safe="") in playlist.text
    for key in (forged["key"], b_slot["key"]):
        answer = http.get(f"{deployment.runtime_url}/media/live-part.mp4",
                          params={"device": "live-a", "key": key, "p": "frag"}, timeout=10)
        assert answer.status_code == 404
    frag_answer = http.get(f"{deployment.runtime_url}/media/live-part.mp4",
                           params={"device": "live-a", "key": genuine["key"], "p": "frag"}, timeout=10)
    assert frag_answer.content == plain[info.init_size:]
    assert io.BytesIO(frag_answer.content).read(8)[4:] == b"moof"



def test_an_rtsp_camera_in_passthrough_sends_parts_of_its_own_stream(runtime, deployment, rtsp_camera, tmp_path):
    """The passthrough path (ffmpeg -c copy through the segment muxer) flushes each fragment as it closes, so
    its parts arrive as promptly as the encoder's: the first within 2 s of the viewer, then one per GOP."""
    device = "live-rtsp"
    path = tmp_path / f"{device}.json"
    create_device(deployment, device, path, {"camera_device": rtsp_camera.url("main"), "clip_seconds": 10,
                                             "settings_sync_seconds": 5, "server_timeout_seconds": 5,
                                             "upload_retry_minutes": 0.05, "temp_dir": str(tmp_path)})
    cam = RunningAgent(path)
    try:
        wait_for(lambda: cam.agent.recorder.mode == "passthrough" and list(tmp_path.rglob("session-*/clip-*.mp4")),
                 timeout=30, what="passthrough writing a clip")
        time.sleep(3)
        http = dashboard_login(deployment.runtime_url)
        ask(http, deployment.runtime_url, device)
        wait_for(lambda: hub_parts(runtime, device) > 0, timeout=2.0, what="the first live part within 2 s")
        end = time.monotonic() + 8
        while time.monotonic() < end:
            ask(http, deployment.runtime_url, device)
            time.sleep(0.5)
        parts = runtime.services.live.parts(device)
        behind = (datetime.now(UTC) - parts[-1].captured_at).total_seconds()
    finally:
        cam.stop()
    assert cam.error is None
    assert len(parts) >= 4 and all(p.codec.startswith("avc1") and p.duration_s > 0 for p in parts)
    assert [p.media_sequence for p in parts] == list(range(parts[0].media_sequence, parts[-1].media_sequence + 1))
    assert behind < 6, behind
