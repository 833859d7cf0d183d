"""A burst of uploads while the runtime is killed with SIGKILL: nothing is lost, nothing is doubled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from cryospy.common.objectkeys import thumbnail_key
from cryospy.functions.index.store import TinyDBIndex
from cryospy.functions.keyvault import KeyVault
from cryospy.infra.bootstrap import root_identity
from tests.conftest import PASSPHRASE
from tests.support import FakeCamera, sample_clip, wait_for

pytestmark = pytest.mark.integration


def _serve(deployment) -> subprocess.Popen:
    env = {**os.environ, "CRYOSPY_PASSPHRASE": PASSPHRASE}
    proc = subprocess.Popen([sys.executable, "-m", "cryospy", "serve", "--data-dir", str(deployment.data_dir),
                             "--external-minio"], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)

    def up() -> bool:
        try:
            return urllib.request.urlopen(f"{deployment.runtime_url}/v1/health", timeout=2).status == 200
        except OSError:
            assert proc.poll() is None, "the runtime exited"
            return False

    wait_for(up, timeout=60, what="the runtime to answer")
    return proc


def test_burst_with_sigkill_in_the_middle(deployment, minio, tmp_path: Path):
    proc = _serve(deployment)
    try:
        camera = FakeCamera(deployment, "burst", tmp_path)
        camera.confirm = False        # the runtime dies mid-burst: MinIO's queue_dir must bring everything in
        clip = sample_clip()
        slots = [camera.reserve(clip) for _ in range(50)]
        uploaded: list[str] = []
        lock = threading.Lock()

        def upload(batch):
            for slot, data in batch:
                camera.put(slot, data)
                with lock:
                    uploaded.append(slot.key)

        threads = [threading.Thread(target=upload, args=(slots[i::4],)) for i in range(4)]
        for t in threads:
            t.start()
        wait_for(lambda: len(uploaded) >= 20, what="the first 20 uploads")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        for t in threads:
            t.join()
        assert len(uploaded) == 50        # MinIO took every upload; its queue_dir holds the events
        proc = _serve(deployment)
        vault = KeyVault(deployment.keys_path)
        vault.unlock(PASSPHRASE)
        index = TinyDBIndex(deployment.path("index"), vault.index_key)   # read-only look from the test
        day = "-".join(slots[0][0].key.split("/")[2:5])

        def all_indexed() -> list[dict]:
            clips = index.clips_for_day("burst", day)
            return clips if len(clips) == 50 else []

        clips = wait_for(all_indexed, timeout=180, what="all 50 clips indexed")
        assert sorted(c.key for c in clips) == sorted(s.key for s, _ in slots)   # once each
        assert [c.sequence for c in clips] == list(range(50))
        token = slots[0][0].key.split("/")[1]                                      # burst's storage token
        thumbs = _bucket_keys(deployment, f"derived/thumbs/clips/{token}/")
        assert thumbs == {thumbnail_key(s.key) for s, _ in slots}                 # no lost thumbnail
        assert all(c.thumb_key for c in clips)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def _bucket_keys(deployment, prefix: str) -> set[str]:
    s3 = root_identity(deployment).client()
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=deployment.bucket, Prefix=prefix)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}
