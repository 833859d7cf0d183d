"""Lists the bucket periodically and queues any clip the index lacks, or keeps only as a tombstone.

MinIO's queue_dir makes event loss unlikely, but not impossible (queue limit reached, a bucket restored
from backup, notifications misconfigured by hand). The reconciler closes that gap: it is cheap (one LIST
per pass) and safe, because handlers are idempotent and queued jobs are deduplicated. A tombstone (a clip the
index believes was deleted outside CryoSpy) whose object is listed is queued too: a forged or stale removal
event must not hide footage that is still there.
"""

from __future__ import annotations

import logging
import threading

from cryospy.common.objectkeys import CLIP_PREFIX, CLIP_SUFFIX, ObjectKeyError
from cryospy.functions import maintenance
from cryospy.functions.bucket import Bucket
from cryospy.functions.clips.place import locate
from cryospy.functions.errors import KeysLocked, NotFound
from cryospy.functions.events import ObjectEvent
from cryospy.functions.services import Services

from .event_routes import Route
from .jobqueue import JobStore

log = logging.getLogger(__name__)


class Reconciler:
    def __init__(self, services: Services, routes: list[Route], queue: JobStore, interval: float = 300.0):
        self.services = services
        self.routes = routes
        self.queue = queue
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="cryospy-reconciler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.queue.prune_done()
                self.run_once()
                maintenance.run_pass(self.services)
            except KeysLocked:
                pass
            except Exception:
                log.exception("reconcile pass failed; will try again in %.0fs", self.interval)

    def run_once(self) -> int:
        """One pass; returns how many jobs it queued."""
        self.services.vault.keys()  # the index is encrypted: nothing to compare against while locked
        queued = 0
        for obj in Bucket.of(self.services).list(CLIP_PREFIX):
            key = obj["Key"]
            if not key.endswith(CLIP_SUFFIX):
                continue
            try:
                place = locate(self.services.devices, key)
                record = self.services.index.get_clip(place.device_id, place.day, key)
                if record is not None and not record.missing:
                    continue
            except (ObjectKeyError, NotFound):
                pass    # ingest quarantines it with the reason
            event = ObjectEvent("s3:ObjectCreated:Put", self.services.bucket, key, obj.get("Size"),
                                obj.get("ETag", "").strip('"') or None, None, None)
            for route in self.routes:
                if route.matches(event.bucket, event.key, event.event_name):
                    queued += self.queue.put(route.name, event, "reconcile|" + event.identity)
        if queued:
            log.info("reconciler queued %d clip(s) the index lacked", queued)
        return queued
