"""Accounts in Chromium: the admin adds a viewer on Admin → Accounts, the viewer sees only its camera on every
page (overview, live, day page, export) and no Admin link, then the admin removes it and the viewer's open
page is logged out at its next request."""

from __future__ import annotations

from pathlib import Path

import pytest

from cryospy.common.keys import KeyStore, WrongPassphrase
from cryospy.web.builder import day_page
from tests.support import FakeCamera, clip_place, sample_clip, wait_for

from .conftest import ARTIFACTS, login

pytestmark = pytest.mark.integration
VIEWER_PASS = "the neighbour's own passphrase"


def test_admin_adds_a_viewer_who_sees_one_camera_then_removes_it(browser, runtime, deployment, tmp_path: Path):
    places = {}
    for name in ("acct-front", "acct-garden"):
        camera = FakeCamera(deployment, name, tmp_path / name)
        places[name] = clip_place(runtime, camera.upload(sample_clip(seconds=2.0)))
    for place in places.values():
        wait_for(lambda p=place: runtime.site.get(day_page(p.device_id, p.day)), what="day pages rendered")
    front, garden = places["acct-front"], places["acct-garden"]
    base = deployment.runtime_url
    admin_context, admin = login(browser, base)
    viewer_context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        admin.goto(base + "/admin/accounts")
        admin.fill("#a-name", "neighbour")
        admin.select_option("#a-role", "viewer")
        admin.check(f"form.add-account input[name='cam-{front.device_id.encode().hex()}']")
        admin.fill("#a-pass", VIEWER_PASS)
        admin.fill("#a-repeat", VIEWER_PASS)
        admin.click("form.add-account button[type=submit]")
        admin.wait_for_selector("tr[data-account='neighbour']")
        assert "Account added" in admin.inner_text(".notice")

        viewer = viewer_context.new_page()
        viewer.goto(base + "/login")
        viewer.fill("input[name=name]", "neighbour")
        viewer.fill("input[name=passphrase]", VIEWER_PASS)
        viewer.click("button[type=submit]")
        viewer.wait_for_url(base + "/")
        cards = viewer.query_selector_all("section.device")
        assert [c.get_attribute("data-device") for c in cards] == [front.device_id]
        assert garden.device_id not in viewer.content()
        assert viewer.query_selector("nav.sections a[href='/admin']") is None
        ARTIFACTS.mkdir(exist_ok=True)
        viewer.screenshot(path=str(ARTIFACTS / "accounts-viewer-overview.png"))
        viewer.goto(base + "/live")
        assert [s.get_attribute("data-device") for s in viewer.query_selector_all("section.player")] \
            == [front.device_id]
        viewer.goto(base + "/export")
        assert viewer.eval_on_selector_all("select[name=device] option", "os => os.map(o => o.value)") \
            == [front.device_id]
        viewer.goto(base + "/" + day_page(front.device_id, front.day))
        viewer.wait_for_selector("#hours li.clip")
        assert viewer.query_selector("#protect-form") is None   # evidence marks are an admin's
        viewer.click("#hours li.clip a.play")
        wait_for(lambda: viewer.evaluate("() => document.getElementById('video').currentTime") > 0.5,
                 what="the viewer's clip playing")
        answer = viewer.goto(base + "/" + day_page(garden.device_id, garden.day))
        assert answer is not None and answer.status == 404 and garden.device_id not in viewer.content()
        assert viewer.goto(base + "/admin/accounts").status == 404   # type: ignore[union-attr]

        admin.goto(base + "/admin/accounts")
        admin.click("details[data-account='neighbour'] summary")
        admin.fill("details[data-account='neighbour'] form.remove input[name=confirm]", "neighbour")
        admin.click("details[data-account='neighbour'] form.remove button")
        admin.wait_for_selector(".notice")
        assert admin.query_selector("tr[data-account='neighbour']") is None
        viewer.goto(base + "/")
        assert viewer.url.endswith("/login")
        with pytest.raises(WrongPassphrase):
            KeyStore.load(deployment.keys_path).open(VIEWER_PASS, "neighbour")
    finally:
        if runtime.services.vault.account("neighbour") is not None:
            runtime.services.vault.remove_account("neighbour")
        viewer_context.close()
        admin_context.close()
