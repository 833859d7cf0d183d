"""``cryospy db migrate`` between two real runtimes: a camera records on the embedded store (a clip protected as
evidence, a dead letter), the runtime stops, the deployment moves to a real PostgreSQL, and a runtime on the
database shows the same day page and the same dead letters, and the same camera (its secret, from the migrated
registry) records on. Real MinIO, real PostgreSQL."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cryospy.cli.main import main
from cryospy.functions.devices.pg_device_store import PostgresDeviceStore
from cryospy.functions.events import ObjectEvent
from cryospy.infra.server_config import ServerConfig
from cryospy.web.builder import day_page
from tests.conftest import PASSPHRASE
from tests.support import FakeCamera, clip_place, dashboard_login, unlocked_runtime, wait_for

pytestmark = pytest.mark.integration
CAMERA = "Porch migrating"


def test_a_deployment_moved_to_postgres_shows_the_same_dashboard_and_dead_letters(
        deployment, minio, postgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with unlocked_runtime(deployment, ServerConfig()) as rt:
        camera = FakeCamera(deployment, CAMERA, tmp_path)
        keys = [camera.upload(), camera.upload()]
        places = [clip_place(rt, k) for k in keys]
        for place, key in zip(places, keys, strict=True):
            wait_for(lambda p=place, k=key: rt.services.index.get_clip(p.device_id, p.day, k), what="clip indexed")
        day = places[0].day
        rt.services.index.update_clip(CAMERA, day, keys[0], protected=True)
        rt.queue.put_dead("on_clip", ObjectEvent("s3:ObjectCreated:Put", deployment.bucket, "clips/broken.cse", 1,
                                                 "etag-broken", None, None), "a test's dead letter")
        page = day_page(CAMERA, day)
        wait_for(lambda: 'data-p="1"' in (rt.site.get(page) or "") and keys[1] in (rt.site.get(page) or ""),
                 what="the day page with both clips, one marked as evidence")
        before_page = rt.site.get(page)
        before_dead = rt.queue.dead_letters()

    url = postgres.fresh_url()
    monkeypatch.setenv("CRYOSPY_PASSPHRASE", PASSPHRASE)
    assert main(["db", "migrate", "--to", "postgres", "--data-dir", str(deployment.data_dir),
                 "--database-url", url]) == 0

    shutil.rmtree(rt.site.root)   # so the page compared below is one the runtime on PostgreSQL rendered
    with unlocked_runtime(deployment, ServerConfig(database_url=url)) as rt2:
        assert isinstance(rt2.services.devices._store, PostgresDeviceStore)
        assert rt2.queue.dead_letters() == before_dead
        wait_for(lambda: rt2.site.get(page) == before_page, what="the same day page, rendered from PostgreSQL")
        http = dashboard_login(deployment.dashboard_url)
        served = http.get(f"{deployment.dashboard_url}/{page}", timeout=10)
        assert served.status_code == 200 and all(k in served.text for k in keys)
        record = rt2.services.index.get_clip(CAMERA, day, keys[0])
        assert record is not None and record.protected
        newer = camera.upload()   # the camera's secret is in the migrated registry
        place = clip_place(rt2, newer)
        after = wait_for(lambda: rt2.services.index.get_clip(place.device_id, place.day, newer), what="new clip")
        before = rt2.services.index.get_clip(CAMERA, day, keys[1])
        assert before is not None and before.live is not None and after.live is not None
        assert after.live == (before.live[0] + before.fragment_count, before.live[1] + 1)   # numbering carries on
