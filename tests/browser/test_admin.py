"""The admin section in a real browser: Debian's Chromium driven by Playwright against the real runtime and MinIO.

Creating a device shows its secret exactly once; settings are validated with the message next to the field;
disable/enable, rotate (the old secret stops working) and delete act on the registry; the passphrase change
logs out other sessions and the old passphrase stops working; the status page shows the queue and MinIO; a
POST without the CSRF token changes nothing. Screenshots of each page at desktop and phone width land in
``test-artifacts/``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import urllib.error
import urllib.request
from typing import Any

import pytest
from playwright.sync_api import Error as PlaywrightError

from cryospy.common.keys import KeyStore
from cryospy.functions.devices import lifecycle
from cryospy.functions.events import ObjectEvent
from cryospy.web.admin import device_path
from tests.conftest import PASSPHRASE
from tests.support import wait_for

from .conftest import ARTIFACTS, login

pytestmark = pytest.mark.integration

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


def _shoot(page: Any, name: str) -> None:
    """The page as it is now, at desktop and at phone width (resizing does not reload, so a one-time page
    can be captured twice)."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.set_viewport_size(DESKTOP)
    page.screenshot(path=str(ARTIFACTS / f"admin-{name}-desktop.png"), full_page=True)
    page.set_viewport_size(PHONE)
    page.screenshot(path=str(ARTIFACTS / f"admin-{name}-phone.png"), full_page=True)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"] + 1, \
        f"the {name} page scrolls sideways at phone width"
    page.set_viewport_size(DESKTOP)


def _submit(page: Any, selector: str) -> Any:
    """Click a submit button and return the response the navigation ended with (after any redirect)."""
    with page.expect_navigation() as nav:
        page.click(selector)
    return nav.value


def _settled_content(page: Any) -> str:
    """The page's HTML once any navigation (a back or a reload that re-posts) has finished."""
    def attempt() -> str | None:
        try:
            page.wait_for_load_state("load")
            return page.content()
        except PlaywrightError:   # still navigating
            return None
    return wait_for(attempt, what="the page to settle")


def _device_api_status(api_url: str, device_id: str, secret: str) -> int:
    token = base64.b64encode(f"{device_id}:{secret}".encode()).decode()
    request = urllib.request.Request(api_url + "/v1/device/settings", headers={"Authorization": f"Basic {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _new_id(prefix: str) -> str:
    return f"{prefix} {secrets.token_hex(3)}+1"   # a space and a '+': the page path must hex-encode them


def _enrol(runtime: Any, device_id: str) -> str:
    return lifecycle.create_device(runtime.services, {"device_id": device_id, "settings": {}})["secret"]


def test_create_a_device_and_see_its_secret_exactly_once(browser, runtime, deployment):
    base = deployment.runtime_url
    context, page = login(browser, base)
    page.goto(base + "/admin")
    _shoot(page, "devices")

    # A bad id: the domain's message next to the field, 400, nothing created.
    page.fill("#device_id", "bad/id")
    response = _submit(page, "form.create-device button[type=submit]")
    assert response.status == 400
    assert "invalid device id" in page.inner_text("#device_id-error")
    assert page.input_value("#device_id") == "bad/id"
    assert not runtime.services.devices.exists("bad/id")

    device_id = _new_id("porch")
    page.fill("#device_id", device_id)
    response = _submit(page, "form.create-device button[type=submit]")
    assert response.status == 200
    assert "no-store" in response.headers["cache-control"]
    secret = page.inner_text("code.secret")
    config = json.loads(page.input_value("textarea.agent-config"))
    assert config["client_id"] == device_id and config["client_secret"] == secret
    assert config["server_url"] == deployment.api_url
    assert config["deployment_public_key"] == KeyStore.load(deployment.keys_path).current_public_key().to_text()
    assert "signing_key" not in config and "PRIVATE" not in page.content().upper()
    assert runtime.services.devices.authenticate(device_id, secret).device_id == device_id
    assert secret not in page.url
    _shoot(page, "secret")

    # Reloading the result (the browser may post again) shows no secret, and no second device or secret.
    page.reload()
    assert secret not in _settled_content(page)
    assert runtime.services.devices.authenticate(device_id, secret)
    # The list shows the new device, awaiting its camera's key; going back shows no secret either.
    page.goto(base + "/admin")
    row = page.wait_for_selector(f"tr[data-device='{device_id}']")
    assert "waiting for the camera to register its key" in row.inner_text()
    assert row.query_selector(".state.enabled")
    assert row.query_selector("time") is None   # never seen yet
    with contextlib.suppress(PlaywrightError):   # Chromium may refuse to re-post silently (ERR_CACHE_MISS)
        page.go_back()
    assert secret not in _settled_content(page)
    # The device's page is reachable from the list, under its hex-encoded id.
    page.goto(base + "/admin")
    page.click(f"tr[data-device='{device_id}'] a.device-link")
    page.wait_for_url(base + device_path(device_id))
    assert secret not in page.content()
    context.close()


def test_settings_are_validated_next_to_the_field_and_saved(browser, runtime, deployment):
    base = deployment.runtime_url
    device_id = _new_id("garden")
    _enrol(runtime, device_id)
    context, page = login(browser, base)
    page.goto(base + device_path(device_id))
    _shoot(page, "device")

    # Against a rule with a stored value (min aspect must stay below the max): 400, the message at the field,
    # and the admin's other input kept.
    page.fill("#s-clip_duration_seconds", "90")
    page.fill("#s-motion_min_aspect", "5")
    response = _submit(page, "form.settings-form button[type=submit]")
    assert response.status == 400
    error = page.inner_text("[data-field='motion_min_aspect'] .field-error")
    assert "motion_min_aspect < motion_max_aspect" in error
    assert page.input_value("#s-clip_duration_seconds") == "90"
    assert runtime.services.devices.get(device_id).settings["clip_duration_seconds"] == 60

    # Out of range, past the browser's own min/max check: the server refuses it the same way.
    page.evaluate("() => { document.querySelector('form.settings-form').noValidate = true; }")
    page.fill("#s-motion_min_aspect", "0.5")
    page.fill("#s-clip_duration_seconds", "2")
    response = _submit(page, "form.settings-form button[type=submit]")
    assert response.status == 400
    assert "out of range" in page.inner_text("[data-field='clip_duration_seconds'] .field-error")
    assert page.input_value("#s-motion_min_aspect") == "0.5"
    assert page.query_selector("[data-field='motion_min_aspect'] .field-error") is None

    page.fill("#s-clip_duration_seconds", "90")
    page.check("#s-motion_only")
    response = _submit(page, "form.settings-form button[type=submit]")
    assert response.status == 200 and response.url.endswith(device_path(device_id) + "?done=saved")
    assert "Settings saved" in page.inner_text(".notice")
    settings = runtime.services.devices.get(device_id).settings
    assert (settings["clip_duration_seconds"], settings["motion_min_aspect"], settings["motion_only"]) == \
        (90, 0.5, True)
    assert page.input_value("#s-clip_duration_seconds") == "90" and page.is_checked("#s-motion_only")
    context.close()


def test_disable_enable_rotate_and_delete_a_device(browser, runtime, deployment):
    base, api = deployment.runtime_url, deployment.api_url
    device_id = _new_id("gate")
    old_secret = _enrol(runtime, device_id)
    assert _device_api_status(api, device_id, old_secret) == 200
    context, page = login(browser, base)
    page.goto(base + device_path(device_id))

    _submit(page, "form.enable-form button.disable")
    assert "disabled" in page.inner_text("h1 .state")
    assert not runtime.services.devices.get(device_id).enabled
    assert _device_api_status(api, device_id, old_secret) == 401
    _submit(page, "form.enable-form button.enable")
    assert runtime.services.devices.get(device_id).enabled
    assert _device_api_status(api, device_id, old_secret) == 200

    replay = {name: page.get_attribute(f"form.rotate-form input[name={name}]", "value") for name in ("csrf", "once")}
    response = _submit(page, "form.rotate-form button.rotate")
    assert response.status == 200 and "no-store" in response.headers["cache-control"]
    new_secret = page.inner_text("code.secret")
    assert new_secret != old_secret
    assert json.loads(page.input_value("textarea.agent-config"))["client_secret"] == new_secret
    assert _device_api_status(api, device_id, old_secret) == 401
    assert _device_api_status(api, device_id, new_secret) == 200
    # Reloading the result, or posting the same form again, must not rotate again nor show a secret.
    page.reload()
    assert new_secret not in _settled_content(page)
    again = page.request.post(base + device_path(device_id) + "/rotate", form=replay, max_redirects=0)
    assert again.status == 409 and "already used" in again.text()
    assert _device_api_status(api, device_id, new_secret) == 200

    # Delete: the typed id must match; then keep the clips (the device is retired, its record stays).
    page.goto(base + device_path(device_id))
    page.check("input[name=clips][value=keep]")
    page.fill("#confirm", "not the id")
    response = _submit(page, "form.delete-form button.delete")
    assert response.status == 400
    assert "Type the device id" in page.inner_text("form.delete-form .field-error")
    assert page.is_checked("input[name=clips][value=keep]")
    assert not runtime.services.devices.get(device_id).retired
    page.fill("#confirm", device_id)
    response = _submit(page, "form.delete-form button.delete")
    assert response.url == base + "/admin"
    assert runtime.services.devices.get(device_id).retired
    assert page.query_selector(f"tr[data-device='{device_id}'] .state.retired")
    assert _device_api_status(api, device_id, new_secret) == 401
    context.close()


def test_change_the_passphrase(browser, runtime, deployment):
    base = deployment.runtime_url
    new = "a brand new passphrase " + secrets.token_hex(4)
    other_context, other = login(browser, base)
    context, page = login(browser, base)
    changed = False
    try:
        page.goto(base + "/account/passphrase")
        _shoot(page, "passphrase")
        # Wrong current passphrase: refused, nothing changes.
        page.fill("#p-current", "not the passphrase")
        page.fill("#p-passphrase", new)
        page.fill("#p-repeat", new)
        response = _submit(page, "form.passphrase-form button[type=submit]")
        assert response.status == 400
        assert "not the current passphrase" in page.inner_text("[data-field='current'] .field-error")
        KeyStore.load(deployment.keys_path).unlock(PASSPHRASE)
        # Too short (past the browser's own check): the same rule the CLI applies.
        page.evaluate("() => { document.querySelector('form.passphrase-form').noValidate = true; }")
        page.fill("#p-current", PASSPHRASE)
        page.fill("#p-passphrase", "short")
        page.fill("#p-repeat", "short")
        response = _submit(page, "form.passphrase-form button[type=submit]")
        assert response.status == 400
        assert "at least 10 characters" in page.inner_text("[data-field='passphrase'] .field-error")

        page.fill("#p-current", PASSPHRASE)
        page.fill("#p-passphrase", new)
        page.fill("#p-repeat", new)
        response = _submit(page, "form.passphrase-form button[type=submit]")
        changed = True
        assert response.status == 200 and response.url.endswith("/account/passphrase?changed=1")
        assert "Passphrase changed" in page.inner_text(".notice.changed")
        # This session goes on; the other one was logged out.
        assert page.request.get(base + "/admin", max_redirects=0).status == 200
        assert other.request.get(base + "/admin", max_redirects=0).status == 302
        # The old passphrase no longer logs in; the new one does.
        fresh = browser.new_context()
        login_page = fresh.new_page()
        login_page.goto(base + "/login")
        login_page.fill("input[name=passphrase]", PASSPHRASE)
        with login_page.expect_navigation() as nav:
            login_page.click("button[type=submit]")
        assert nav.value.status == 401
        login_page.fill("input[name=passphrase]", new)
        login_page.click("button[type=submit]")
        login_page.wait_for_url(base + "/")
        fresh.close()
        assert not runtime.services.vault.locked
    finally:
        if changed:   # the key store is shared by the whole test session
            KeyStore.load(deployment.keys_path).change_passphrase(new, PASSPHRASE)
        other_context.close()
        context.close()
    KeyStore.load(deployment.keys_path).unlock(PASSPHRASE)


def test_wrong_current_passphrases_are_rate_limited_like_logins(browser, runtime, deployment):
    base = deployment.runtime_url
    context, page = login(browser, base)
    page.goto(base + "/account/passphrase")
    csrf = page.get_attribute("form.passphrase-form input[name=csrf]", "value")
    new = "never applied passphrase"
    for _ in range(runtime.dashboard.limiter.limit):
        response = page.request.post(base + "/account/passphrase", max_redirects=0, form={
            "csrf": csrf, "current": "a wrong guess", "passphrase": new, "repeat": new})
        assert response.status == 400
    # Now even the right passphrase is refused until the failures age out, and nothing changes.
    response = page.request.post(base + "/account/passphrase", max_redirects=0, form={
        "csrf": csrf, "current": PASSPHRASE, "passphrase": new, "repeat": new})
    assert response.status == 429 and "Too many wrong passphrases" in response.text()
    KeyStore.load(deployment.keys_path).unlock(PASSPHRASE)
    context.close()


def test_minio_that_does_not_answer_is_reported_unreachable_with_the_error():
    from cryospy.infra.minio_server import free_port
    from cryospy.web.admin_status import minio_health

    health = minio_health(f"http://127.0.0.1:{free_port('127.0.0.1')}", timeout=2)
    assert not health.ok and "refused" in health.detail.lower()


def test_status_shows_the_queue_minio_and_dead_letters(browser, runtime, deployment):
    base = deployment.runtime_url
    key = f"clips/status-cam/{secrets.token_hex(4)}.csb"
    event = ObjectEvent("s3:ObjectCreated:Put", deployment.bucket, key, None, None, "seq", None)
    runtime.queue.put_dead("(unrouted)", event, "test: nothing handles this event")
    job_id = next(j.id for j in runtime.queue.dead_letters() if j.event == event)
    context, page = login(browser, base)
    page.goto(base + "/admin/status")
    counts = runtime.queue.counts()
    assert int(page.inner_text(".queue-pending")) == counts.get("pending", 0)
    assert int(page.inner_text(".queue-dead")) == counts.get("dead", 0) >= 1
    assert page.inner_text(".minio").strip() == "ok"
    assert page.inner_text(".index-key").strip() == "unlocked"
    assert page.inner_text(".version").strip()
    assert page.query_selector(".total-bytes")
    row = page.wait_for_selector(f"tr[data-job='{job_id}']")
    assert key in row.inner_text() and "nothing handles this event" in row.inner_text()
    _shoot(page, "status")
    response = _submit(page, f"tr[data-job='{job_id}'] button.retry")
    assert response.url == base + "/admin/status"
    # Requeued: the dispatcher took it again (and, with no handler by that name, dead-lettered it anew).
    wait_for(lambda: any(j.id == job_id and j.attempts >= 1 and "no handler named" in j.reason
                         for j in runtime.queue.dead_letters()), what="the retried event to run")
    context.close()


def test_admin_posts_without_the_csrf_token_are_refused_and_change_nothing(browser, runtime, deployment):
    base, api = deployment.runtime_url, deployment.api_url
    device_id = _new_id("csrf")
    secret = _enrol(runtime, device_id)
    before = runtime.services.devices.get(device_id)
    context, page = login(browser, base)
    page.goto(base + "/admin")
    path = device_path(device_id)
    FORGED_PASSPHRASE = {"current": PASSPHRASE, "passphrase": "forged passphrase", "repeat": "forged passphrase"}
    forged = {
        "/admin/devices": {"device_id": "forged-cam"},
        path + "/enabled": {"enabled": "0"},
        path + "/settings": {"clip_duration_seconds": "30"},
        path + "/rotate": {},
        path + "/delete": {"clips": "delete", "confirm": device_id},
        "/admin/passphrase": FORGED_PASSPHRASE,
        "/account/passphrase": FORGED_PASSPHRASE,
        "/admin/status/retry": {"job_id": "1"},
    }
    for url, form in forged.items():
        for token in (None, "forged-token"):
            body = dict(form, **({"csrf": token} if token else {}))
            response = page.request.post(base + url, form=body, max_redirects=0)
            assert response.status == 403, (url, token)
    after = runtime.services.devices.get(device_id)
    assert after == before
    assert not runtime.services.devices.exists("forged-cam")
    assert _device_api_status(api, device_id, secret) == 200
    KeyStore.load(deployment.keys_path).unlock(PASSPHRASE)
    context.close()
    # Logged out, every admin page refuses (to the login).
    anonymous = browser.new_context()
    for url in ("/admin", "/admin/status", "/admin/passphrase", "/account/passphrase", path):
        assert anonymous.request.get(base + url, max_redirects=0).status == 302, url
    assert anonymous.request.post(base + "/admin/devices", form={"device_id": "anon"}, max_redirects=0).status == 302
    assert not runtime.services.devices.exists("anon")
    anonymous.close()


# Tiny clips from a synthetic camera; the sync interval is pinned short so the test need not wait 5 minutes.
AGENT_OVERRIDES = {"camera_device": "synthetic:160x96", "clip_seconds": 2, "fps": 10, "settings_sync_seconds": 5,
                   "server_timeout_seconds": 5, "upload_retry_minutes": 0.05, "source_retry_max_seconds": 1}


def _reload_until(page: Any, check: Any, what: str, timeout: float = 90) -> Any:
    def poll() -> Any:
        page.reload()
        return check()
    return wait_for(poll, timeout=timeout, what=what)


def test_an_agent_run_from_the_page_config_reports_a_changed_setting(browser, runtime, deployment, tmp_path):
    """The issue's path end to end: create a device in the browser, run a real edge agent from the config the
    page showed (it makes and registers its own key), change a setting and see the camera report it."""
    import threading

    from cryospy.edge_agent.agent import Agent
    from cryospy.edge_agent.config import load_config

    base = deployment.runtime_url
    device_id = _new_id("agent")
    context, page = login(browser, base)
    page.goto(base + "/admin")
    page.fill("#device_id", device_id)
    _submit(page, "form.create-device button[type=submit]")
    config = json.loads(page.input_value("textarea.agent-config"))
    path = tmp_path / "agent.json"
    path.write_text(json.dumps({**config, **AGENT_OVERRIDES, "temp_dir": str(tmp_path)}))
    agent = Agent.build(load_config(path))
    thread = threading.Thread(target=agent.run, kwargs={"install_signals": False}, name="agent")
    thread.start()
    try:
        page.goto(base + device_path(device_id))
        fingerprint = _reload_until(page, lambda: page.query_selector(".facts code.fingerprint"),
                                    "the agent's key registered").inner_text()
        assert fingerprint == agent.identity.fingerprint
        _reload_until(page, lambda: "in sync" in page.inner_text(".report"), "the first heartbeat, in sync")
        reported = "tr[data-setting='motion_min_area'] .reported-value"
        assert page.text_content(reported) == "1000"

        page.fill("#s-motion_min_area", "1234")
        _submit(page, "form.settings-form button[type=submit]")
        assert runtime.services.devices.get(device_id).settings["motion_min_area"] == 1234
        _reload_until(page, lambda: page.text_content(reported) == "1234" and "in sync" in page.inner_text(".report"),
                      "the camera to report the new value")
        _shoot(page, "device-reporting")

        # The overview shows the camera this agent feeds, online, with its latest picture; one of its clips,
        # opened from there, really decodes.
        card = f"section.device[data-device='{device_id}']"
        page.goto(base + "/")
        _reload_until(page, lambda: page.query_selector(f"{card} .badge.presence.online")
                      and page.query_selector(f"{card} img.latest"), "the overview to show the agent's camera")
        page.click(f"{card} img.latest")
        page.click("li.clip a.play")
        wait_for(lambda: page.evaluate("() => document.getElementById('video').currentTime") > 0.5,
                 timeout=30, what="a clip the agent recorded to play")
    finally:
        agent.stop.set()
        thread.join(120)
    assert not thread.is_alive()
    context.close()
