"""The index's import path (functions/index/transfer.py), run against each implementation like the conformance
suite: records go in as they are, ``live`` numbering included, and the device's counters carry on from the
source's, which an upsert would not do (it numbers clips itself)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cryospy.functions.index.records import DeviceUsage
from cryospy.functions.index.transfer import DayNotEmpty, DeviceTotals
from cryospy.functions.index.usage import LiveCounters
from tests.unit.test_index_conformance import DAY1, DAY2, IMPLEMENTATIONS, IndexUnderTest, clip


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def under_test(request: pytest.FixtureRequest, tmp_path: Path) -> IndexUnderTest:
    return IMPLEMENTATIONS[request.param](request, tmp_path)


def test_an_import_keeps_each_clips_live_numbering_and_the_counters_carry_on(under_test: IndexUnderTest) -> None:
    index = under_test.index
    # As a source store numbered them: the first clip of DAY1 predates the stream (None), the others joined it.
    a = clip("cam 1", DAY1, "09:00:00", 0).changed(live=None)
    b = clip("cam 1", DAY1, "10:00:00", 1, protected=True).changed(live=(40, 20))
    c = clip("cam 1", DAY2, "08:00:00", 2).changed(live=(42, 21), missing=True, missing_since="2026-01-03T09:00:00Z")
    heard: list[tuple[str, str]] = []
    index.add_listener(lambda device, day: heard.append((device, day)))
    index.import_day("cam 1", DAY1, [a, b])
    index.import_day("cam 1", DAY2, [c])
    index.import_device(DeviceTotals("cam 1", DeviceUsage(quarantine_bytes=77), LiveCounters(44, 22, c.captured_at)))
    index.import_device(DeviceTotals("retired cam", DeviceUsage(), LiveCounters(9, 3, "2025-12-31T00:00:00.000Z")))

    assert index.clips_for_day("cam 1", DAY1, with_fragments=True) == [a, b]
    assert index.clips_for_day("cam 1", DAY2, with_fragments=True) == [c]
    assert ("cam 1", DAY1) in heard and ("cam 1", DAY2) in heard
    assert index.usage("cam 1") == DeviceUsage(a.stored_bytes + b.stored_bytes + c.stored_bytes, 3, 77)
    assert index.device_totals() == [
        DeviceTotals("cam 1", index.usage("cam 1"), LiveCounters(44, 22, c.captured_at)),
        DeviceTotals("retired cam", DeviceUsage(), LiveCounters(9, 3, "2025-12-31T00:00:00.000Z"))]
    # The next clip is numbered after the imported counters, not from zero.
    index.upsert_clip(clip("cam 1", DAY2, "09:00:00", 3).changed(live=None))
    assert index.get_clip("cam 1", DAY2, clip("cam 1", DAY2, "09:00:00", 3).key).live == (44, 22)
    # Retention sees the imported flags.
    assert [r.key for r in index.oldest_unprotected("cam 1")][:2] == [a.key, c.key]

    reopened = under_test.reopen()
    assert reopened.clips_for_day("cam 1", DAY1, with_fragments=True) == [a, b]
    assert reopened.device_totals() == index.device_totals()


def test_an_import_refuses_a_day_that_holds_clips_and_another_days_records(under_test: IndexUnderTest) -> None:
    index = under_test.index
    index.upsert_clip(clip("cam", DAY1, "10:00:00", 1))
    with pytest.raises(DayNotEmpty):
        index.import_day("cam", DAY1, [clip("cam", DAY1, "11:00:00", 2)])
    with pytest.raises(ValueError):
        index.import_day("cam", DAY2, [clip("cam", DAY1, "11:00:00", 2)])
    assert [r.key for r in index.clips_for_day("cam", DAY1)] == [clip("cam", DAY1, "10:00:00", 1).key]
    assert index.usage("cam").clips == 1


def test_clear_forgets_every_clip_and_device(under_test: IndexUnderTest) -> None:
    index = under_test.index
    index.upsert_clip(clip("cam", DAY1, "10:00:00", 1))
    index.set_quarantined("other", 5)
    index.clear()
    assert index.devices() == [] and index.device_totals() == [] and index.usage() == DeviceUsage()
    assert index.clips_for_day("cam", DAY1) == []
    index.upsert_clip(clip("cam", DAY1, "10:00:00", 1))
    assert index.usage("cam").clips == 1
