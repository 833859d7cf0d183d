"""The receiver MinIO posts bucket notifications to.

It authenticates MinIO's bearer token, parses every record, queues one job per matching handler and
answers at once: MinIO's persistent queue replays serially and blocks behind a slow or failing receiver, so
the work happens on the runtime's own queue. Outcomes:

* wrong or missing token → 401 (MinIO keeps the event and retries: a configuration problem loses nothing);
* a body that is not a notification, or a bucket this app has no handler for → 400, nothing queued
  (MinIO never sends these; they come from something else talking to the endpoint);
* a record for a known bucket that no handler wants → 200 and a dead letter with the reason, so one odd
  event never blocks the queue behind it.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass

from cryospy.functions.api import json_limits
from cryospy.functions.events import MalformedEvent, ObjectEvent, parse_notification

from .event_routes import Route
from .jobqueue import JobStore

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20


@dataclass(frozen=True)
class WebhookResult:
    status: int
    body: dict[str, object]


class WebhookReceiver:
    def __init__(self, token: str, routes: list[Route], queue: JobStore):
        self._token = token.encode()
        self.routes = routes
        self.queue = queue
        self.buckets = {r.bucket for r in routes}
        self.records_received = 0      # notifications accepted from MinIO (for the status page)

    def enqueue(self, records: list[ObjectEvent]) -> int:
        """Queue one job per (record, matching handler); dead-letter records no handler wants. Also used by
        the upload-confirm route, which reports a new clip before MinIO's notification arrives."""
        queued = 0
        for record in records:
            matching = [r for r in self.routes if r.matches(record.bucket, record.key, record.event_name)]
            if not matching:
                self.queue.put_dead("(unrouted)", record,
                                    f"no handler matches {record.event_name} for {record.key!r}")
                continue
            for route in matching:
                queued += self.queue.put(route.name, record)
        return queued

    def handle(self, authorization: str | None, body: bytes) -> WebhookResult:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme != "Bearer" or not hmac.compare_digest(token.encode(), self._token):
            return WebhookResult(401, {"error": "missing or wrong webhook token"})
        if len(body) > MAX_BODY:
            return WebhookResult(413, {"error": f"notification larger than {MAX_BODY} bytes"})
        try:
            records = parse_notification(json_limits.loads(body))
        except json_limits.JsonTooDeep as exc:
            return WebhookResult(400, {"error": str(exc)})
        except (ValueError, UnicodeDecodeError) as exc:
            return WebhookResult(400, {"error": f"body is not JSON: {exc}"})
        except MalformedEvent as exc:
            return WebhookResult(400, {"error": str(exc)})
        unknown = sorted({r.bucket for r in records} - self.buckets)
        if unknown:
            return WebhookResult(400, {"error": f"no handler is registered for bucket {unknown[0]!r}"})
        self.records_received += len(records)
        queued = self.enqueue(records)
        return WebhookResult(200, {"queued": queued})
