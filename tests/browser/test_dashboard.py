"""The dashboard in a real browser: Debian's Chromium driven by Playwright against the real runtime and MinIO.

Screenshots of each page land in ``test-artifacts/`` (not committed), at desktop and phone width.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest

from cryospy.web.builder import day_page
from tests.conftest import PASSPHRASE
from tests.support import FakeCamera, clip_place, sample_clip, wait_for

from .conftest import ARTIFACTS, login

pytestmark = pytest.mark.integration


def _no_redirect_status(url: str) -> int:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            return None

    try:
        return urllib.request.build_opener(NoRedirect).open(url, timeout=10).status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_login_play_a_clip_and_stay_on_this_origin(browser, runtime, deployment, tmp_path: Path):
    camera = FakeCamera(deployment, "browser-cam", tmp_path)
    key = camera.upload(sample_clip(seconds=4.0, width=320, height=180))
    ck = clip_place(runtime, key)
    wait_for(lambda: runtime.services.index.get_clip(ck.device_id, ck.day, key), what="indexed")
    page_path = "/" + day_page(ck.device_id, ck.day)
    wait_for(lambda: runtime.site.get(page_path.strip("/")) and key in runtime.site.get(page_path.strip("/")),
             what="the day page rendered")
    base = deployment.runtime_url
    # Logged out, every page and media URL is refused (redirected to the login).
    for path in ("/", page_path, f"/media/clip.mp4?key={quote(key, safe='')}",
                 f"/media/clip.m3u8?key={quote(key, safe='')}", f"/media/thumb.jpg?key={quote(key, safe='')}"):
        assert _no_redirect_status(base + path) == 302, path
    ARTIFACTS.mkdir(exist_ok=True)
    for width, height, label in ((1280, 800, "desktop"), (390, 844, "phone")):
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        requests: list[str] = []
        page.on("request", lambda r, seen=requests: seen.append(r.url))
        page.goto(base + "/")
        assert page.url.endswith("/login")
        page.screenshot(path=str(ARTIFACTS / f"login-{label}.png"))
        page.fill("input[name=passphrase]", PASSPHRASE)
        page.click("button[type=submit]")
        card = page.wait_for_selector("section.device[data-device='browser-cam']")
        assert card.query_selector(".badge.presence.online"), "a camera seen a moment ago shows as online"
        meter = card.query_selector(".storage.ok meter")               # the storage bar (1024 MB default quota)
        assert meter and float(meter.get_attribute("value")) < 1
        thumb = card.query_selector("img.latest")
        # A lazy image on a busy machine may still be on its way: poll (the page's CSP forbids the eval
        # that wait_for_function would use).
        assert thumb and wait_for(lambda p=page, t=thumb: p.evaluate("(i) => i.complete && i.naturalWidth > 0", t),
                                  timeout=15, what="the latest picture loaded")
        page.screenshot(path=str(ARTIFACTS / f"overview-{label}.png"), full_page=True)
        page.goto(base + page_path)
        page.click(f"a.play[data-key='{key}']")
        # Real decoding: the video's clock must advance. (Polled from here: the page's CSP forbids the eval that
        # wait_for_function would use, which is as it should be.)
        wait_for(lambda p=page: p.evaluate("() => document.getElementById('video').currentTime") > 0.8,
                 timeout=30, what="the video to play")
        page.screenshot(path=str(ARTIFACTS / f"day-{label}.png"), full_page=True)
        if label == "desktop":
            # Mark the clip as evidence: a CSRF-protected form; the page re-renders with the badge.
            with page.expect_navigation():          # the POST, its redirect and the page it leads back to
                page.click("#protect-button")
            wait_for(lambda: runtime.services.index.get_clip(ck.device_id, ck.day, key).protected,
                     what="the clip protected")
            # Back on the same clip (the form returns to the page with the clip in the fragment), marked.
            wait_for(lambda p=page: (p.reload(), p.query_selector(f"li[data-key='{key}'] .badge:text('evidence')"))[1],
                     what="the evidence badge")
            assert page.evaluate("() => document.getElementById('video').dataset.key") == key
            assert page.inner_text("#protect-button") == "Remove evidence mark"
        assert requests and all(url.startswith(base + "/") for url in requests), [
            u for u in requests if not u.startswith(base + "/")]
        context.close()


def test_logout_needs_the_csrf_token(browser, runtime, deployment):
    context, page = login(browser, deployment.runtime_url)
    forged = page.request.post(deployment.runtime_url + "/logout", form={"csrf": "forged"}, max_redirects=0)
    assert forged.status == 403
    forged = page.request.post(deployment.runtime_url + "/actions/protect", max_redirects=0,
                               form={"key": "clips/x/2026/01/01/20260101T000000.000Z-0.cse", "protected": "1"})
    assert forged.status == 403
    page.click("form[action='/logout'] button")
    page.wait_for_url("**/login")
    assert page.request.get(deployment.runtime_url + "/", max_redirects=0).status == 302
    context.close()


def test_live_view_shows_a_clip_recorded_after_it_was_opened(browser, runtime, deployment, tmp_path: Path):
    from cryospy.web.builder import live_page

    camera = FakeCamera(deployment, "live-cam", tmp_path)
    first = camera.upload(sample_clip(seconds=4.0, width=320, height=180))
    ck = clip_place(runtime, first)
    wait_for(lambda: runtime.site.get(live_page("live-cam")), what="the live page rendered")
    context, page = login(browser, deployment.runtime_url)
    playlist_loads: list[str] = []
    page.on("request", lambda r: playlist_loads.append(r.url) if "/media/live.m3u8" in r.url else None)
    page.goto(f"{deployment.runtime_url}/{live_page('live-cam')}")
    video = "document.querySelector(\"video[data-live-device='live-cam']\")"
    wait_for(lambda: page.evaluate(f"() => {video}.dataset.key") == first,
             timeout=30, what="the live view to play the newest clip")
    camera.t0 = camera.t0 + timedelta(minutes=1)
    second = camera.upload(sample_clip(seconds=4.0, width=320, height=180))   # recorded after the page opened
    wait_for(lambda: runtime.services.index.get_clip(ck.device_id, ck.day, second), what="indexed")
    wait_for(lambda: page.evaluate(f"() => {video}.dataset.key") == second,
             timeout=30, what="the live view to move on to the new clip")
    wait_for(lambda: page.evaluate(f"() => {video}.currentTime") > 0.5,
             timeout=30, what="the new clip to play")
    page.screenshot(path=str(ARTIFACTS / "live-desktop.png"))
    assert len(playlist_loads) >= 2, "the live view follows the sliding playlist, reloading it"
    # The grid of all cameras plays this camera's newest clip too.
    page.goto(f"{deployment.runtime_url}/live")
    wait_for(lambda: page.evaluate(f"() => {video}.dataset.key") == second, timeout=30, what="the grid to play")
    wait_for(lambda: page.evaluate(f"() => {video}.currentTime") > 0.5, timeout=30, what="the grid's video to play")
    page.screenshot(path=str(ARTIFACTS / "live-grid-desktop.png"))
    context.close()
