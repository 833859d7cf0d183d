"""Who hears of index changes: callbacks given ``(device_id, day)`` after a change has been written.

That is how the dashboard re-renders only what a new clip touches. Kept apart from the stores so that every
implementation of :class:`~cryospy.functions.index.protocol.ClipIndex` notifies the same way: after the write,
outside its lock (a listener may read the index).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

Listener = Callable[[str, str], None]


class ChangeListeners:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()

    def add(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def notify(self, device_id: str, days: Iterable[str]) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for day in days:
            for listener in listeners:
                listener(device_id, day)
