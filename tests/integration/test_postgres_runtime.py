"""A runtime whose server.json names a PostgreSQL database: a camera's clip is indexed there and shown on the
dashboard, the job queue and the device registry live there too, and the database holds no camera name and no
plaintext clip metadata. Real MinIO, real PostgreSQL (tests/postgres_server.py)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import psycopg
import pytest
import requests

from cryospy.functions.devices.pg_device_store import PostgresDeviceStore
from cryospy.functions.index.postgres import PostgresIndex
from cryospy.infra.pg_jobqueue import PostgresJobQueue
from cryospy.infra.server_config import ServerConfig
from cryospy.infra.stores import runtime_name
from cryospy.web.builder import day_page
from tests.postgres_server import PASSWORD
from tests.support import FakeCamera, clip_place, dashboard_login, unlocked_runtime, wait_for

pytestmark = pytest.mark.integration
CAMERA = "Garden Shed pg"


def _raw_values(url: str) -> dict[str, bytes]:
    """Every value of every table of the schema, as stored (bytea as its bytes), by table."""
    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables "
                                             "WHERE table_schema = current_schema()").fetchall()]
        return {t: b"".join(v if isinstance(v, bytes) else str(v).encode()
                            for row in conn.execute(f"SELECT * FROM {t}").fetchall() for v in row) for t in tables}


def test_a_runtime_on_postgres_indexes_a_clip_and_the_dashboard_shows_it(deployment, minio, postgres, tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    url = postgres.fresh_url()
    with unlocked_runtime(deployment, ServerConfig(database_url=url)) as rt:
        assert isinstance(rt.services.index, PostgresIndex) and isinstance(rt.queue, PostgresJobQueue)
        assert isinstance(rt.services.devices._store, PostgresDeviceStore)
        camera = FakeCamera(deployment, CAMERA, tmp_path)
        key = camera.upload()
        ck = clip_place(rt, key)
        record = wait_for(lambda: rt.services.index.get_clip(ck.device_id, ck.day, key), what="the clip indexed")
        assert record.device_id == CAMERA and record.width == 160 and record.fragment_count > 0
        assert rt.services.index.usage(CAMERA).clips == 1
        wait_for(lambda: rt.queue.counts().get("done"), what="the job done in PostgreSQL")
        wait_for(lambda: rt.site.get(day_page(CAMERA, ck.day)), what="the day page rendered")
        http = dashboard_login(deployment.dashboard_url)
        page = http.get(f"{deployment.dashboard_url}/{day_page(CAMERA, ck.day)}", timeout=10)
        assert page.status_code == 200 and CAMERA in page.text and key in page.text
        cookie = http.cookies["cryospy_session"]
        wrong = requests.post(f"{deployment.api_url}/v1/device/heartbeat", json={}, timeout=10,
                              auth=(CAMERA, "00" * 32), verify=deployment.ca_file or True)
        assert wrong.status_code == 401   # counted in auth_failures / auth_devices, below

    tables = _raw_values(url)
    assert set(tables) == {"index_clips", "index_devices", "jobs", "registry_devices", "runtimes",
                           "dashboard_sessions", "login_attempts", "login_links", "device_health",
                           "device_presence", "slot_buckets", "auth_failures", "auth_devices", "shared_documents",
                           "audit_log", "live_cameras", "live_parts"}
    assert tables["dashboard_sessions"]                  # the login above is a row, its cookie is not in it
    assert tables["auth_failures"] and tables["auth_devices"] and tables["device_presence"]
    # The key store (seeded at start) and the audit log (the login) are sealed: no account name, no slot.
    shared = tables["shared_documents"] + tables["audit_log"]
    assert b"admin" not in shared and b"slots" not in shared and b"login" not in shared
    everything = b"".join(tables.values())
    for secret in (CAMERA, record.header_hash, record.codec, str(record.thumb_key), "motion", "width", "fragments",
                   cookie):
        assert secret.encode() not in everything, secret
    index_only = tables["index_clips"] + tables["index_devices"]
    assert key.encode() not in index_only
    # The queue keeps the event as MinIO delivered it: the object key (storage token, time, sequence).
    assert key.encode() in tables["jobs"] and camera.storage_token in key
    # The runtime registry: the runtime's name (host, data directory) and URL (MinIO's webhook target), times.
    assert runtime_name(deployment).encode() in tables["runtimes"]
    assert deployment.runtime_url.encode() in tables["runtimes"]
    # The URL is logged redacted (the user may be masked too, by the log filter, when another test made it a secret).
    assert PASSWORD not in caplog.text and re.search(r"connected to PostgreSQL at postgresql://[^@\s]*\*\*\*@",
                                                     caplog.text)
