"""Push to a phone through an ntfy-compatible HTTP endpoint (ntfy.sh's publish API, self-hosted ntfy).

``url`` is the topic's URL (``https://ntfy.lan/cryospy``). Each event is one POST: the message is plain text
naming the camera, what happened and when, with ``Title``, ``Tags`` and ``Priority`` headers; the optional
``token`` goes as ``Authorization: Bearer``. No frames, keys or object names are ever sent.
"""

from __future__ import annotations

from .event import HomeEvent, message
from .http_post import post
from .hub import Connectionless
from .settings import HttpSettings


class PushChannel(Connectionless):
    name = "push"

    def __init__(self, settings: HttpSettings) -> None:
        self.settings = settings

    def deliver(self, event: HomeEvent) -> None:
        title, text, tag, priority = message(event)
        headers = {"Content-Type": "text/plain; charset=utf-8", "Title": title, "Tags": tag, "Priority": priority}
        if self.settings.token:
            headers["Authorization"] = f"Bearer {self.settings.token}"
        post(self.settings, "push endpoint", text.encode(), headers)
