"""A runtime that dies mid-job and never comes back loses nothing (issue 18 item 4, docs/scale-out.md "A runtime
that dies"): two runtimes on one PostgreSQL and one MinIO with a 5-second job lease; runtime B stalls in the
middle of its jobs (one before its work, one after indexing the clip but before recording the job done),
keeps them past several leases by renewing, and is SIGKILLed while the jobs table shows it owning them. It is
never restarted. Runtime A takes the jobs over and finishes everything: each clip indexed once, every
thumbnail in MinIO, nothing dead-lettered, and A's status page shows B silent. Real MinIO, real PostgreSQL,
real processes."""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from cryospy.common.objectkeys import thumbnail_key
from cryospy.infra.bootstrap import root_identity
from cryospy.infra.deployment import load
from cryospy.infra.minio_server import MinioServer, free_port
from cryospy.infra.runtime_instances import add_runtime
from cryospy.infra.stores import runtime_name
from tests.conftest import new_deployment
from tests.runtime_process import RuntimeProcess
from tests.support import FakeCamera, clip_with_meta, dashboard_login, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CAMERAS, CLIPS_EACH = 4, 8
LEASE_S = 5


def test_a_runtime_killed_mid_job_and_never_restarted_loses_nothing(postgres, minio_binary: Path, tmp_path: Path):
    url = postgres.fresh_url()
    main = new_deployment(tmp_path / "runtime-a")
    (main.data_dir / "server.json").write_text(json.dumps({"database_url": url, "job_lease_seconds": LEASE_S}))
    second = add_runtime(main, tmp_path / "runtime-b", free_port())
    main = load(main.data_dir)
    name_a, name_b = runtime_name(main), runtime_name(second)
    payload = clip_with_meta(motion=True)

    def sql(query: str, *params: object) -> list[tuple]:
        with psycopg.connect(url) as conn:
            return conn.execute(query, params).fetchall()

    with MinioServer(main, binary=minio_binary):
        a = RuntimeProcess(main)
        b = RuntimeProcess(second, stall=True)   # its two workers stall mid-job; its heartbeat goes on
        try:
            cameras = [FakeCamera(main, f"cam {i}", tmp_path / f"cam{i}") for i in range(CAMERAS)]
            with ThreadPoolExecutor(CAMERAS) as pool:
                uploads = [pool.submit(lambda c: [c.upload(payload) for _ in range(CLIPS_EACH)], c)
                           for c in cameras]
                uploaded = [key for result in uploads for key in result.result()]
            def running_on_b() -> list[tuple]:
                return sql("SELECT id, updated FROM jobs WHERE state = 'running' AND owner = %s", name_b)
            held = wait_for(lambda: rows if len(rows := running_on_b()) == 2 else None, timeout=120,
                            what="runtime B owning two running jobs (one per worker)")
            held_ids = {job_id for job_id, _ in held}
            # B renews: its jobs stay its own past twice the lease (by the database's clock) while it lives.
            claimed = max(at for _, at in held)
            wait_for(lambda: sql("SELECT extract(epoch from clock_timestamp()) - %s", claimed)[0][0] > 2 * LEASE_S,
                     timeout=60, what="two leases passing")
            assert {job_id for job_id, _ in running_on_b()} == held_ids

            b.kill()   # SIGKILL mid-job; never restarted
            killed = time.monotonic()
            assert {job_id for job_id, _ in running_on_b()} == held_ids

            wait_for(lambda: all(r[0] == "done" for r in sql("SELECT state FROM jobs WHERE id = ANY(%s)",
                                                               list(held_ids))),
                     timeout=120, what="runtime A taking B's jobs over and finishing them")
            taken_over = time.monotonic() - killed

            def settled() -> bool:
                states = dict(sql("SELECT state, count(*) FROM jobs GROUP BY state"))
                return states.get("pending", 0) + states.get("running", 0) == 0 and sql(
                    "SELECT count(*) FROM index_clips")[0][0] >= CAMERAS * CLIPS_EACH
            wait_for(settled, timeout=300, what="every clip indexed and the queue drained")
            drained = time.monotonic() - killed
            print(f"\nlease {LEASE_S} s: B's {len(held_ids)} jobs done by A {taken_over:.1f} s after the SIGKILL, "
                  f"queue drained {drained:.1f} s after it")

            assert sql("SELECT owner, attempts FROM jobs WHERE id = ANY(%s)", list(held_ids)) == [(name_a, 2)] * 2
            assert sql("SELECT count(*) FROM index_clips")[0][0] == CAMERAS * CLIPS_EACH   # each clip once
            assert sql("SELECT sum(clips) FROM index_devices")[0][0] == CAMERAS * CLIPS_EACH
            assert sql("SELECT count(*) FROM jobs WHERE state = 'dead'")[0][0] == 0
            s3 = root_identity(main).client()
            thumbs = {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
                Bucket=main.bucket, Prefix="derived/thumbs/") for o in page.get("Contents", [])}
            assert {thumbnail_key(k) for k in uploaded} <= thumbs

            http = dashboard_login(main.dashboard_url)
            page = http.get(main.dashboard_url + "/admin/status", timeout=30).text
            states = dict(re.findall(r'<tr data-runtime="([^"]+)">.*?data-state="(\w+)"', page, re.S))
            assert states == {name_a: "alive", name_b: "silent"}, states
            row_b = page[page.index(f'data-runtime="{name_b}"'):]
            assert re.search(r'silent since <time datetime="[0-9T:.\-]+Z">', row_b)
            assert second.runtime_url in row_b
        finally:
            a.stop()
            b.stop()
