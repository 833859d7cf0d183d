"""The second-factor page of an account (``/account/second-factor``): enrol, see what is left, switch it off;
for the admin also the "require for everyone" setting.

Routes (any logged-in account; the setting only for the admin)::

    GET  /account/second-factor            status, or the "set up" button
    POST /account/second-factor/start      a new secret: QR code (SVG drawn here) and the secret as text
    POST /account/second-factor/confirm    the first code proves the app has it -> recovery codes, shown once
    POST /account/second-factor/disable    needs a current code (or a recovery code)
    POST /account/second-factor/require    admin: require a second factor for every account

The secret being enrolled waits in memory, bound to the session, until it is confirmed; it never goes into a
form field, a URL or a log. Recovery codes appear only in the confirming POST's own (``no-store``) response.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from cryospy.functions.errors import KeysLocked

from .login_limiter import LoginThrottled
from .second_factor import SecondFactor, SecondFactorError, WrongCode, qr_svg
from .server import ENROL_PATH, Dashboard, Session

StartResponse = Callable[..., Any]
MAX_PENDING = 100


class SecondFactorPages:
    def __init__(self, dashboard: Dashboard, store: SecondFactor):
        self.dashboard, self.store = dashboard, store
        self._pending: dict[str, str] = {}   # session token -> secret waiting for its first code
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start: StartResponse, session: Session | None) -> list[bytes]:
        assert session is not None, "mounted behind the login"
        action = (environ.get("PATH_INFO") or "")[len(ENROL_PATH):].strip("/")
        method = environ["REQUEST_METHOD"]
        try:
            if method == "GET" and action == "":
                return self.page(start, session)
            if method != "POST" or action not in ("start", "confirm", "disable", "require"):
                return self._message(start, session, "404 Not Found", "No such page.")
            form = self.dashboard.form(environ, session)
            if form is None:
                return self.dashboard.forbidden(start, session)
            return getattr(self, action)(environ, start, session, form)
        except (SecondFactorError, KeysLocked) as exc:
            return self._message(start, session, "503 Service Unavailable", str(exc))

    def page(self, start: StartResponse, session: Session, status: str = "200 OK", **extra: Any) -> list[bytes]:
        enrolled = self.store.enrolled(session.account.name)
        return self.dashboard.render(
            start, status, "second_factor.html", session, section="second-factor", account=session.account.name,
            enrolled=enrolled, left=self.store.recovery_left(session.account.name) if enrolled else 0,
            required=self.store.required(), must_enrol=session.must_enrol,
            is_admin=session.account.is_admin, **extra)

    def start(self, environ: dict[str, Any], start: StartResponse, session: Session,
              form: dict[str, str]) -> list[bytes]:
        secret = self.store.new_secret()
        with self._lock:
            while len(self._pending) >= MAX_PENDING:
                self._pending.pop(next(iter(self._pending)))
            self._pending[session.token] = secret
        return self._enrol_page(start, session, secret)

    def _enrol_page(self, start: StartResponse, session: Session, secret: str, status: str = "200 OK",
                    error: str = "") -> list[bytes]:
        uri = self.store.uri(secret, session.account.name)
        return self.page(start, session, status, enrolling=True, qr=qr_svg(uri), secret=secret, error=error)

    def confirm(self, environ: dict[str, Any], start: StartResponse, session: Session,
                form: dict[str, str]) -> list[bytes]:
        with self._lock:
            secret = self._pending.get(session.token)
        if secret is None:
            return self.page(start, session, "409 Conflict", error="Start the set-up again: this form was used.")
        try:
            codes = self.store.confirm(session.account.name, secret, form.get("code", "")[:16])
        except WrongCode as exc:
            return self._enrol_page(start, session, secret, "400 Bad Request",
                                    f"That code did not work ({exc}); type the code the app shows now.")
        with self._lock:
            self._pending.pop(session.token, None)
        self.dashboard.enrolled(session)
        self.dashboard.audit.record("second-factor.enrol")
        return self.page(start, session, recovery=codes)

    def disable(self, environ: dict[str, Any], start: StartResponse, session: Session,
                form: dict[str, str]) -> list[bytes]:
        limiter = self.dashboard.limiter
        address = environ.get("REMOTE_ADDR", "")
        try:
            claim = limiter.claim(address)
        except LoginThrottled as exc:
            return self.page(start, session, "429 Too Many Requests", error=exc.message)
        try:
            self.store.disable(session.account.name, form.get("code", "")[:64])
        except WrongCode as exc:
            self.dashboard.failures.failed(session.account.name, "dashboard", address, f"second factor: {exc}")
            return self.page(start, session, "400 Bad Request", error=f"That code did not work ({exc}).")
        limiter.succeeded(claim)
        self.dashboard.audit.record("second-factor.disable")
        return self.dashboard.redirect(start, ENROL_PATH)

    def require(self, environ: dict[str, Any], start: StartResponse, session: Session,
                form: dict[str, str]) -> list[bytes]:
        if not session.account.is_admin:
            return self._message(start, session, "403 Forbidden", "Only the admin can change this setting.")
        on = form.get("required") == "1"
        if on and not self.store.enrolled(session.account.name):
            return self.page(start, session, "400 Bad Request",
                             error="Set up your own second factor first, then require it for everyone.")
        self.store.set_required(on)
        self.dashboard.audit.record("second-factor.require", required=on)
        return self.dashboard.redirect(start, ENROL_PATH)

    def _message(self, start: StartResponse, session: Session, status: str, message: str) -> list[bytes]:
        return self.dashboard.render(start, status, "message.html", session, title="Second factor", message=message)
