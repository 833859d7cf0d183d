"""What the day page draws: timeline positions in minutes since the UTC midnight, motion marks from the clip's
motion intervals, hour groups, and which hours start open."""

from __future__ import annotations

from cryospy.functions.index.records import ClipRecord
from cryospy.web.builder import MIN_MARK, OPEN_ALL_HOURS_UP_TO, day_view


def clip(hh: int, mm: int, motion: bool = False, intervals: list[list[float]] | None = None,
         duration: float = 60.0) -> ClipRecord:
    return ClipRecord.from_doc({"key": f"k{hh:02d}{mm:02d}", "device_id": "cam", "day": "2026-01-02",
                                "captured_at": f"2026-01-02T{hh:02d}:{mm:02d}:30.000Z",
                                "duration_s": duration, "motion": motion, "motion_intervals": intervals or []})


def test_positions_marks_and_groups() -> None:
    view = day_view("2026-01-02", [clip(0, 0), clip(13, 45, True, [[6.0, 30.0]], 600.0), clip(13, 59, True)])
    assert [c["minute"] for c in view["clips"]] == [0.5, 825.5, 839.5]
    assert [c["width_min"] for c in view["clips"]] == [MIN_MARK, 10.0, MIN_MARK]
    # An interval 6–30 s into the clip at 13:45:30; a motion clip without intervals is marked whole.
    assert view["motion_marks"] == [(825.6, MIN_MARK), (839.5, MIN_MARK)]
    assert [(hour, len(g["clips"]), g["motion"]) for hour, g in view["groups"]] == [("00", 1, 0), ("13", 2, 2)]
    assert all(g["open"] for _, g in view["groups"])          # a short day opens every hour
    assert view["motion_count"] == 2 and view["next_midnight"] == "2026-01-03T00:00:00Z"


def test_a_busy_day_starts_with_its_hours_closed() -> None:
    clips = [clip(h, m, motion=(h == 9)) for h in range(24) for m in range(0, 60, 10)]
    assert len(clips) > OPEN_ALL_HOURS_UP_TO
    assert not any(g["open"] for _, g in day_view("2026-01-02", clips)["groups"])
    assert all(g["open"] for _, g in day_view("2026-01-02", clips[:OPEN_ALL_HOURS_UP_TO])["groups"])
