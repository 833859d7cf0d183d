"""Live view on the agent: learn that someone watches, then send each new fragment of the clip being recorded.

    live-watch   long-polls ``GET /v1/device/live/watch``: the server answers the moment a viewer opens this
                 camera (or the grace period after the last one ends), so no inbound port is needed
    live-parts   while watched: tails the clip file ffmpeg is writing in the scratch directory and turns each
                 newly completed fragment (moof+mdat, one per keyframe) plus the clip's init segment into a
                 sealed live part, PUT through a slot from ``POST /v1/device/live/parts`` (one small request
                 per part reports the last part and refills the slots)

No second encode and no second camera connection: both recording paths (the x264 pipe and the passthrough
segment muxer) already write one fragment per keyframe and flush it when it is closed. Parts are sealed to
the deployment key and signed by the device key like clips, but with no chain (:mod:`cryospy.common.liveparts`).

Capture time of a part = when its clip file appeared + the fragment's decode time. Files are noticed by a
directory listing every :data:`IDLE_SCAN_S` while nobody watches (every :data:`ACTIVE_SCAN_S` while someone
does), and a file is dated at the last listing that did *not* show it, so the latency a viewer is shown is
never optimistic, at most one listing interval pessimistic. That listing is all live view costs when nobody
watches: nothing is read, sealed or sent.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryospy.common.liveparts import LIVE_CONTENT_TYPE, NO_CHAIN
from cryospy.common.sealed import seal_bytes
from cryospy.functions.clips.mp4 import Mp4Error, parse_mp4

from .api_client import ApiClient, Retryable
from .settings_sync import SettingsSnapshot

log = logging.getLogger(__name__)

IDLE_SCAN_S = 0.2
ACTIVE_SCAN_S = 0.05
WATCH_WAIT_S = 20.0
SLOTS_KEPT = 4
SLOT_USE_S = 20.0            # slots live 30 s on the server; leave margin for the PUT
_CLIP_NAME = re.compile(r"^clip-\d{6}\.mp4$")


class LiveWatch:
    """The long-poll loop; ``watched`` is set while the server says someone watches this camera."""

    def __init__(self, client: ApiClient, stop: threading.Event, *, retry_s: float = 5.0) -> None:
        self.client, self.stop, self.retry_s = client, stop, retry_s
        self.watched = threading.Event()
        self.polls = 0               # long-polls asked (for tests and the benchmark)

    def run(self) -> None:
        while not self.stop.is_set():
            known = self.watched.is_set()
            self.polls += 1
            try:
                status, answer = self.client.call(
                    "GET", f"/v1/device/live/watch?watching={int(known)}&wait={WATCH_WAIT_S:g}",
                    timeout=WATCH_WAIT_S + self.client.config.server_timeout_seconds)
            except Retryable as exc:
                log.debug("live watch: %s", exc)
                self.stop.wait(self.retry_s)
                continue
            if status != 200 or not isinstance(answer.get("watch"), bool):
                log.warning("the server refused the live-view poll (HTTP %s); asking again in %.0fs", status,
                            self.retry_s * 6)
                self.stop.wait(self.retry_s * 6)
                continue
            self.set(answer["watch"])
            again = answer.get("poll_again_s")
            if isinstance(again, (int, float)) and 0 < again <= 60:
                self.stop.wait(again)       # the server had no thread free to hold this poll

    def set(self, watched: bool) -> None:
        if watched != self.watched.is_set():
            log.info("live view %s", "opened: sending live parts" if watched else "closed: live parts stop")
        (self.watched.set if watched else self.watched.clear)()


@dataclass
class _Followed:
    started: datetime                      # the clip file's appearance, on the agent's UTC clock
    position: int = 0                      # the next top-level box to read
    init: bytes = b""
    fragments: int = 0
    pending: list[bytes] = field(default_factory=list)


@dataclass(frozen=True)
class Fragment:
    clip: Path
    started: datetime
    init: bytes
    fragment: bytes


class ClipTail:
    """Follows the clip files being written under a scratch directory and cuts their completed fragments."""

    def __init__(self, scratch: Path, utc: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.scratch, self.utc = scratch, utc
        self.files: dict[Path, _Followed] = {}
        self._last_scan: datetime | None = None

    def _candidates(self) -> set[Path]:
        """Clip files being written: ``clip-NNNNNN.mp4`` (encoder) and ``session-N/clip-NNNNNN.mp4`` (passthrough).
        Plain directory listings: this runs 5 times a second while nobody watches."""
        found: set[Path] = set()
        try:
            names = os.listdir(self.scratch)
        except FileNotFoundError:
            return found
        for name in names:
            if _CLIP_NAME.match(name):
                found.add(self.scratch / name)
            elif name.startswith("session-"):
                session = self.scratch / name
                try:
                    found.update(session / n for n in os.listdir(session) if _CLIP_NAME.match(n))
                except (FileNotFoundError, NotADirectoryError):
                    continue
        return found

    def scan(self) -> None:
        """Notice new clip files (dated at the previous scan) and forget removed ones; reads nothing."""
        now = self.utc()
        seen = self._candidates()
        for path in seen - self.files.keys():
            self.files[path] = _Followed(self._last_scan or now)
        for path in self.files.keys() - seen:
            del self.files[path]
        self._last_scan = now

    def read(self) -> list[Fragment]:
        """Fragments completed since the last read, oldest clip first."""
        out: list[Fragment] = []
        for path, followed in sorted(self.files.items(), key=lambda item: item[1].started):
            try:
                _advance(path, followed)
            except FileNotFoundError:
                continue
            out += [Fragment(path, followed.started, followed.init, f) for f in followed.pending]
            followed.pending.clear()
        return out


def _advance(path: Path, followed: _Followed) -> None:
    """Read the complete top-level boxes after ``followed.position``: ftyp+moov become the init segment,
    each moof with its mdat a fragment; anything else (the metadata box, mfra) is stepped over."""
    with open(path, "rb") as fh:
        size = fh.seek(0, 2)
        while True:
            fh.seek(followed.position)
            head = fh.read(16)
            if len(head) < 8:
                return
            length, kind = int.from_bytes(head[:4], "big"), head[4:8]
            if length == 1 and len(head) == 16:
                length = int.from_bytes(head[8:16], "big")
            if length < 8 or followed.position + length > size:
                return                                      # still being written (or size 0: to the end)
            if kind == b"moof":
                fh.seek(followed.position + length)
                mdat = fh.read(8)
                if len(mdat) < 8 or mdat[4:8] != b"mdat":
                    return
                mdat_length = int.from_bytes(mdat[:4], "big")
                end = followed.position + length + mdat_length
                if mdat_length < 8 or end > size:
                    return
                fh.seek(followed.position)
                if followed.init:
                    followed.pending.append(fh.read(end - followed.position))
                followed.fragments += 1
                followed.position = end
                continue
            if kind in (b"ftyp", b"moov") and not followed.fragments:
                fh.seek(followed.position)
                followed.init += fh.read(length)
            followed.position += length


class LiveParts:
    """While watched, seal and upload each new fragment as a live part; otherwise only notice new clip files."""

    def __init__(self, client: ApiClient, owner: Callable[[], str], signer: object,
                 settings: Callable[[], SettingsSnapshot], tail: ClipTail, watch: LiveWatch,
                 stop: threading.Event) -> None:
        # ``owner``: what the part's header names the device by, its storage token (as its clips do).
        self.client, self.owner, self.signer, self.settings = client, owner, signer, settings
        self.tail, self.watch, self.stop = tail, watch, stop
        self.slots: deque[tuple[float, dict[str, object]]] = deque()
        self.sequence = 0
        self.sent = 0                # parts uploaded
        self.exchanges = 0           # POST /v1/device/live/parts calls
        self._uploaded: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            self.tail.scan()
            if not self.watch.watched.is_set():
                self.slots.clear()
                self.watch.watched.wait(IDLE_SCAN_S)
                continue
            self._catch_up()
            while self.watch.watched.is_set() and not self.stop.is_set():
                self.tail.scan()
                for piece in self.tail.read():
                    try:
                        self._send(piece)
                    except Exception:       # live view is best effort; recording must never notice
                        log.exception("a live part could not be sent; going on with the next")
                self.stop.wait(ACTIVE_SCAN_S)

    def _catch_up(self) -> None:
        """A viewer just arrived: send the newest complete fragment at once, skip the older ones."""
        try:
            pieces = self.tail.read()
            if pieces:
                self._send(pieces[-1])
        except Exception:
            log.exception("the first live part could not be sent")

    def _send(self, piece: Fragment) -> None:
        plain = piece.init + piece.fragment
        try:
            info = parse_mp4(lambda offset, length: plain[offset:offset + length], len(plain))
        except Mp4Error as exc:
            log.warning("a fragment of %s is not usable for live view (%s); skipped", piece.clip.name, exc)
            return
        if not info.fragments:
            return
        captured = piece.started + timedelta(seconds=info.fragments[0].start_s)
        slot = self._slot()
        if slot is None:
            return
        sealed, _ = seal_bytes(plain, object_key=str(slot["key"]), device_id=self.owner(), sequence=self.sequence,
                               captured_at=captured, content_type=LIVE_CONTENT_TYPE, prev_hash=NO_CHAIN,
                               recipient=self.settings().recipient, signer=self.signer)  # type: ignore[arg-type]
        self.sequence += 1
        try:
            status = self.client.put_bytes(str(slot["url"]), dict(slot["headers"]), sealed)  # type: ignore[call-overload]
        except Retryable as exc:
            log.debug("live part not uploaded: %s", exc)
            return
        if status != 200:
            log.warning("MinIO refused a live part (HTTP %s)", status)
            return
        self.sent += 1
        self._uploaded.append(str(slot["key"]))
        self._exchange()

    def _slot(self) -> dict[str, object] | None:
        while self.slots and time.monotonic() - self.slots[0][0] > SLOT_USE_S:
            self.slots.popleft()
        if not self.slots:
            self._exchange()
        return self.slots.popleft()[1] if self.slots else None

    def _exchange(self) -> None:
        """Report what was uploaded, refill the slots; the answer also says whether anyone still watches."""
        uploaded, self._uploaded = self._uploaded, []
        self.exchanges += 1
        try:
            status, answer = self.client.call("POST", "/v1/device/live/parts",
                                              {"uploaded": uploaded, "slots": max(0, SLOTS_KEPT - len(self.slots))})
        except Retryable as exc:
            log.debug("live parts exchange failed: %s", exc)
            return
        if status != 200:
            log.warning("the server refused the live-parts exchange (HTTP %s): %s", status, answer.get("error"))
            return
        for key, why in (answer.get("refused") or {}).items():
            log.warning("the server refused live part %s: %s", key, why)
        now = time.monotonic()
        self.slots.extend((now, s) for s in answer.get("slots") or [] if isinstance(s, dict))
        if answer.get("watch") is False:
            self.watch.set(False)
