"""A deployment on 4 drives (`cryospy setup --drive` ×4, MinIO's default EC:2) loses one while cameras record.

The drive's folder is wiped (everything in it removed, as a replaced disk comes back empty) while two cameras
keep uploading. Proven: no upload fails for good (a failed try is retried, as the agent's spool does), every
clip is still readable and verifies (signatures, content, an unbroken chain per camera), the runtime indexed
every clip, MinIO healed the drive back into service (it holds the bucket again), and the admin's status page
showed the drive out of service or healing at some point and online afterwards.

The four folders share this machine's one disk, hence ``minio_drives_share_disk`` (MinIO refuses drives on the
system disk otherwise); a wiped folder is the same event for MinIO as a replaced disk.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from cryospy.cli.setup_cmd import setup
from cryospy.infra.minio_server import MinioServer, free_port
from tests.conftest import FAST_SCRYPT_N, PASSPHRASE
from tests.storage_faults import Recording, StatusWatch, verify_bucket_copy, wait_all_indexed
from tests.support import FakeCamera, dashboard_login, unlocked_runtime, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def wipe(folder: Path) -> None:
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def test_a_wiped_drive_loses_no_clip_and_heals(tmp_path: Path, minio_binary: Path) -> None:
    drives = [tmp_path / "disks" / f"disk{i}" for i in range(1, 5)]
    host = "127.0.0.1"
    dep = setup(tmp_path / "deployment", PASSPHRASE, scrypt_n=FAST_SCRYPT_N, tls=False,
                runtime_port=free_port(host), minio_port=free_port(host), minio_console_port=free_port(host),
                minio_drives=tuple(str(d) for d in drives), minio_drives_share_disk=True)
    victim = drives[2]
    started = time.monotonic()
    with MinioServer(dep, binary=minio_binary), unlocked_runtime(dep) as rt:
        cameras = [FakeCamera(dep, f"cam-{i}", tmp_path / f"cam-{i}") for i in range(2)]
        http = dashboard_login(dep.dashboard_url)
        with StatusWatch(http, dep.dashboard_url + "/admin/status") as status:
            assert wait_for(lambda: status.labels(str(victim)), what="the status page listing the drives")
            assert set(status.labels(str(victim))) == {"online"}
            with Recording(cameras) as recording:
                recording.wait_for_clips(10)
                before = len(recording.tally.uploaded)
                wipe(victim)
                wiped_at = time.monotonic()
                wait_for(lambda: any(label != "online" for label in status.labels(str(victim))), timeout=60,
                         what="the status page showing the wiped drive out of service or healing")
                wait_for(lambda: status.seen[str(victim)][-1][1] == "online"
                         and status.seen[str(victim)][-1][2].startswith("healed"), timeout=120,
                         what="MinIO healing the drive and the status page showing it online and healed")
                healed_after = time.monotonic() - wiped_at
                recording.wait_for_clips(len(recording.tally.uploaded) + 6)   # still recording after the heal
        tally = recording.tally
        print(f"\n4 drives, one wiped after {before} clips: {tally.summary()}; healed {healed_after:.1f}s after the "
              f"wipe; drive states shown: {status.seen[str(victim)]}; {status.pages} status pages; "
              f"{time.monotonic() - started:.1f}s in all")
        assert tally.failed_for_good == 0, tally.errors[-5:]
        assert (victim / dep.bucket).is_dir(), "the healed drive holds the bucket again"
        verify_bucket_copy(rt.services.handler_client, dep.bucket, tally.uploaded, cameras, tmp_path / "copy")
        wait_all_indexed(rt, {f"cam-{i}": cam for i, cam in enumerate(cameras)})
