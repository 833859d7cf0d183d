"""Two runtimes share one PostgreSQL and one MinIO (issue 18 item 4, docs/scale-out.md): 8 cameras upload 200
clips at once, one runtime is killed with SIGKILL mid-burst and comes back (as systemd's Restart= does), and
every clip is indexed once with its thumbnail in MinIO, no motion mail goes out twice and nothing is
dead-lettered. Real MinIO (one webhook target per runtime), real PostgreSQL, real SMTP, real processes."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from cryospy.common.objectkeys import thumbnail_key
from cryospy.edge_agent.api_client import ApiClient, Retryable
from cryospy.infra.bootstrap import root_identity
from cryospy.infra.deployment import load
from cryospy.infra.minio_server import MinioServer, free_port, webhook_targets
from cryospy.infra.runtime_instances import add_runtime
from cryospy.infra.stores import runtime_name
from tests.conftest import new_deployment
from tests.runtime_process import RuntimeProcess
from tests.smtp_sink import SmtpSink
from tests.support import FakeCamera, clip_with_meta, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CAMERAS, CLIPS_EACH = 8, 25
RECIPIENT = "owner@test.invalid"


def test_two_runtimes_share_a_burst_and_survive_a_sigkill(postgres, minio_binary: Path, tmp_path: Path):
    url = postgres.fresh_url()
    main = new_deployment(tmp_path / "runtime-a")
    (main.data_dir / "server.json").write_text(json.dumps({"database_url": url}))
    second = add_runtime(main, tmp_path / "runtime-b", free_port())
    main = load(main.data_dir)
    assert [name for name, _ in webhook_targets(main)] == ["CRYOSPY", "CRYOSPY2"]
    payload = clip_with_meta(motion=True)
    with MinioServer(main, binary=minio_binary), SmtpSink() as smtp:
        mail = smtp.settings()
        a, b = RuntimeProcess(main, mail, RECIPIENT), RuntimeProcess(second, mail, RECIPIENT)
        try:
            cameras = [FakeCamera(main, f"cam {i}", tmp_path / f"cam{i}") for i in range(CAMERAS)]
            for camera in cameras[CAMERAS // 2:]:   # half of them talk to runtime B
                camera.client = ApiClient(replace(camera.config, server_url=second.runtime_url))
            uploaded: list[str] = []
            b_down = threading.Event()

            def record(camera: FakeCamera) -> None:
                for n in range(CLIPS_EACH):
                    key, data, stamp = camera.sealed(payload)
                    if n == CLIPS_EACH // 3 and camera is cameras[-1]:
                        b_down.set()
                        b.kill()   # mid-burst, with uploads and jobs in flight on B
                    stored, tries = False, 0
                    while True:
                        try:
                            if not stored:
                                slot = camera.slot_for(data, stamp, camera.sequence - 1)
                                assert camera.client.put(slot, _spool(camera, key, data)) == 200
                                stored = True
                            camera.client.confirm(key)
                            break
                        except Retryable:
                            tries += 1
                            assert tries < 20, "a runtime kept refusing a camera"
                            if b_down.is_set() and camera.client.base != main.runtime_url:
                                # A load balancer would send the camera to the other runtime: do that (and
                                # confirm there a clip B's slot already stored).
                                camera.client = ApiClient(replace(camera.config, server_url=main.runtime_url))
                            else:
                                time.sleep(0.2)   # as the agent does, after a pause
                    uploaded.append(key)

            with ThreadPoolExecutor(CAMERAS) as pool:
                for result in [pool.submit(record, c) for c in cameras]:
                    result.result()
            b = RuntimeProcess(second, mail, RECIPIENT)   # restarted, as systemd would: it takes its leased jobs back
            assert len(set(uploaded)) == CAMERAS * CLIPS_EACH

            def settled() -> bool:
                with psycopg.connect(url) as conn:
                    states = dict(conn.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())
                    return states.get("pending", 0) + states.get("running", 0) == 0 and conn.execute(
                        "SELECT count(*) FROM index_clips").fetchone()[0] >= CAMERAS * CLIPS_EACH
            wait_for(settled, timeout=300, what="every clip indexed and the queue drained")

            with psycopg.connect(url) as conn:
                assert conn.execute("SELECT count(*) FROM index_clips").fetchone()[0] == CAMERAS * CLIPS_EACH
                assert conn.execute("SELECT sum(clips) FROM index_devices").fetchone()[0] == CAMERAS * CLIPS_EACH
                assert conn.execute("SELECT count(*) FROM jobs WHERE state = 'dead'").fetchone()[0] == 0
                owners = {r[0] for r in conn.execute("SELECT DISTINCT owner FROM jobs WHERE state = 'done'")}
            assert {runtime_name(main), runtime_name(second)} <= owners   # both runtimes did part of the work
            s3 = root_identity(main).client()
            thumbs = {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
                Bucket=main.bucket, Prefix="derived/thumbs/") for o in page.get("Contents", [])}
            assert {thumbnail_key(k) for k in uploaded} <= thumbs
            motion = [m for m in smtp.messages if m["Subject"] == "CryoSpy motion detected"]
            senders = [line for m in motion for line in m.get_content().splitlines() if line.startswith("Device:")]
            assert len(senders) == len(set(senders)) and len(senders) >= CAMERAS - 1, senders
        finally:
            a.stop()
            b.stop()


def _spool(camera: FakeCamera, key: str, data: bytes) -> Path:
    folder = Path(camera.config.spool_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{abs(hash(key))}.cse"
    path.write_bytes(data)
    return path
