"""Uploads spooled clips oldest first: ask for a slot, PUT, and only then forget the clip.

Retry policy: network trouble, 5xx and 429 are retried with exponential backoff and jitter, capped at
``upload_retry_minutes`` (the original's setting). ``upload_max_retries`` no longer throws clips away: past
it the agent only logs louder, because a clip is never discarded while there is spool space. A 412 answer
to the PUT means the object already exists, i.e. an earlier attempt succeeded and the agent died before it
could forget the clip: that is success. A clip the server refuses for good (a 4xx other than 401) is moved
to ``rejected/`` for the admin, never deleted.

Nothing is uploaded before ``ready`` is set: the server gives no upload slot to a device whose signing key it
does not know yet (see :mod:`.signing_identity`), so until then clips simply wait in the spool.
"""

from __future__ import annotations

import logging
import random
import shutil
import threading
import time
from dataclasses import dataclass
from typing import Any

from .api_client import ApiClient, Retryable
from .config import AgentConfig
from .errors import UploadError
from .spool import Spool, SpoolEntry

log = logging.getLogger(__name__)


@dataclass
class UploadStats:
    uploaded: int = 0
    already_present: int = 0
    failures: int = 0
    rejected: int = 0


class Uploader:
    def __init__(self, config: AgentConfig, spool: Spool, client: ApiClient, stop: threading.Event,
                 wake: threading.Event, ready: threading.Event | None = None):
        self.config = config
        if ready is None:
            ready = threading.Event()
            ready.set()
        self.ready = ready
        self.spool = spool
        self.client = client
        self.stop = stop
        self.wake = wake
        self.stats = UploadStats()
        self._consecutive_failures = 0

    def run(self) -> None:
        while not self.stop.is_set():
            if not self.ready.wait(1.0):
                continue
            entries = self.spool.entries()
            if not entries:
                self.wake.wait(1.0)
                self.wake.clear()
                continue
            try:
                self.upload_one(entries[0])
            except Exception:
                # An OS error on the spool or a bug must not end uploads for the months the agent runs.
                log.exception("upload of clip #%d failed unexpectedly", entries[0].sequence)
                self._failed(entries[0], "unexpected error (see above)", True)

    def drain(self, timeout: float) -> None:
        """Used at shutdown: one more pass over what is spooled, without backoff waits beyond ``timeout``."""
        if not self.ready.is_set():
            return      # the server would refuse every slot
        deadline = time.monotonic() + timeout
        for entry in self.spool.entries():
            if time.monotonic() > deadline or not self.upload_one(entry, wait_on_failure=False):
                return

    def upload_one(self, entry: SpoolEntry, wait_on_failure: bool = True) -> bool:
        request: dict[str, Any] = {
            "size": entry.size, "sha256": entry.sha256, "captured_at": entry.captured_at,
            "sequence": entry.sequence, "duration_s": entry.duration_s,
        }
        if entry.motion_summary is not None:
            request["motion"] = entry.motion_summary
        self.spool.uploading = entry.sequence
        try:
            slot = self.client.request_slot(request)
            if slot.key != entry.key:
                raise UploadError(f"server chose key {slot.key!r} but the clip was sealed for {entry.key!r}")
            status = self.client.put(slot, self.spool.sealed_path(entry))
        except Retryable as exc:
            return self._failed(entry, str(exc), wait_on_failure)
        except UploadError as exc:
            if "401" in str(exc):
                return self._failed(entry, str(exc), wait_on_failure)
            self._reject(entry, str(exc))
            return True
        finally:
            self.spool.uploading = None
        self.spool.remove(entry)
        self._consecutive_failures = 0
        try:
            self.client.confirm(entry.key)
        except (Retryable, UploadError) as exc:   # MinIO's notification still brings the clip in
            log.info("could not confirm clip #%d (%s); the server will pick it up from MinIO", entry.sequence, exc)
        if status == 412:
            self.stats.already_present += 1
            log.info("clip #%d was already uploaded (%s)", entry.sequence, entry.key)
        else:
            self.stats.uploaded += 1
            log.info("uploaded clip #%d (%d bytes) -> %s", entry.sequence, entry.size, entry.key)
        return True

    def _failed(self, entry: SpoolEntry, reason: str, wait: bool) -> bool:
        self.stats.failures += 1
        self._consecutive_failures += 1
        n = self._consecutive_failures
        cap = max(1.0, self.config.upload_retry_minutes * 60)
        delay = min(cap, 0.5 * 2 ** min(n, 20)) * (0.5 + random.random() / 2)
        level = logging.ERROR if n > self.config.upload_max_retries else logging.WARNING
        log.log(level, "upload of clip #%d failed (%d in a row, %d clips waiting): %s; retrying in %.1fs",
                entry.sequence, n, len(self.spool.entries()), reason, delay)
        if wait:
            self.stop.wait(delay)
        return False

    def _reject(self, entry: SpoolEntry, reason: str) -> None:
        target = self.spool.root / "rejected"
        target.mkdir(exist_ok=True, mode=0o700)
        shutil.move(self.spool.sealed_path(entry), target / f"{entry.name}.cse")
        shutil.move(self.spool.root / f"{entry.name}.json", target / f"{entry.name}.json")
        self.stats.rejected += 1
        log.error("server refused clip #%d for good; kept in %s: %s", entry.sequence, target, reason)
