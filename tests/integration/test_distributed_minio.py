"""CryoSpy on a distributed MinIO: 4 nodes with 2 drives each (one erasure set of 8, MinIO's default EC:4) on
loopback ports behind HAProxy, the one address the deployment knows (`cryospy setup --external-minio`).

The runtime starts no MinIO of its own; it provisions the cluster through the balancer (bucket, identities,
notifications) and every node delivers events to it. One node is stopped with SIGTERM while two cameras
record. Proven: no upload fails for good (tries that hit the dying node are retried, through the balancer),
uploads go on through the balancer with the node gone, every clip is readable and verifies, the runtime
indexed every clip, and the status page names the stopped node and its drives as offline.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cryospy.cli.setup_cmd import setup
from cryospy.infra.minio_server import free_port
from tests.conftest import FAST_SCRYPT_N, PASSPHRASE
from tests.minio_cluster import HOST, Balancer, MinioCluster
from tests.storage_faults import Recording, verify_bucket_copy, wait_all_indexed
from tests.support import FakeCamera, dashboard_login, unlocked_runtime, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_stopped_node_loses_no_clip_and_recording_goes_on(tmp_path: Path, minio_binary: Path) -> None:
    started = time.monotonic()
    balancer_port = free_port(HOST)
    dep = setup(tmp_path / "deployment", PASSPHRASE, scrypt_n=FAST_SCRYPT_N, tls=False,
                runtime_port=free_port(HOST), minio_port=free_port(HOST), minio_console_port=free_port(HOST),
                minio_internal_url=f"http://{HOST}:{balancer_port}", minio_external=True)
    cluster = MinioCluster(minio_binary, tmp_path / "cluster", dep)
    balancer = Balancer(cluster.addresses, tmp_path / "balancer", balancer_port)
    try:
        cluster.start()
        balancer.start()
        with unlocked_runtime(dep) as rt:
            cameras = [FakeCamera(dep, f"cam-{i}", tmp_path / f"cam-{i}") for i in range(2)]
            with Recording(cameras) as recording:
                recording.wait_for_clips(10)
                before = len(recording.tally.uploaded)
                cluster.stop_node(1)
                stopped_at = time.monotonic()
                recording.wait_for_clips(before + 20)   # recording goes on through the balancer
                after_stop = time.monotonic() - stopped_at
            tally = recording.tally
            http = dashboard_login(dep.dashboard_url)
            pages: list[str] = []

            def node_shown_offline() -> bool:
                # MinIO's admin info needs a moment to give up on the stopped peer; the page says so meanwhile.
                pages.append(http.get(dep.dashboard_url + "/admin/status", timeout=30).text)
                page = pages[-1]
                return ('class="nodes-offline' in page
                        and cluster.addresses[1] in page.split('class="nodes-offline')[1].split("</p>")[0]
                        and page.count('data-state="offline"') == 2   # the stopped node's two drives
                        and "6 of 8 drives online" in page)

            wait_for(node_shown_offline, timeout=60, what="the status page naming the stopped node")
            print(f"\n4 nodes x 2 drives, node 2 stopped after {before} clips: {tally.summary()}; 20 more clips "
                  f"{after_stop:.1f}s after the stop; status page showed it on poll {len(pages)}; "
                  f"{time.monotonic() - started:.1f}s in all")
            assert tally.failed_for_good == 0, tally.errors[-5:]
            verify_bucket_copy(rt.services.handler_client, dep.bucket, tally.uploaded, cameras, tmp_path / "copy")
            wait_all_indexed(rt, {f"cam-{i}": cam for i, cam in enumerate(cameras)})
    finally:
        balancer.stop()
        cluster.stop()
