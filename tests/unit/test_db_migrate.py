"""``cryospy db migrate``: a deployment's embedded index and queue to a real PostgreSQL and back, verified.

Functional tier: a deployment made by ``setup`` in a temp dir, clips written straight into its TinyDB index
(two cameras, three days, a protected clip, a tombstone, live numbering the store gave them, counters ahead of
the newest clip), its SQLite queue with done, pending, running and dead jobs; the CLI run in process. What the
dashboard shows is the SiteBuilder's rendering of a day page from each store, as the runtime renders it.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from cryospy.cli.main import main
from cryospy.common.database import open_pool
from cryospy.common.keys import KeyStore
from cryospy.functions.devices.pg_device_store import PostgresDeviceStore
from cryospy.functions.devices.registry import DeviceRegistry
from cryospy.functions.events import ObjectEvent
from cryospy.functions.index.postgres import PostgresIndex
from cryospy.functions.index.protocol import ClipIndex
from cryospy.functions.index.store import TinyDBIndex
from cryospy.infra import db_migrate
from cryospy.infra.deployment import Deployment
from cryospy.infra.jobqueue import JobQueue
from cryospy.infra.pg_jobqueue import PostgresJobQueue
from cryospy.infra.stores import registry_key
from cryospy.web.builder import SiteBuilder, day_page
from cryospy.web.site_store import SiteStore
from tests.conftest import PASSPHRASE, new_deployment
from tests.postgres_server import PASSWORD
from tests.unit.test_index_conformance import DAY1, DAY2, DAY3, clip


def _event(key: str) -> ObjectEvent:
    return ObjectEvent("s3:ObjectCreated:Put", "clips", key, 10, f"etag-{key}", None, None)


def _fill(dep: Deployment, key: bytes) -> str:
    """Returns the secret of the registered camera "Front Door"."""
    registry = DeviceRegistry(dep.path("runtime", "devices.json"))
    _, secret = registry.create("Front Door", None, {"clip_seconds": 30})
    registry.retire(registry.create("Garage+2", None, {})[0].device_id)
    registry.close()
    index = TinyDBIndex(dep.path("index"), lambda: key)
    for n, (day, hms) in enumerate([(DAY1, "09:00:00"), (DAY1, "10:00:00"), (DAY2, "08:00:00"),
                                    (DAY3, "07:00:00"), (DAY3, "08:00:00")]):
        index.upsert_clip(clip("Front Door", day, hms, n, motion=n % 2 == 0))   # the store numbers them live
    index.upsert_clip(clip("Garage+2", DAY2, "12:00:00", 0, fragments=0))        # never joined the live stream
    index.update_clip("Front Door", DAY1, clip("Front Door", DAY1, "10:00:00", 1).key, protected=True)
    index.update_clip("Front Door", DAY2, clip("Front Door", DAY2, "08:00:00", 2).key, missing=True,
                      missing_since="2026-01-03T09:00:00Z")
    index.remove_clip("Front Door", DAY3, clip("Front Door", DAY3, "08:00:00", 4).key)   # counters stay ahead
    index.set_quarantined("Garage+2", 4096)
    index.close()
    queue = JobQueue(dep.path("runtime", "jobs.sqlite"))
    for name in ("a", "b", "c", "d"):
        queue.put("on_clip", _event(f"clips/{name}.cse"))
    queue.done(queue.claim(0))
    queue.dead(queue.claim(0), "the sealed header does not verify")
    queue.claim(0)                                           # left running, as by a runtime killed mid-job
    queue.put_dead("on_thumb", _event("thumbs/x.jpg.cse"), "not a thumbnail key")
    queue.close()
    return secret


def _page(index: ClipIndex, tmp: Path, key: bytes, device: str, day: str) -> str:
    site = SiteStore(tmp, lambda: key)
    SiteBuilder(index, DeviceRegistry(tmp / "devices.json"), site).render_day(device, day)
    page = site.get(day_page(device, day))
    assert page is not None
    return page


@pytest.fixture
def dep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Deployment:
    monkeypatch.setenv("CRYOSPY_PASSPHRASE", PASSPHRASE)
    return new_deployment(tmp_path / "dep")


def _migrate(dep: Deployment, *args: str) -> int:
    return main(["db", "migrate", "--data-dir", str(dep.data_dir), *args])


def test_an_embedded_deployment_moves_to_postgres_and_back_with_everything_equal(
        dep: Deployment, postgres, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = KeyStore.load(dep.keys_path).unlock(PASSPHRASE).index_key
    secret = _fill(dep, key)
    url = postgres.fresh_url()
    embedded = TinyDBIndex(dep.path("index"), lambda: key)
    before_records = {(d, day): embedded.clips_for_day(d, day, with_fragments=True)
                      for d in embedded.devices() for day in embedded.days(d)}
    before_totals = embedded.device_totals()
    before_page = _page(embedded, tmp_path / "site-embedded", key, "Front Door", DAY1)
    queue = JobQueue(dep.path("runtime", "jobs.sqlite"), recover=False)
    before_dead = queue.dead_letters()
    queue.close()

    assert _migrate(dep, "--to", "postgres", "--database-url", url) == 0
    out = capsys.readouterr()
    assert "verified 5 clip(s) of 2 camera(s)" in out.out and "5 queue row(s) (2 dead letter(s))" in out.out
    assert PASSWORD not in out.out + out.err

    # The runtime on the database opens its registry as open_device_registry does: the camera still gets in.
    registry = DeviceRegistry(tmp_path / "health" / "devices.json", store=PostgresDeviceStore(
        open_pool(url, max_size=1), lambda: registry_key(dep)))
    assert registry.authenticate("Front Door", secret).settings == {"clip_seconds": 30}
    assert [(d.device_id, d.retired) for d in registry.list()] == [("Front Door", False), ("Garage+2", True)]
    registry.close()

    index = PostgresIndex(open_pool(url, max_size=2), lambda: key)
    pg_queue = PostgresJobQueue(open_pool(url, max_size=1), recover=False)
    try:
        assert {(d, day): index.clips_for_day(d, day, with_fragments=True)
                for d in index.devices() for day in index.days(d)} == before_records
        assert index.device_totals() == before_totals
        assert _page(index, tmp_path / "site-pg", key, "Front Door", DAY1) == before_page
        protected = index.get_clip("Front Door", DAY1, clip("Front Door", DAY1, "10:00:00", 1).key)
        assert protected is not None and protected.protected
        assert pg_queue.dead_letters() == before_dead and len(before_dead) == 2
        assert pg_queue.counts() == {"done": 1, "dead": 2, "pending": 2}   # the running job is pending again
        # The live stream carries on where it was: the next clip is numbered after the removed one.
        newest = index.get_clip("Front Door", DAY3, clip("Front Door", DAY3, "07:00:00", 3).key)
        index.upsert_clip(clip("Front Door", DAY3, "09:00:00", 5))
        after = index.get_clip("Front Door", DAY3, clip("Front Door", DAY3, "09:00:00", 5).key)
        assert newest is not None and newest.live is not None and after is not None
        assert after.live == (newest.live[0] + 2 * 2, newest.live[1] + 2)
        assert pg_queue.put("on_clip", _event("clips/e.cse"))   # ids continue past the imported ones
        assert max(r.id for r in pg_queue.export_rows()) == 6
    finally:
        index.close()
        pg_queue.close()

    # A second run into the same database is refused: it already holds a deployment.
    assert _migrate(dep, "--to", "postgres", "--database-url", url) == 3
    assert "already holds clips or jobs" in capsys.readouterr().err

    # Back, with the URL from server.json: the embedded store is not empty, so only with --force.
    config = dep.path("server.json")
    doc = json.loads(config.read_text()) if config.exists() else {}
    config.write_text(json.dumps({**doc, "database_url": url}))
    assert _migrate(dep, "--to", "embedded") == 3
    assert _migrate(dep, "--to", "embedded", "--force") == 0
    assert PASSWORD not in "".join(capsys.readouterr())
    back = TinyDBIndex(dep.path("index"), lambda: key)
    assert {(d, day): back.clips_for_day(d, day, with_fragments=True) for d in back.devices()
            for day in back.days(d)} == {**before_records, ("Front Door", DAY3): [
                *before_records[("Front Door", DAY3)], after]}
    assert _page(back, tmp_path / "site-back", key, "Front Door", DAY1) == before_page
    queue = JobQueue(dep.path("runtime", "jobs.sqlite"), recover=False)
    assert queue.dead_letters() == before_dead and queue.put("on_clip", _event("clips/f.cse"))
    queue.close()
    assert DeviceRegistry(dep.path("runtime", "devices.json")).authenticate("Front Door", secret)


def test_a_copy_that_differs_is_reported_and_a_running_runtime_refuses(dep: Deployment, postgres) -> None:
    key = KeyStore.load(dep.keys_path).unlock(PASSPHRASE).index_key
    _fill(dep, key)
    source = db_migrate.embedded_stores(dep, lambda: key)
    target = db_migrate.postgres_stores(dep, postgres.fresh_url(), lambda: key)
    try:
        db_migrate.migrate(source, target)
        target.index.update_clip("Garage+2", DAY2, clip("Garage+2", DAY2, "12:00:00", 0).key, motion=True)
        with pytest.raises(db_migrate.MigrationError, match="Garage"):
            db_migrate.verify(source, target)
        target.devices.change("Front Door", lambda d: {**d, "enabled": False})
        with pytest.raises(db_migrate.MigrationError, match="registry"):
            db_migrate.verify(source, target)
    finally:
        source.close()
        target.close()
    with socket.socket() as busy:
        busy.bind((dep.listen_host, dep.runtime_port))
        busy.listen()
        with pytest.raises(db_migrate.MigrationError, match="stop it"):
            db_migrate.refuse_if_runtime_runs(dep)
