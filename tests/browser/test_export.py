"""Evidence export in a real browser: pick local times in Chromium (in a time zone other than the server's UTC),
watch the progress bar reach 100 %, download the zip. Screenshots at desktop and phone width in test-artifacts/."""

from __future__ import annotations

import json
import zipfile
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

import pytest

from cryospy.common.objectkeys import parse_clip_key
from cryospy.web.export_bundle import utc_text
from tests.conftest import PASSPHRASE
from tests.support import FakeCamera, clip_place, sample_clip, wait_for

from .conftest import ARTIFACTS

pytestmark = pytest.mark.integration
ZONE = "America/New_York"


def _local(moment) -> str:  # type: ignore[no-untyped-def]
    """What a person in ZONE types into a datetime-local picker for this UTC moment."""
    return moment.astimezone(ZoneInfo(ZONE)).strftime("%Y-%m-%dT%H:%M:%S")


def test_export_in_the_browser(browser, runtime, deployment, tmp_path: Path):
    camera = FakeCamera(deployment, "export-browser", tmp_path)
    keys = [camera.upload(sample_clip()) for _ in range(3)]
    for key in keys:
        ck = clip_place(runtime, key)
        wait_for(lambda ck=ck, key=key: runtime.services.index.get_clip(ck.device_id, ck.day, key), what="indexed")
    t0 = parse_clip_key(keys[0]).captured_at
    start, end = t0 + timedelta(seconds=5), t0 + timedelta(seconds=25)      # the 2nd and 3rd clips
    base = deployment.runtime_url
    ARTIFACTS.mkdir(exist_ok=True)
    for width, height, label in ((1280, 800, "desktop"), (390, 844, "phone")):
        context = browser.new_context(viewport={"width": width, "height": height}, timezone_id=ZONE,
                                      accept_downloads=True)
        page = context.new_page()
        origins: set[str] = set()
        page.on("request", lambda r, seen=origins: seen.add(urlparse(r.url).netloc))
        page.goto(base + "/login")
        page.fill("input[name=passphrase]", PASSPHRASE)
        page.click("button[type=submit]")
        page.wait_for_url(base + "/")
        page.click("nav.sections a[href='/export']")
        page.wait_for_url(base + "/export")
        assert page.text_content("#tz") == ZONE

        # A link with a UTC range (as the day page makes) shows it in the viewer's local time.
        page.goto(f"{base}/export?device=export-browser&start={utc_text(start)}&end={utc_text(end)}")
        assert page.input_value("#start-local") == _local(start) and page.input_value("#end-local") == _local(end)
        page.goto(base + "/export")
        page.select_option("#device", "export-browser")
        page.fill("#start-local", _local(start))
        page.fill("#end-local", _local(end))
        page.screenshot(path=str(ARTIFACTS / f"export-form-{label}.png"), full_page=True)
        page.click("#export-form button[type=submit]")
        page.wait_for_url(lambda url: "/export/" in url)
        wait_for(lambda p=page: p.evaluate("() => document.getElementById('export-progress').value") == 100,
                 timeout=60, what="the progress bar at 100 %")
        assert page.is_visible("#export-download") and "2 clip(s) checked" in page.text_content("#export-status")
        page.screenshot(path=str(ARTIFACTS / f"export-ready-{label}.png"), full_page=True)

        with page.expect_download() as info:
            page.click("#export-download")
        download = info.value
        assert download.suggested_filename == f"cryospy-export-export-browser-{start:%Y%m%dT%H%M%SZ}.zip"
        with zipfile.ZipFile(download.path()) as archive:
            assert archive.testzip() is None
            manifest = json.loads(archive.read("manifest.json"))
            assert [c["object_key"] for c in manifest["clips"]] == keys[1:]
            assert manifest["range"]["start"] == utc_text(start)     # the local picks arrived as the right UTC
            assert archive.read(manifest["clips"][0]["video"]) == sample_clip()
            assert "VERIFY.txt" in archive.namelist()
        assert origins == {urlparse(base).netloc}, origins
        context.close()
