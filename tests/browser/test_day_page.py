"""The day page in Chromium: the 24-hour timeline with motion, filters, previous/next clip, deep links, and
times in the viewer's own time zone (the browser runs in New York; the index is in UTC)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from cryospy.web.builder import day_page
from tests.support import FakeCamera, clip_place, clip_with_meta, wait_for

from .conftest import ARTIFACTS, login

pytestmark = pytest.mark.integration

PLAYING = "() => document.getElementById('video').dataset.key"


def _visible_clips(page) -> int:  # type: ignore[no-untyped-def]
    return page.evaluate("() => document.querySelectorAll('li.clip:not([hidden])').length")


def test_timeline_filters_and_stepping_through_a_day(browser, runtime, deployment, tmp_path: Path):
    camera = FakeCamera(deployment, "day-cam", tmp_path)
    base = camera.t0   # 03:04:05 UTC
    keys = []
    for i, motion in enumerate((True, False, True)):   # 03:04, 09:04 and 15:04 UTC
        camera.t0 = base + timedelta(hours=6 * i) - timedelta(seconds=10 * i)
        keys.append(camera.upload(clip_with_meta(motion=motion, seconds=3.0)))
    ck = clip_place(runtime, keys[0])
    page_name = day_page(ck.device_id, ck.day)
    wait_for(lambda: all(k in (runtime.site.get(page_name) or "") for k in keys), what="the day page with 3 clips")
    url = f"{deployment.runtime_url}/{page_name}"

    context, page = login(browser, deployment.runtime_url, timezone_id="America/New_York", locale="en-GB")
    page.goto(url)

    # Timeline: one bar per clip, motion marks for the two clips with motion; hour labels in New York time.
    assert page.evaluate("() => document.querySelectorAll('#timeline rect.c').length") == 3
    assert page.evaluate("() => document.querySelectorAll('#timeline rect.m').length") == 2
    assert page.inner_text(".hours span:first-child") == "19"          # 00:00 UTC is 19:00 in New York
    assert page.inner_text(f"li[data-key='{keys[1]}'] time") == "04:04:05"  # 09:04:05 UTC

    # Filters: motion only, then a local time range; the hour groups without a match disappear.
    page.check("#only-motion")
    assert _visible_clips(page) == 2
    page.uncheck("#only-motion")
    page.fill("#from", "04:00")
    page.fill("#to", "05:00")
    assert _visible_clips(page) == 1
    assert page.evaluate(f"() => !document.querySelector(\"li[data-key='{keys[1]}']\").hidden")
    page.fill("#from", "")
    page.fill("#to", "")
    assert _visible_clips(page) == 3

    # Play, then next and previous clip.
    page.click(f"li[data-key='{keys[0]}'] a.play")
    wait_for(lambda: page.evaluate("() => document.getElementById('video').currentTime") > 0.5,
             timeout=30, what="the first clip to play")
    page.click("#next-clip")
    assert page.evaluate(PLAYING) == keys[1]
    page.click("#prev-clip")
    assert page.evaluate(PLAYING) == keys[0]
    page.screenshot(path=str(ARTIFACTS / "day-timeline-desktop.png"), full_page=True)

    # A click on the timeline plays the clip at that moment, or the next one after it.
    box = page.query_selector("#timeline").bounding_box()
    page.locator("#timeline").click(position={"x": box["width"] * 8 / 24, "y": 10})     # 08:00 UTC → 09:04
    assert page.evaluate(PLAYING) == keys[1]
    wait_for(lambda: page.evaluate("() => document.getElementById('video').currentTime") > 0.5,
             timeout=30, what="the clip picked on the timeline to play")

    # A link to a clip (the fragment) opens the page playing that clip.
    page.goto(url + "#" + keys[2])
    assert page.evaluate(PLAYING) == keys[2]
    assert not page.is_hidden("#player")
    assert page.get_attribute("#export-clip", "href").startswith("/export?device=day-cam&start=")
    context.close()

    phone, page = login(browser, deployment.runtime_url, 390, 844, timezone_id="Europe/Berlin")
    page.goto(url + "#" + keys[0])
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390, "no sideways scrolling on a phone"
    page.screenshot(path=str(ARTIFACTS / "day-timeline-phone.png"), full_page=True)
    phone.close()
