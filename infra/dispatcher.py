"""Workers that run queued events through the Chalice handlers.

Outcomes per job:
* success → done;
* ``KeysLocked`` → back to pending after a short wait, without using up an attempt budget (nothing is
  dropped while the private key is locked);
* ``PermanentEventError`` (or a malformed event) → dead-lettered at once with the reason;
* anything else (MinIO briefly unreachable, a bug) → retried with exponential backoff, dead-lettered with
  the last error after ``max_attempts``.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Mapping

from cryospy.functions.errors import KeysLocked, PermanentEventError
from cryospy.functions.events import MalformedEvent

from .event_routes import Route
from .jobqueue import Job, JobStore

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(self, queue: JobStore, routes: list[Route], *, workers: int = 2, max_attempts: int = 8,
                 base_delay: float = 1.0, locked_delay: float = 2.0):
        self.queue = queue
        self.handlers: Mapping[str, Route] = {r.name: r for r in routes}
        self.workers = workers
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.locked_delay = locked_delay
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for i in range(self.workers):
            t = threading.Thread(target=self._run, name=f"cryospy-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout)

    def _run(self) -> None:
        """Claim and run jobs until stopped. A worker outlives a failing queue (the shared database down, a
        full disk under SQLite): it waits, up to 10 s between tries, and goes on when the queue answers again.
        A job whose outcome could not be written stays claimed under its lease and is claimed again when the
        lease ends (docs/postgres.md), so nothing is lost."""
        wait = 0.0
        while not self._stop.is_set():
            try:
                job = self.queue.claim(timeout=0.5)
                if job is not None:
                    self.run_job(job)
            except Exception as exc:
                if not wait:
                    log.warning("the job queue failed, retrying until it answers: %s: %s", type(exc).__name__, exc)
                wait = min(10.0, max(0.5, wait * 2))
                self._stop.wait(wait)
                continue
            if wait:
                log.warning("the job queue answers again; jobs go on")
                wait = 0.0

    def run_job(self, job: Job) -> None:
        route = self.handlers.get(job.handler)
        if route is None:
            self.queue.dead(job, f"no handler named {job.handler!r} in this version of the app")
            return
        try:
            route.handler(job.event)
        except KeysLocked:
            self.queue.postpone(job, self.locked_delay, "waiting for the private key to be unlocked")
        except (PermanentEventError, MalformedEvent) as exc:
            log.warning("dead-lettered job %s (%s): %s", job.id, job.handler, exc)
            self.queue.dead(job, str(exc))
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            if job.attempts >= self.max_attempts:
                log.error("dead-lettered job %s after %d attempts: %s", job.id, job.attempts, reason)
                self.queue.dead(job, f"gave up after {job.attempts} attempts; last error: {reason}")
            else:
                delay = min(300.0, self.base_delay * 2 ** (job.attempts - 1)) * (0.5 + random.random())
                log.warning("job %s failed (attempt %d), retrying in %.1fs: %s", job.id, job.attempts, delay,
                            reason)
                self.queue.retry(job, delay, reason)
        else:
            self.queue.done(job)
