"""Export jobs: the check pass of each export on a background thread, with progress, owned by one session.

Jobs live in this process's memory only (a restart forgets them; nothing about them touches disk). A job is found by
its random id *and* its owner — a hash of the session token that started it — so another session gets the same
"not found" as for an id that never existed. At most ``max_running`` jobs check clips at once (each reads and
decrypts whole clips); finished jobs are forgotten ``keep_seconds`` after they end.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cryospy.common.errors import CryoSpyError
from cryospy.common.keys import KeyRing
from cryospy.functions.errors import Conflict, NotFound

from .export_bundle import CheckedClip, Fetch, Selection, build_manifest, check_clip

log = logging.getLogger(__name__)


def owner_of(session_token: str) -> str:
    """What a job remembers of its session: a hash, so the job table holds no usable token."""
    return hashlib.sha256(b"CryoSpy export owner\n" + session_token.encode()).hexdigest()


@dataclass
class ExportJob:
    id: str
    owner: str
    selection: Selection
    signer: Ed25519PublicKey
    requested_by: dict[str, str]
    started: float
    state: str = "checking"              # checking -> ready | failed
    error: str = ""
    done: int = 0
    bytes_done: int = 0
    finished: float | None = None
    clips: list[CheckedClip] = field(default_factory=list)
    manifest: dict[str, Any] | None = None

    @property
    def total(self) -> int:
        return len(self.selection.clips)

    @property
    def bytes_total(self) -> int:
        return sum(int(r.plain_size or r.sealed_size) for r in self.selection.clips)

    def progress(self) -> dict[str, Any]:
        """What progress.json answers (and the job page shows before its script runs)."""
        doc: dict[str, Any] = {"state": self.state, "done": self.done, "total": self.total,
                               "bytes_done": self.bytes_done, "bytes_total": self.bytes_total,
                               "percent": 100 if self.state == "ready" else
                               int(100 * self.bytes_done / max(self.bytes_total, 1))}
        if self.state == "failed":
            doc["error"] = self.error
        if self.state == "ready" and self.manifest is not None:
            doc["download"] = f"/export/{self.id}/download"
            doc["gaps"] = [g["detail"] for g in self.manifest["gaps"]]
        return doc


class ExportJobs:
    def __init__(self, fetch: Fetch, keyring: Callable[[], KeyRing], deployment_key: Callable[[], Any],
                 max_running: int = 2, keep_seconds: float = 3600.0,
                 clock: Callable[[], float] = time.monotonic):
        self.fetch, self.keyring, self.deployment_key = fetch, keyring, deployment_key
        self.max_running, self.keep_seconds, self.clock = max_running, keep_seconds, clock
        self._jobs: dict[str, ExportJob] = {}
        self._lock = threading.Lock()

    def start(self, session_token: str, selection: Selection, signer: Ed25519PublicKey,
              requested_by: dict[str, str]) -> ExportJob:
        """Start checking ``selection`` on a thread of its own; Conflict when ``max_running`` are already busy."""
        with self._lock:
            self._forget_old()
            if sum(j.state == "checking" for j in self._jobs.values()) >= self.max_running:
                raise Conflict(f"{self.max_running} exports are being prepared already; wait until one is ready "
                               "and try again.")
            job = ExportJob(secrets.token_urlsafe(18), owner_of(session_token), selection, signer, requested_by,
                            self.clock())
            self._jobs[job.id] = job
        threading.Thread(target=self._run, args=(job,), name=f"cryospy-export-{job.id[:6]}", daemon=True).start()
        return job

    def get(self, job_id: str, session_token: str, camera_visible: Callable[[str], bool] = lambda _: True) -> ExportJob:
        """The session's job; NotFound also when its camera is no longer visible to the session's account."""
        with self._lock:
            self._forget_old()
            job = self._jobs.get(job_id)
        if job is None or not hmac.compare_digest(job.owner, owner_of(session_token)) \
                or not camera_visible(job.selection.request.device_id):
            raise NotFound("No such export: it belongs to another session, or it finished over an hour ago and "
                           "was cleared. Start a new one.")
        return job

    def _forget_old(self) -> None:
        now = self.clock()
        for job_id in [i for i, j in self._jobs.items() if j.finished and now - j.finished > self.keep_seconds]:
            del self._jobs[job_id]

    def _run(self, job: ExportJob) -> None:
        def count(n: int) -> None:
            job.bytes_done += n

        try:
            keyring = self.keyring()
            for record in job.selection.clips:
                job.clips.append(check_clip(self.fetch, record, keyring, job.signer, count))
                job.done += 1
            job.manifest = build_manifest(job.selection, job.clips, job.signer, self.deployment_key(),
                                          job.requested_by, datetime.now(UTC))
            job.state = "ready"
        except CryoSpyError as exc:
            job.error, job.state = str(exc), "failed"
        except Exception:
            log.exception("export %s failed", job.id)
            job.error, job.state = "The export failed unexpectedly; the runtime's log has the details.", "failed"
        finally:
            job.finished = self.clock()
