"""Issue 17, the second factor, in Debian's Chromium against the real runtime: enrolment with a QR code drawn on
the server, a wrong code, a replayed code, recovery codes that work once each, and "require for everyone"
sending an account without a second factor to enrolment. Every step also lands in the audit log."""

from __future__ import annotations

import time
from typing import Any

import pyotp
import pytest

from tests.conftest import PASSPHRASE

from .conftest import ARTIFACTS, login

pytestmark = pytest.mark.integration
PAGE = "/account/second-factor"


def _code(secret: str, steps_ahead: int = 0) -> str:
    return pyotp.TOTP(secret).at(time.time() + 30 * steps_ahead)


def _log_in(browser: Any, base: str) -> tuple[Any, Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(base + "/login")
    page.fill("input[name=passphrase]", PASSPHRASE)
    page.click("button[type=submit]")
    return context, page


def _enter_code(page: Any, code: str) -> Any:
    page.fill("input[name=code]", code)
    with page.expect_navigation() as nav:
        page.click("form.code-form button[type=submit]")
    return nav.value


def _enrol(page: Any, base: str) -> tuple[str, list[str]]:
    page.goto(base + PAGE)
    page.click("form.start-form button")
    assert page.query_selector(".qr-code svg path")          # drawn here, inline: nothing fetched
    secret = page.inner_text("code.totp-secret")
    page.fill("input[name=code]", "000000" if _code(secret) != "000000" else "111111")
    page.click("form.confirm-form button")
    assert "That code did not work" in page.inner_text("p.error")
    page.fill("input[name=code]", _code(secret))
    page.click("form.confirm-form button")
    codes = [c.inner_text() for c in page.query_selector_all("ul.recovery-codes code")]
    assert len(codes) == 10 and len(set(codes)) == 10
    page.screenshot(path=str(ARTIFACTS / "second-factor-recovery-codes.png"))
    page.reload()                                             # shown once: a reload shows no codes
    assert not page.query_selector("ul.recovery-codes")
    return secret, codes


def test_enrol_wrong_and_replayed_codes_recovery_codes_and_require_for_everyone(browser, runtime, deployment):
    base = deployment.runtime_url
    store = deployment.path("runtime", "second-factor.sealed")
    audit_start = len(runtime.services.audit.lines())
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        context, page = login(browser, base)
        secret, recovery = _enrol(page, base)
        assert secret not in store.read_bytes().decode("latin-1")      # sealed at rest
        assert secret not in runtime.services.audit.path.read_text()
        context.close()

        # Passphrase, then the code page; a wrong code fails and counts in the login limiter.
        context, page = _log_in(browser, base)
        page.wait_for_url(base + "/login/code")
        before = runtime.dashboard.limiter.tracked()
        assert _enter_code(page, "000000" if _code(secret, 1) != "000000" else "111111").status == 401
        assert "That code did not work" in page.inner_text("p.error")
        assert runtime.dashboard.limiter.tracked() >= max(before, 1)
        used = _code(secret, 1)                       # the next step: later than the one enrolment used
        assert _enter_code(page, used).url == base + "/"
        context.close()

        # The same code again (same time step): refused.
        context, page = _log_in(browser, base)
        page.wait_for_url(base + "/login/code")
        assert _enter_code(page, used).status == 401
        assert "used already" in page.inner_text("p.error")
        # A recovery code works once ...
        assert _enter_code(page, recovery[0]).url == base + "/"
        context.close()
        context, page = _log_in(browser, base)
        page.wait_for_url(base + "/login/code")
        assert _enter_code(page, recovery[0]).status == 401          # ... and only once
        assert _enter_code(page, recovery[1].upper()).url == base + "/"
        page.goto(base + PAGE)
        assert page.inner_text(".recovery-left") == "8"

        # Require it for everyone, then switch the admin's own off: the next login is sent to enrolment.
        page.check("form.require-form input[name=required]")
        page.click("form.require-form button")
        page.fill("form.disable-form input[name=code]", recovery[2])
        page.click("form.disable-form button")
        assert page.query_selector("form.start-form")
        context.close()
        context, page = _log_in(browser, base)
        page.wait_for_url(base + PAGE)
        assert "requires a second factor" in page.inner_text("p.notice.required")
        page.goto(base + "/admin")
        assert page.url == base + PAGE                          # nowhere else until enrolled
        secret2, _ = _enrol(page, base)
        page.goto(base + "/admin")
        assert page.url == base + "/admin"
        context.close()

        kinds = [(e.kind, e.detail.get("second_factor", e.detail.get("reason", "")))
                 for e in runtime.services.audit.entries()[audit_start:]]
        assert ("second-factor.enrol", "") in kinds and ("second-factor.require", "") in kinds
        assert ("login", "code") in kinds and ("login", "recovery") in kinds
        assert any(k == "login.failed" and r.startswith("second factor") for k, r in kinds)
        assert ("second-factor.disable", "") in kinds
        assert secret2 not in runtime.services.audit.path.read_text()
    finally:
        store.unlink(missing_ok=True)          # the deployment is shared: later tests log in with the passphrase
