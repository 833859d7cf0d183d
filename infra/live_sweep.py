"""Live parts leave the bucket minutes after they were made: a runtime sweep, and a lifecycle rule as backstop.

MinIO's lifecycle rules count whole days, so the rule applied at start-up (``live/``, expire after 1 day) only
catches what a stopped runtime left behind. The sweep does the real work: every ``interval`` seconds it lists
``live/`` and deletes each object whose slot was issued more than
:data:`~cryospy.functions.live.parts.PART_LIFETIME_S` ago (by the time in its key; an object under ``live/``
whose name CryoSpy would never issue goes by its upload time). One LIST per pass, one batched DELETE for what
is due; nothing under ``clips/`` is ever touched.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from cryospy.common.liveparts import LIVE_PREFIX, parse_live_part_key
from cryospy.common.objectkeys import ObjectKeyError
from cryospy.functions.bucket import Bucket
from cryospy.functions.errors import BucketError
from cryospy.functions.live.parts import PART_LIFETIME_S

log = logging.getLogger(__name__)
RULE_ID = "cryospy-live-parts"


def apply_lifecycle_rule(s3: Any, bucket: str) -> None:
    """Add (or keep) the 1-day expiry rule on ``live/``, leaving any other rule of the bucket as it is."""
    try:
        rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", [])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchLifecycleConfiguration":
            raise
        rules = []
    ours = {"ID": RULE_ID, "Status": "Enabled", "Filter": {"Prefix": LIVE_PREFIX}, "Expiration": {"Days": 1}}
    rules = [r for r in rules if r.get("ID") != RULE_ID] + [ours]
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})


def due(key: str, uploaded: datetime, now: datetime, lifetime_s: float = PART_LIFETIME_S) -> bool:
    try:
        made = parse_live_part_key(key).issued_at
    except ObjectKeyError:
        made = uploaded
    return now - made > timedelta(seconds=lifetime_s)


class LiveSweeper:
    def __init__(self, s3: Callable[[], Any], bucket: str, interval: float = 30.0,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.s3, self.bucket, self.interval, self.clock = s3, bucket, interval, clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="cryospy-live-sweep", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(10)

    def run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sweep_once()
            except BucketError as exc:
                log.warning("live-part sweep failed (%s); trying again in %.0fs", exc, self.interval)

    def sweep_once(self) -> int:
        """Delete the parts that are due; returns how many."""
        store, now = Bucket(self.s3(), self.bucket), self.clock()
        doomed = [o["Key"] for o in store.list(LIVE_PREFIX) if due(o["Key"], o["LastModified"], now)]
        store.delete_many(doomed)
        return len(doomed)
