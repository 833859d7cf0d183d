"""The heartbeat: the agent's health, posted every settings interval so the dashboard can show it.

Why it exists: a camera runs for months unattended, and "it stopped uploading" must not be the first sign
that its source is unplugged, its spool is filling or clips are being dropped. A failed heartbeat is only
logged (the server may be down; that is what the spool is for). When the server answers that the settings
changed, the settings loop is woken instead of waiting out its interval.

It also carries the settings the agent applies and their ETag, so the dashboard can show what the camera
really does. Motion zones and masks can make that document large; if the heartbeat would not fit the
server's body limit they are left out of it (the ETag still says whether the camera is in sync).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from .api_client import ApiClient, Retryable
from .errors import UploadError

log = logging.getLogger(__name__)

_SOURCE_STATE_MAX = 300      # what the server stores
_BODY_MAX = 60 * 1024        # the server refuses JSON bodies over 64 KiB
_BULKY_SETTINGS = ("motion_zones", "motion_masks")


class Heartbeat:
    def __init__(self, client: ApiClient, status: Callable[[], dict[str, Any]], interval: Callable[[], float],
                 stop: threading.Event, on_settings_changed: Callable[[], None] = lambda: None) -> None:
        self.client = client
        self.status = status
        self.interval = interval
        self.stop = stop
        self.on_settings_changed = on_settings_changed
        self.sent = 0

    def beat_once(self) -> dict[str, Any]:
        doc = self.status()
        doc["source_state"] = str(doc.get("source_state", ""))[:_SOURCE_STATE_MAX]
        settings = doc.get("settings")
        if isinstance(settings, dict) and len(json.dumps(doc)) > _BODY_MAX:
            doc["settings"] = {k: v for k, v in settings.items() if k not in _BULKY_SETTINGS}
        answer = self.client.heartbeat(doc)
        self.sent += 1
        if answer.get("settings_changed"):
            self.on_settings_changed()
        return answer

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.beat_once()
            except Retryable as exc:
                log.info("heartbeat not delivered: %s", exc)
            except UploadError as exc:
                log.warning("heartbeat refused: %s", exc)
            except Exception:
                log.exception("heartbeat failed unexpectedly")
            self.stop.wait(self.interval())
