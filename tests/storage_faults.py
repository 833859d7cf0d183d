"""Helpers for the storage fault tests (a wiped drive, a stopped MinIO node): cameras that keep uploading
while the fault happens, retrying as the agent's spool does, and a check that every clip is still there.

"No clip lost" is checked the strong way: every uploaded object is read back from MinIO and `cryospy verify`'s
checks run over the copies (header signature, the device-signed content trailer, and each device's chain,
which names any sequence gap), then the runtime's index must list every key.
"""

from __future__ import annotations

import hashlib
import html
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryospy.cli.verify import verify_path
from cryospy.edge_agent.api_client import Retryable
from cryospy.edge_agent.errors import UploadError
from tests.support import FakeCamera, wait_for

RETRY_SECONDS = 0.3     # the agent's spool retries too (upload_retry_minutes); short here to keep the test short
MAX_TRIES = 200         # ~1 min of retries per clip before the upload counts as failed for good


@dataclass
class UploadTally:
    uploaded: list[str] = field(default_factory=list)
    attempts: int = 0
    failed_attempts: int = 0
    failed_for_good: int = 0
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        ok = self.attempts - self.failed_attempts
        return (f"{len(self.uploaded)} clips uploaded, {ok}/{self.attempts} attempts succeeded first time or on "
                f"retry ({self.failed_attempts} failed and were retried), {self.failed_for_good} failed for good")


def upload_with_retries(cam: FakeCamera, tally: UploadTally) -> None:
    """Seal one clip and upload it as the agent would: ask for a slot, PUT, confirm; retry what fails."""
    key, data, stamp = cam.sealed()
    path = Path(cam.config.spool_dir) / f"upload-{hashlib.sha256(key.encode()).hexdigest()[:16]}.cse"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    for _ in range(MAX_TRIES):
        tally.attempts += 1
        try:
            slot = cam.slot_for(data, stamp, cam.sequence - 1)
            status = cam.client.put(slot, path)          # 412: an earlier try got there (as for the agent)
            assert status in (200, 412), status
            cam.client.confirm(key)
        except (OSError, Retryable, UploadError) as exc:
            tally.failed_attempts += 1
            tally.errors.append(f"{type(exc).__name__}: {exc}"[:200])
            time.sleep(RETRY_SECONDS)
            continue
        tally.uploaded.append(key)
        return
    tally.failed_for_good += 1


class Recording:
    """Cameras uploading clips on a thread until stopped: what the fault tests break things under."""

    def __init__(self, cameras: list[FakeCamera], pause: float = 0.05):
        self.cameras = cameras
        self.tally = UploadTally()
        self.pause = pause
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="recording", daemon=True)

    def __enter__(self) -> Recording:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            for cam in self.cameras:
                upload_with_retries(cam, self.tally)
            time.sleep(self.pause)

    def wait_for_clips(self, count: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.tally.uploaded) < count:
            assert time.monotonic() < deadline, f"only {self.tally.summary()} within {timeout:.0f}s"
            assert self._thread.is_alive(), "the recording thread died"
            time.sleep(0.1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(120)


def verify_bucket_copy(s3: Any, bucket: str, keys: list[str], cameras: list[FakeCamera], folder: Path) -> None:
    """Read every key back from MinIO and run `cryospy verify`'s checks over the copies: all there, all intact,
    every camera's chain without a gap."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    for key in keys:
        target = folder / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    device_keys = {}
    for cam in cameras:
        signer: Ed25519PrivateKey = cam.signer
        device_keys[cam.storage_token] = signer.public_key()
    verdict = verify_path(folder, device_keys)
    assert verdict.problems == [], verdict.problems
    assert verdict.clips == len(keys) and verdict.devices == len(cameras)


def wait_all_indexed(rt: Any, cameras: dict[str, FakeCamera]) -> None:
    """Every clip each camera sealed is in the runtime's index: sequences exactly 0..n-1 per device.

    Generous on time: a job whose MinIO call met the stopped node is retried with backoff (1, 2, 4, 8 s, each
    attempt with boto's own retries), which on a loaded 2-core machine can take well over 30 s. What is checked
    is that nothing is lost, not how fast it heals."""
    for device, cam in cameras.items():
        wait_for(lambda cam=cam, device=device: sorted(
            c.sequence for day in rt.services.index.days(device)
            for c in rt.services.index.clips_for_day(device, day)) == list(range(cam.sequence)),
            timeout=120, what=f"every clip of {device} indexed")


DRIVE_ROW = re.compile(r'<tr data-drive="([^"]+)">.*?data-state="([^"]*)">([^<]*)</td>.*?class="drive-heal">(.*?)</td>',
                       re.S)


class StatusWatch:
    """Polls the dashboard's status page (as the admin, over HTTP) and keeps every drive state it rendered."""

    def __init__(self, http: Any, url: str):
        self.http = http
        self.url = url
        self.seen: dict[str, list[tuple[str, str, str]]] = {}   # drive path -> [(MinIO state, label, heal text)]
        self.pages = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="status-watch", daemon=True)

    def __enter__(self) -> StatusWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            time.sleep(0.2)

    def poll(self) -> str:
        page = self.http.get(self.url, timeout=30)
        assert page.status_code == 200, page.status_code
        self.pages += 1
        for path, state, label, heal in DRIVE_ROW.findall(page.text):
            row = (state, label.strip(), re.sub(r"<[^>]+>|\s+", " ", heal).strip())
            history = self.seen.setdefault(html.unescape(path), [])
            if not history or history[-1] != row:
                history.append(row)
        return page.text

    def labels(self, path: str) -> list[str]:
        return [label for _, label, _ in self.seen.get(path, [])]
