"""Renders the dashboard from the index with Jinja2, incrementally.

A new clip changes exactly two pages: its device-day page and the overview. ``on_index_change`` re-renders
only those, and they ask the index only bounded questions (the day's clips, its neighbouring days, each
camera's newest days), so the cost per clip does not grow with the history (bench/bench_million.py). Times
are written as UTC ISO strings and turned into the viewer's local time by a few lines of script in the page.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from cryospy.common.objectkeys import device_hex
from cryospy.common.timefmt import parse_utc, utc_stamp_seconds
from cryospy.functions.devices.registry import DeviceRegistry
from cryospy.functions.errors import KeysLocked
from cryospy.functions.index.protocol import ClipIndex
from cryospy.functions.index.records import ClipRecord

from .access import camera_hex
from .site_store import SiteStore

log = logging.getLogger(__name__)


def _storage_state(percent: float | None) -> str:
    """The original's thresholds: 50 % caution, 75 % warning, 90 % critical."""
    if percent is None:
        return "unlimited"
    return "critical" if percent >= 90 else "warning" if percent >= 75 else "caution" if percent >= 50 else "ok"


MIN_MARK = 3.0   # minutes: the narrowest bar the timeline draws, so a short clip stays visible and clickable
OPEN_ALL_HOURS_UP_TO = 96   # clips; a fuller day starts with its hours closed
OVERVIEW_DAYS = 7   # each camera's newest days the overview links to


def day_view(day: str, clips: list[ClipRecord]) -> dict[str, Any]:
    """What the day page draws besides the clips: timeline positions (minutes since the UTC midnight of the
    page's day), motion marks, and the clips grouped by hour."""
    midnight = datetime.fromisoformat(day + "T00:00:00+00:00")
    marks: list[tuple[float, float]] = []
    groups: dict[str, dict[str, Any]] = {}
    motion_count = 0
    rows = []
    for c in clips:
        start = (parse_utc(c.captured_at) - midnight).total_seconds() / 60
        # The template's row: the record's fields plus where the timeline draws it.
        rows.append({**c.to_doc(with_fragments=False), "minute": round(start, 2),
                     "width_min": round(max(c.duration_s / 60, MIN_MARK), 2)})
        if c.motion:
            motion_count += 1
            intervals = [(a, b) for a, b in c.motion_intervals if a is not None and b is not None]
            for a, b in intervals or [(0.0, c.duration_s)]:
                marks.append((round(start + float(a) / 60, 2), round(max((float(b) - float(a)) / 60, MIN_MARK), 2)))
        group = groups.setdefault(c.captured_at[11:13], {"clips": [], "motion": 0})
        group["clips"].append(rows[-1])
        group["motion"] += 1 if c.motion else 0
    ordered = sorted(groups.items())
    # A busy day (continuous recording) starts with every hour closed: the timeline, the filters and a click on
    # an hour load thumbnails as they are wanted, instead of dozens the page would load just by opening.
    for _, group in ordered:
        group["open"] = len(clips) <= OPEN_ALL_HOURS_UP_TO
    next_midnight = utc_stamp_seconds(midnight + timedelta(days=1))
    return {"clips": rows, "motion_marks": marks, "groups": ordered, "motion_count": motion_count,
            "next_midnight": next_midnight}


@dataclass(frozen=True)
class DaySummary:
    """What the overview shows of a camera's newest day, kept so that the overview never re-reads a whole day."""
    clips: int
    motion: int
    latest: list[ClipRecord]
    thumb: ClipRecord | None


def day_summary(clips: list[ClipRecord]) -> DaySummary:
    return DaySummary(len(clips), sum(1 for c in clips if c.motion), list(reversed(clips[-5:])),
                      next((c for c in reversed(clips) if c.thumb_key), None))


def day_page(device_id: str, day: str) -> str:
    return f"devices/{device_hex(device_id)}/{day}"


def live_page(device_id: str) -> str:
    return f"live/{device_hex(device_id)}"


class SiteBuilder:
    def __init__(self, index: ClipIndex, devices: DeviceRegistry, store: SiteStore,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.index = index
        self.devices = devices
        self.store = store
        self.clock = clock
        self.env = Environment(loader=PackageLoader("cryospy.web", "templates"),
                               autoescape=select_autoescape(["html"]))
        self.env.globals["day_page"] = day_page
        self.env.globals["live_page"] = live_page
        self.env.globals["camera_hex"] = camera_hex
        self._lock = threading.Lock()
        self._summaries: dict[str, tuple[str, DaySummary]] = {}   # device -> (newest day, its summary)
        self._dirty: set[tuple[str, str]] = set()
        self._dirty_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def on_index_change(self, device_id: str, day: str) -> None:
        """Called by the index after a change: remember what to re-render; the render thread does it.

        Handlers never wait for rendering, and a burst of clips for one day renders that day once."""
        with self._dirty_lock:
            self._dirty.add((device_id, day))
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="cryospy-site-builder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30)
        self.flush()

    OVERVIEW_REFRESH_S = 60.0

    def _run(self) -> None:
        last_overview = time.monotonic()
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            try:
                if self.flush():
                    last_overview = time.monotonic()
                elif time.monotonic() - last_overview > self.OVERVIEW_REFRESH_S:
                    # Heartbeats change last-seen and camera state without any new clip.
                    with self._lock:
                        self.render_overview()
                    last_overview = time.monotonic()
            except KeysLocked:
                continue   # pages are encrypted under the index key: nothing renders until an admin unlocks
            except Exception:
                log.exception("rendering the dashboard failed; will retry on the next change")

    def flush(self) -> int:
        """Render every page a change touched since the last flush; returns how many day pages."""
        with self._dirty_lock:
            dirty, self._dirty = self._dirty, set()
        if not dirty:
            return 0
        try:
            with self._lock:
                for device_id, day in sorted(dirty):
                    self.render_day(device_id, day)
                self.render_overview()
        except BaseException:
            with self._dirty_lock:   # locked, or the database down: these days render on the next try
                self._dirty |= dirty
            raise
        return len(dirty)

    def render_day(self, device_id: str, day: str) -> None:
        clips = self.index.clips_for_day(device_id, day)
        # Two index probes, not the device's list of days: this runs after every clip, whatever the history.
        prev_day, next_day = self.index.adjacent_days(device_id, day) if clips else (None, None)
        html = self.env.get_template("day.html").render(
            device_id=device_id, day=day, prev_day=prev_day, next_day=next_day, **day_view(day, clips))
        self.store.put(day_page(device_id, day), html)
        if clips and next_day is None:   # the device's newest day
            self._summaries[device_id] = (day, day_summary(clips))

    def render_overview(self) -> None:
        rows: list[dict[str, Any]] = []
        known = {d.device_id: d for d in self.devices.list()}
        today = self.clock().astimezone(UTC).strftime("%Y-%m-%d")
        for device_id in sorted(set(known) | set(self.index.devices())):
            days = self.index.days(device_id, newest=OVERVIEW_DAYS)
            summary = self._newest_day_summary(device_id, days)
            today_summary = summary if days and days[-1] == today else day_summary([])
            dev = known.get(device_id)
            settings = dict(dev.settings) if dev else {}
            limit_mb = int(settings.get("storage_limit_megabytes", 0) or 0)
            used = self.index.usage(device_id).bytes
            percent = min(100.0, 100.0 * used / (limit_mb * 1024 * 1024)) if limit_mb else None
            rows.append({
                "device_id": device_id, "enabled": dev.enabled if dev else False,
                "retired": dev.retired if dev else True,
                "last_seen": dev.last_seen if dev else None,
                "offline_after_s": 2 * int(settings.get("settings_sync_seconds", 300) or 300) + 60,
                "heartbeat": (dev.heartbeat or {}) if dev else {},
                "days": days, "latest": summary.latest, "thumb": summary.thumb,
                "motion_today": today_summary.motion, "clips_today": today_summary.clips,
                "used_mb": used / (1024 * 1024), "limit_mb": limit_mb, "percent": percent,
                "storage_state": _storage_state(percent),
            })
        html = self.env.get_template("overview.html").render(
            devices=rows, rendered_at=self.clock().isoformat(timespec="seconds"))
        self.store.put("index", html)
        live = self.env.get_template("live.html")
        for row in rows:
            self.store.put(live_page(row["device_id"]), live.render(devices=[row], single=True))
        self.store.put("live", live.render(devices=[r for r in rows if not r["retired"]], single=False))

    def _newest_day_summary(self, device_id: str, days: list[str]) -> DaySummary:
        """The newest day's summary, from the last day render when it is current (reading a day costs as much
        as the day is long; the overview re-renders on every clip)."""
        if not days:
            return day_summary([])
        cached = self._summaries.get(device_id)
        if cached is None or cached[0] != days[-1]:
            cached = (days[-1], day_summary(self.index.clips_for_day(device_id, days[-1])))
            self._summaries[device_id] = cached
        return cached[1]

    def rebuild_all(self) -> None:
        with self._lock:
            for device_id in self.index.devices():
                for day in self.index.days(device_id):
                    self.render_day(device_id, day)
            self.render_overview()
