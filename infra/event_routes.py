"""Event routing derived from the Chalice app's ``@app.on_s3_event`` registrations.

The decorators are the single source of truth: the same list of routes drives the runtime's dispatcher
(which handler gets which record) and the MinIO bucket notification configuration that setup applies.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chalice import Chalice
from chalice.app import S3EventConfig

from cryospy.functions.events import ObjectEvent

from .minio_server import WEBHOOK_ARN


@dataclass(frozen=True)
class Route:
    name: str
    bucket: str
    events: tuple[str, ...]
    prefix: str
    suffix: str
    handler: Callable[[ObjectEvent], None]     # the typed handler behind the Chalice entry point

    def matches(self, bucket: str, key: str, event_name: str) -> bool:
        return (bucket == self.bucket and key.startswith(self.prefix) and key.endswith(self.suffix)
                and any(fnmatch.fnmatchcase(event_name, pattern) for pattern in self.events))


def routes_from_app(app: Chalice, handlers: Mapping[str, Callable[[ObjectEvent], None]]) -> list[Route]:
    """One route per ``@app.on_s3_event`` registration, dispatching to its typed handler in ``handlers``
    (the Chalice function stays the Lambda entry point; the runtime skips its S3-body parsing)."""
    routes = []
    for source in app.event_sources:
        if isinstance(source, S3EventConfig):
            if source.name not in handlers:
                raise LookupError(f"no typed handler for the S3 event source {source.name!r}; "
                                  "add it to OBJECT_HANDLERS in functions/app.py")
            routes.append(Route(
                name=source.name, bucket=source.bucket, events=tuple(source.events),
                prefix=source.prefix or "", suffix=source.suffix or "", handler=handlers[source.name],
            ))
    return routes


def buckets(routes: list[Route]) -> set[str]:
    return {r.bucket for r in routes}


def notification_configuration(routes: list[Route], bucket: str,
                               arns: Sequence[str] = (WEBHOOK_ARN,)) -> dict[str, Any]:
    """The boto3 ``NotificationConfiguration`` for one bucket (MinIO accepts only QueueConfigurations): each
    route to each webhook target (one per runtime, minio_server.webhook_targets)."""
    queues = []
    for (n, arn), route in ((a, r) for a in enumerate(arns) for r in routes):
        if route.bucket != bucket:
            continue
        rules = []
        if route.prefix:
            rules.append({"Name": "prefix", "Value": route.prefix})
        if route.suffix:
            rules.append({"Name": "suffix", "Value": route.suffix})
        entry: dict[str, Any] = {"Id": route.name if n == 0 else f"{route.name}-{n + 1}", "QueueArn": arn,
                                 "Events": list(route.events)}
        if rules:
            entry["Filter"] = {"Key": {"FilterRules": rules}}
        queues.append(entry)
    return {"QueueConfigurations": queues}
