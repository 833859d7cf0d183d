"""cryospy.common.timefmt: each stored textual form of an instant, made by one function."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from cryospy.common.timefmt import compact_stamp, key_stamp, parse_utc, utc_stamp, utc_stamp_seconds

WHEN = datetime(2026, 12, 1, 23, 15, 50, 855_999, tzinfo=timezone(timedelta(hours=1)))


def test_every_form_is_utc_with_a_z_and_truncates_rather_than_rounds():
    assert utc_stamp(WHEN) == "2026-12-01T22:15:50.855Z"
    assert utc_stamp_seconds(WHEN) == "2026-12-01T22:15:50Z"
    assert key_stamp(WHEN) == "20261201T221550.855Z"
    assert compact_stamp(WHEN) == "20261201T221550Z"


def test_parse_reads_both_iso_forms_back_and_refuses_a_time_without_a_zone():
    assert parse_utc(utc_stamp(WHEN)) == WHEN.replace(microsecond=855_000)
    assert parse_utc(utc_stamp_seconds(WHEN)) == datetime(2026, 12, 1, 22, 15, 50, tzinfo=UTC)
    with pytest.raises(ValueError, match="no time zone"):
        parse_utc("2026-12-01T22:15:50")
