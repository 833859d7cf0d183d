"""First-run setup in the browser: the admin chooses the passphrase on ``/setup`` instead of on the command line.

A deployment made with ``cryospy setup --browser`` has no key store. Until one exists, every dashboard page
redirects to ``/setup`` (:meth:`FirstRun.gate`), while the device API and the webhook keep working: events
queue durably and wait for the keys like they do for a locked runtime.

Anyone on the LAN can open ``/setup``, so claiming the system needs a one-time **setup code** that only someone
with a shell on the server can read: it is made at start-up, kept in a 0600 file in the data directory
(``setup-code.txt``), and never logged. Wrong codes are rate-limited per address like failed logins. The form
carries a CSRF token bound to a pre-session cookie, as the login form does. A good code and passphrase create
the key store (exactly once: :meth:`KeyVault.initialise` refuses if a store exists, also after a restart),
unlock it, remove the code file, log the admin in and trigger the first full render.
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Callable
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Any

from cryospy.common.accounts import ADMIN, Account
from cryospy.common.keys import KeyStoreExists
from cryospy.functions.errors import BadRequest
from cryospy.functions.keyvault import MIN_PASSPHRASE_CHARS, KeyVault, check_new_passphrase

from .login_limiter import LoginLimiter, LoginThrottled
from .server import Dashboard, Session, StartResponse

SETUP_CODE_FILE = "setup-code.txt"
PRESETUP_COOKIE = "cryospy_presetup"
SETUP_PATH = "/setup"
WsgiApp = Callable[[dict[str, Any], StartResponse], Any]


class SetupCode:
    """The one-time code that proves the person at the browser can read files on the server."""

    def __init__(self, path: Path):
        self.path = path
        self._value: str | None = None

    def issue(self) -> str:
        """A fresh code, written to a new 0600 file (replacing one from an earlier start, whose code is void)."""
        value = secrets.token_urlsafe(12)
        self.path.unlink(missing_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(value + "\n")
        self._value = value
        return value

    def matches(self, candidate: str) -> bool:
        value = self._value
        return value is not None and hmac.compare_digest(candidate.strip().encode(), value.encode())

    def discard(self) -> None:
        self._value = None
        self.path.unlink(missing_ok=True)


class FirstRun:
    """The ``/setup`` page (a public dashboard mount) and the gate that sends every other page there."""

    def __init__(self, dashboard: Dashboard, vault: KeyVault, code_path: Path, on_complete: Callable[[], None],
                 *, scrypt_n: int | None = None, limiter: LoginLimiter | None = None):
        self.dashboard = dashboard
        self.vault = vault
        self.code = SetupCode(code_path)
        self.on_complete = on_complete
        self.scrypt_n = scrypt_n
        self.limiter = limiter or LoginLimiter()

    @property
    def needed(self) -> bool:
        return self.vault.needs_setup

    def begin(self) -> Path | None:
        """At start-up: issue a setup code if setup is still needed (returns its file), else drop a stale file."""
        if not self.needed:
            self.code.discard()
            return None
        self.code.issue()
        return self.code.path

    def gate(self, app: WsgiApp) -> WsgiApp:
        """Wrap the dashboard: until setup is done, every page but ``/setup`` and static assets goes there."""

        def gated(environ: dict[str, Any], start: StartResponse) -> Any:
            path = environ.get("PATH_INFO") or "/"
            if self.needed and not (path.startswith("/static/") or path == SETUP_PATH
                                    or path.startswith(SETUP_PATH + "/")):
                return self.dashboard.redirect(start, SETUP_PATH)
            return app(environ, start)

        return gated

    # -- the /setup page ----------------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start: StartResponse, session: Session | None) -> Any:
        method = environ["REQUEST_METHOD"]
        if not self.needed:
            if method == "POST":
                return self._done(start)
            return self.dashboard.redirect(start, "/login")
        pre = _presetup_token(environ) or secrets.token_urlsafe(24)
        if method in ("GET", "HEAD"):
            return self._form(environ, start, "200 OK", pre)
        if method != "POST":
            start("405 Method Not Allowed", [("Content-Length", "0")])
            return [b""]
        return self._submit(environ, start, pre)

    def _submit(self, environ: dict[str, Any], start: StartResponse, pre: str) -> Any:
        # The pre-session token stands in for a session's CSRF token (there is no session before setup).
        form = self.dashboard.form(environ, Session(token="", csrf=pre, account=Account(ADMIN, "admin")))
        if form is None:
            return self._form(environ, start, "403 Forbidden", pre, error="The form expired. Please try again.")
        try:
            claim = self.limiter.claim(environ.get("REMOTE_ADDR", ""))   # counted before the code is compared
        except LoginThrottled as exc:
            return self._form(environ, start, "429 Too Many Requests", pre, errors={
                "code": f"Too many wrong setup codes. Try again in {int(exc.wait) + 1} s."})
        if not self.code.matches(form.get("code", "")):
            return self._form(environ, start, "403 Forbidden", pre, errors={
                "code": f"Wrong setup code. Copy it again from {SETUP_CODE_FILE}."})
        self.limiter.succeeded(claim)   # the code was right: not a failed guess
        passphrase = form.get("passphrase", "")
        try:
            check_new_passphrase(passphrase, form.get("repeat", ""))
        except BadRequest as exc:
            return self._form(environ, start, "400 Bad Request", pre, errors={exc.field or "passphrase": exc.message},
                              code=form.get("code", ""))   # the code was right: keep it in the form
        try:
            self.vault.initialise(passphrase, scrypt_n=self.scrypt_n)
        except KeyStoreExists:
            return self._done(start)
        self.code.discard()
        cookie = self.dashboard.start_session(environ)
        self.on_complete()
        return self.dashboard.redirect(_with_headers(start, [cookie, _presetup_cookie(environ, "", 0)]), "/")

    def _form(self, environ: dict[str, Any], start: StartResponse, status: str, pre: str, *,
              errors: dict[str, str] | None = None, error: str = "", code: str = "") -> Any:
        """The form (again), with its pre-session cookie set or renewed."""
        start = _with_headers(start, [_presetup_cookie(environ, pre, 900)])
        return self.dashboard.render(start, status, "setup.html", None, public=True, setup_csrf=pre,
                                     errors=errors or {}, error=error, code=code, min_chars=MIN_PASSPHRASE_CHARS,
                                     code_file=SETUP_CODE_FILE)

    def _done(self, start: StartResponse) -> Any:
        return self.dashboard.render(start, "409 Conflict", "message.html", None, public=True,
                                     title="Already set up",
                                     message="CryoSpy already has an admin passphrase. Log in with it at /login.")


def _presetup_token(environ: dict[str, Any]) -> str:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(environ.get("HTTP_COOKIE", ""))
    except CookieError:
        return ""
    morsel = jar.get(PRESETUP_COOKIE)
    return morsel.value if morsel is not None else ""


def _presetup_cookie(environ: dict[str, Any], value: str, max_age: int) -> tuple[str, str]:
    secure = "; Secure" if environ.get("wsgi.url_scheme") == "https" else ""
    return ("Set-Cookie", f"{PRESETUP_COOKIE}={value}; Path={SETUP_PATH}; HttpOnly; SameSite=Strict; "
                          f"Max-Age={max_age}{secure}")


def _with_headers(start: StartResponse, extra: list[tuple[str, str]]) -> StartResponse:
    """``start_response`` that adds ``extra`` headers, so the dashboard's render/redirect can carry cookies."""

    def start_with(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return start(status, headers + extra, exc_info) if exc_info else start(status, headers + extra)

    return start_with
