"""The dashboard's HTTP side: login, server-side sessions, and serving the rendered pages.

Every page needs a session. A login names an account (blank means ``admin``) and gives its passphrase, which
opens that account's key slot and so also unlocks the deployment's private key: a runtime started without one
begins processing as soon as anyone logs in. Each request looks the session's account up again, so a removed
or expired account's sessions end at once; a viewer gets only its cameras (:mod:`.access`) and no /admin URL.
Sessions live in this process's memory (a restart logs everyone out) or, with ``database_url``, in PostgreSQL
for every runtime of the deployment (:mod:`.sessions`, :mod:`.pg_login_state`); the cookie is HttpOnly,
SameSite=Strict, and Secure when the request came over TLS. Forms carry a CSRF token bound to the session
(or, for the login form, to a pre-session cookie). Failed logins are limited per client and globally
(:mod:`.login_limiter`); a one-time link made on the server (:mod:`.login_links`) always gets its account in.

Every login, failed login and logout goes to the audit log (failures aggregated per source and interval,
``functions/audit/failures.py``), and requests of a session run as its account (``functions/audit/actor.py``)
so that the actions they cause are recorded once, as that account. An account with a second factor
(:mod:`.second_factor`) is asked for its code at ``/login/code`` after the passphrase; when the admin requires
one for everyone, an account without it is sent to enrolment (``/account/second-factor``) and nowhere else until
it has one. A login link skips the code: it proves access to the server itself, and is the way back in for an
account that lost both the phone and the recovery codes.
"""

from __future__ import annotations

import base64
import hmac
import logging
import os
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.cookies import SimpleCookie
from importlib import resources
from typing import Any, Protocol
from urllib.parse import parse_qs

from jinja2 import Environment, PackageLoader, select_autoescape

from cryospy.common import database
from cryospy.common.accounts import ADMIN, Account
from cryospy.common.errors import CryoSpyError
from cryospy.common.keys import KeyStoreError, WrongPassphrase
from cryospy.functions.audit.actor import Actor, acting_as
from cryospy.functions.audit.failures import FailedLogins
from cryospy.functions.audit.log import AuditLog, NoAudit
from cryospy.functions.errors import StoreUnavailable

from . import access
from .compression import gzip_response
from .login_limiter import Limiter, LoginLimiter, LoginThrottled
from .login_links import LinkInvalid, Links
from .second_factor import SecondFactor, SecondFactorError, WrongCode
from .sessions import MemorySessions, SessionStore
from .site_store import SiteStore

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
SESSION_COOKIE = "cryospy_session"
PRELOGIN_COOKIE = "cryospy_prelogin"
SESSION_SECONDS = 12 * 3600
CODE_COOKIE = "cryospy_code"         # the passphrase was right, the second factor is asked next
CODE_SECONDS = 300
ENROL_PATH = "/account/second-factor"
MAX_FORM_BODY = 16 * 1024   # the largest form post (the runtime refuses bigger bodies before reading them)
_STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


@dataclass(frozen=True)
class Session:
    """A logged-in account's session, as handed to mounted sections (``token`` never leaves the server).
    ``account`` is the record as the key store holds it at this request."""

    token: str
    csrf: str
    account: Account
    must_enrol: bool = False   # a second factor is required and the account has none: enrolment only


class AccountDirectory(Protocol):
    """Where logins are checked and accounts looked up: the runtime's KeyVault."""

    def login(self, name: str, passphrase: str) -> Account:
        """The account, if ``passphrase`` opens its key slot; raises a KeyStoreError otherwise."""
        ...

    def account(self, name: str) -> Account | None:
        """The account as it is now, or None if it no longer exists."""
        ...


# A mounted section of the dashboard: (environ, start_response, session) -> body. ``session`` is None only for
# public mounts (first-run setup), which must do their own checks.
Mount = Callable[[dict[str, Any], StartResponse, "Session | None"], Any]
# The media endpoint: (environ, start_response, account) -> body; it answers only for the account's cameras.
Media = Callable[[dict[str, Any], StartResponse, Account], Any]


class Dashboard:
    """The dashboard's front door. Sections (admin, export, setup) are mounted under a path prefix and get
    the session; they use ``render``, ``form`` and ``redirect`` so that headers and CSRF checks stay in one place."""

    def __init__(self, site: SiteStore, accounts: AccountDirectory,
                 on_first_login: Callable[[], None] = lambda: None,
                 media: Media | None = None,
                 actions: dict[str, Callable[[dict[str, str]], None]] | None = None,
                 mounts: dict[str, Mount] | None = None, public_mounts: dict[str, Mount] | None = None,
                 links: Links | None = None, locked: Callable[[], bool] = lambda: False,
                 clock: Callable[[], float] = time.time,
                 audit: AuditLog | NoAudit | None = None, second_factor: SecondFactor | None = None,
                 sessions: SessionStore | None = None, limiter: Limiter | None = None):
        self.site = site
        self.media = media
        self.actions = actions or {}
        self.mounts = dict(mounts or {})
        self.public_mounts = dict(public_mounts or {})
        self.accounts = accounts
        self.on_first_login = on_first_login
        self.sessions: SessionStore = sessions or MemorySessions()
        self.limiter: Limiter = limiter or LoginLimiter()
        self.links = links
        self.locked = locked
        self.clock = clock   # sessions and account expiry are judged by this
        self.audit = audit or NoAudit()
        self.failures = FailedLogins(self.audit)
        self.second_factor = second_factor
        self.env = Environment(loader=PackageLoader("cryospy.web", "templates"),
                               autoescape=select_autoescape(["html"]))
        self.env.globals["camera_hex"] = access.camera_hex

    # -- helpers -------------------------------------------------------------------------------------
    def _session(self, environ: dict[str, Any]) -> Session | None:
        """The request's session, if its account still exists and has not expired (else the session ends)."""
        token = _cookies(environ).get(SESSION_COOKIE)
        if not token:
            return None
        now = self.clock()
        record = self.sessions.get(token, now)
        if record is None:
            return None
        account = self.accounts.account(record.account)
        if account is None or account.expired(datetime.fromtimestamp(now, UTC)):
            # A locked runtime sees no accounts at all: a shared session may be alive on the other runtimes, so
            # only this request is refused (logging in here unlocks this runtime).
            if not (self.sessions.shared and self.locked()):
                self.sessions.end(token)
            return None
        return Session(token, record.csrf, account, record.must_enrol)

    def _cookie(self, environ: dict[str, Any], name: str, value: str, max_age: int) -> tuple[str, str]:
        secure = "; Secure" if environ.get("wsgi.url_scheme") == "https" else ""
        return ("Set-Cookie", f"{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")

    def _html(self, start: StartResponse, status: str, html: str,
              extra: list[tuple[str, str]] | None = None) -> list[bytes]:
        data = html.encode()
        headers = [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(data))),
                   ("Cache-Control", "private, no-store"), ("X-Content-Type-Options", "nosniff"),
                   ("X-Frame-Options", "DENY"), ("Referrer-Policy", "no-referrer"),
                   ("Content-Security-Policy", "default-src 'self'; img-src 'self' blob: data:; "
                    "media-src 'self' blob:; frame-ancestors 'none'; form-action 'self'")]
        start(status, headers + (extra or []))
        return [data]

    # -- for mounted sections -------------------------------------------------------------------------
    def render(self, start: StartResponse, status: str, template: str, session: Session | None,
               **context: Any) -> list[bytes]:
        """Render a template (extending base.html) with the security headers every page gets."""
        html = self.env.get_template(template).render(csrf=mask_csrf(session.csrf) if session else "", **context)
        return self._html(start, status, access.filtered(html, session.account) if session else html)

    def form(self, environ: dict[str, Any], session: Session) -> dict[str, str] | None:
        """The posted form if it carries the session's CSRF token, else None (answer 403 then)."""
        form = _form(environ)
        return form if csrf_matches(form.get("csrf", ""), session.csrf) else None

    def forbidden(self, start: StartResponse, session: Session | None) -> list[bytes]:
        return self.render(start, "403 Forbidden", "message.html", session, title="Refused",
                           message="This form expired or did not come from this dashboard. Reload and try again.")

    def redirect(self, start: StartResponse, to: str) -> list[bytes]:
        return self._redirect(start, to)

    def end_other_sessions(self, keep: Session) -> int:
        """Log out every other session of ``keep``'s account (its passphrase changed: whoever knew the old one is
        out); returns how many ended."""
        return self.end_sessions(keep.account.name, keep=keep.token)

    def end_sessions(self, account: str, keep: str = "") -> int:
        """End every session of ``account`` (but the one whose token is ``keep``); returns how many ended."""
        return self.sessions.end_account(account, keep)

    def start_session(self, environ: dict[str, Any], account: str = ADMIN) -> tuple[str, str]:
        """Log ``account`` in without the login form (first-run setup just set the admin passphrase): a new
        server-side session; returns its Set-Cookie header for the response."""
        now = self.clock()
        token, _ = self.sessions.start(account, now + SESSION_SECONDS, now)
        self.audit.record("login", Actor(account, "setup", environ.get("REMOTE_ADDR", "")))
        return self._cookie(environ, SESSION_COOKIE, token, SESSION_SECONDS)

    def _redirect(self, start: StartResponse, to: str, extra: list[tuple[str, str]] | None = None) -> list[bytes]:
        start("302 Found", [("Location", to), ("Content-Length", "0"), ("Cache-Control", "no-store")]
              + (extra or []))
        return [b""]

    # -- routes --------------------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start: StartResponse) -> Any:
        try:
            return gzip_response(self._route, environ, start)
        except Exception as exc:
            # MinIO or the shared database down (docs/postgres.md): a page saying so and when to retry, not a 500
            # that looks like a bug. Anything else is one and stays a 500.
            if not (isinstance(exc, StoreUnavailable) or database.unavailable(exc)):
                raise
            part = "MinIO" if isinstance(exc, StoreUnavailable) else "The database (PostgreSQL)"
            log.warning("dashboard %s: %s is unavailable: %s", environ.get("PATH_INFO"), part, exc)
            data = (f"<!doctype html><title>Unavailable</title><p>{part} is unavailable right now, so this page "
                    "cannot be shown. Nothing is lost: try again in a moment.</p>").encode()
            start("503 Service Unavailable", [
                ("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(data))),
                ("Retry-After", "5"), ("Cache-Control", "no-store")], sys.exc_info())
            return [data]

    def _route(self, environ: dict[str, Any], start: StartResponse) -> list[bytes]:
        path, method = environ.get("PATH_INFO") or "/", environ["REQUEST_METHOD"]
        if path.startswith("/static/"):
            return self._static(environ, start, path[len("/static/"):])
        if path == "/login":
            return self._login(environ, start, method)
        if path == "/login/link" and self.links is not None:
            return self._login_link(environ, start, method)
        if path == "/login/code":
            return self._login_code(environ, start, method)
        public = _mount_for(self.public_mounts, path)
        if public is not None:
            return public(environ, start, None)
        session = self._session(environ)
        if session is None:
            return self._redirect(start, "/login")
        if path == "/logout" and method == "POST":
            return self._logout(environ, start, session)
        # Everything this session does is recorded as its account; TOTP required and none yet -> enrol first.
        with acting_as(Actor(session.account.name, "dashboard", environ.get("REMOTE_ADDR", ""))):
            if session.must_enrol and not path.startswith(ENROL_PATH):
                return self._redirect(start, ENROL_PATH)
            return self._route_session(environ, start, path, method, session)

    def _route_session(self, environ: dict[str, Any], start: StartResponse, path: str, method: str,
                       session: Session) -> list[bytes]:
        if access.admin_only(path) and not session.account.is_admin:
            # Before any form is read: a viewer's post is refused even with a CSRF token from another session.
            return self._html(start, "404 Not Found", access.NO_SUCH_PAGE)
        mounted = _mount_for(self.mounts, path)
        if mounted is not None:
            return mounted(environ, start, session)
        if path.startswith("/media/") and self.media is not None and method in ("GET", "HEAD"):
            return self.media(environ, start, session.account)
        if path.startswith("/actions/") and method == "POST":
            return self._action(environ, start, session, path[len("/actions/"):])
        if method != "GET":
            start("405 Method Not Allowed", [("Content-Length", "0")])
            return [b""]
        page = "index" if path in ("/", "/index.html") else path.strip("/")
        html = self.site.get(page) if access.may_open_page(session.account, page) else None
        if html is None:
            if page == "index":
                html = self.env.get_template("overview.html").render(devices=[], rendered_at="",
                                                                     csrf=mask_csrf(session.csrf))
                return self._html(start, "200 OK", access.filtered(html, session.account))
            return self._html(start, "404 Not Found", access.NO_SUCH_PAGE)
        # Pages are rendered once for everyone; the account's view and the per-session CSRF token are made at
        # serve time.
        html = access.filtered(html, session.account)
        return self._html(start, "200 OK", html.replace("__CSRF_TOKEN__", mask_csrf(session.csrf)))

    def _static(self, environ: dict[str, Any], start: StartResponse, name: str) -> list[bytes]:
        """Project assets from ``static/``, and ``vendor/`` (hls.js, copied from the npm package by ``./dev``;
        never committed, never fetched from a CDN). A precompressed ``.gz`` is sent when the client takes gzip."""
        ext = name[name.rfind("."):] if "." in name else ""
        if "/" in name or ext not in _STATIC_TYPES:
            start("404 Not Found", [("Content-Length", "0")])
            return [b""]
        gzip_ok = "gzip" in environ.get("HTTP_ACCEPT_ENCODING", "")
        for folder in ("static", "vendor"):
            base = resources.files("cryospy.web").joinpath(folder)
            for candidate, encoding in (((name + ".gz"), "gzip"), (name, None)) if gzip_ok else ((name, None),):
                try:
                    data = base.joinpath(candidate).read_bytes()
                except (FileNotFoundError, NotADirectoryError, OSError):
                    continue
                headers = [("Content-Type", _STATIC_TYPES[ext]), ("Content-Length", str(len(data))),
                           ("Cache-Control", "private, max-age=300"), ("Vary", "Accept-Encoding")]
                if encoding:
                    headers.append(("Content-Encoding", encoding))
                start("200 OK", headers)
                return [data]
        start("404 Not Found", [("Content-Length", "0")])
        return [b""]

    def _login(self, environ: dict[str, Any], start: StartResponse, method: str) -> list[bytes]:
        cookies = _cookies(environ)
        pre = cookies.get(PRELOGIN_COOKIE) or secrets.token_urlsafe(24)
        set_pre = [self._cookie(environ, PRELOGIN_COOKIE, pre, 900)]
        if method == "GET":
            html = self.env.get_template("login.html").render(csrf=pre, public=True)
            return self._html(start, "200 OK", html, set_pre)
        if method != "POST":
            start("405 Method Not Allowed", [("Content-Length", "0")])
            return [b""]
        form = _form(environ)
        if not hmac.compare_digest(form.get("csrf", ""), cookies.get(PRELOGIN_COOKIE, "\0")):
            html = self.env.get_template("login.html").render(
                csrf=pre, public=True, error="The form expired. Please try again.")
            return self._html(start, "403 Forbidden", html, set_pre)
        name = form.get("name", "").strip().lower() or ADMIN
        address = environ.get("REMOTE_ADDR", "")

        def again(status: str, error: str) -> list[bytes]:
            html = self.env.get_template("login.html").render(csrf=pre, public=True, error=error, name=name)
            return self._html(start, status, html, set_pre)

        try:
            claim = self.limiter.claim(environ.get("REMOTE_ADDR", ""))   # counted before scrypt runs
        except LoginThrottled as exc:
            self.failures.refused(address)
            return again("429 Too Many Requests", exc.message)
        try:
            account = self.accounts.login(name, form.get("passphrase", ""))
        except KeyStoreError as exc:
            self.failures.failed(name, "dashboard", address, "wrong passphrase")
            if isinstance(exc, WrongPassphrase):
                return again("401 Unauthorized", "Wrong name or passphrase.")
            return again("403 Forbidden", str(exc))
        self.limiter.succeeded(claim)
        if self._has_second_factor(account.name):
            return self._ask_code(environ, start, account.name, "dashboard")
        return self._logged_in(environ, start, account, "dashboard")

    def _logged_in(self, environ: dict[str, Any], start: StartResponse, account: Account,
                   via: str = "dashboard", detail: dict[str, str] | None = None) -> list[bytes]:
        now, must_enrol = self.clock(), self._must_enrol(account.name)
        token, _ = self.sessions.start(account.name, now + SESSION_SECONDS, now, must_enrol)
        self.on_first_login()
        self.audit.record("login", Actor(account.name, via, environ.get("REMOTE_ADDR", "")), **(detail or {}))
        return self._redirect(start, ENROL_PATH if must_enrol else "/",
                              [self._cookie(environ, SESSION_COOKIE, token, SESSION_SECONDS),
                               self._cookie(environ, PRELOGIN_COOKIE, "", 0),
                               self._cookie(environ, CODE_COOKIE, "", 0)])
    # -- the second factor at login ----------------------------------------------------------
    def _has_second_factor(self, account: str) -> bool:
        try:
            return self.second_factor is not None and self.second_factor.enrolled(account)
        except SecondFactorError:
            return True    # an unreadable store must not let a login skip its code; the code page says why

    def _must_enrol(self, account: str) -> bool:
        try:
            return (self.second_factor is not None and self.second_factor.required()
                    and not self.second_factor.enrolled(account))
        except SecondFactorError:
            return False

    def enrolled(self, session: Session) -> None:
        """The session's account has just enrolled: it may go everywhere again."""
        self.sessions.enrolled(session.token)

    def _ask_code(self, environ: dict[str, Any], start: StartResponse, account: str, via: str) -> list[bytes]:
        now = self.clock()
        token = self.sessions.start_pending(account, via, now + CODE_SECONDS, now)
        return self._redirect(start, "/login/code", [self._cookie(environ, CODE_COOKIE, token, CODE_SECONDS)])

    def _login_code(self, environ: dict[str, Any], start: StartResponse, method: str) -> list[bytes]:
        """The second step of a login: a TOTP code or a recovery code. Wrong codes count in the login limiter
        like wrong passphrases; the pending login lasts 5 minutes."""
        cookies = _cookies(environ)
        pre = cookies.get(PRELOGIN_COOKIE) or secrets.token_urlsafe(24)
        set_pre = [self._cookie(environ, PRELOGIN_COOKIE, pre, 900)]
        token = cookies.get(CODE_COOKIE, "")
        pending = self.sessions.get_pending(token, self.clock()) if token else None
        if pending is None or self.second_factor is None:
            return self._redirect(start, "/login")

        def page(status: str, error: str = "") -> list[bytes]:
            html = self.env.get_template("login_code.html").render(csrf=pre, public=True, error=error)
            return self._html(start, status, html, set_pre)

        if method == "GET":
            return page("200 OK")
        if method != "POST":
            start("405 Method Not Allowed", [("Content-Length", "0")])
            return [b""]
        form = _form(environ)
        if not hmac.compare_digest(form.get("csrf", ""), cookies.get(PRELOGIN_COOKIE, "\0")):
            return page("403 Forbidden", "The form expired. Please try again.")
        address, account, via = environ.get("REMOTE_ADDR", ""), pending.account, pending.via
        try:
            claim = self.limiter.claim(address)
        except LoginThrottled as exc:
            self.failures.refused(address)
            return page("429 Too Many Requests", exc.message)
        try:
            used = self.second_factor.check(account, form.get("code", "")[:64])
        except WrongCode as exc:
            self.failures.failed(account, via, address, f"second factor: {exc}")
            return page("401 Unauthorized", f"That code did not work ({exc}).")
        except SecondFactorError as exc:
            return page("503 Service Unavailable", str(exc))
        self.limiter.succeeded(claim)
        self.sessions.end_pending(token)
        found = self.accounts.account(account)       # removed or expired while the code was asked for
        if found is None or found.expired(datetime.fromtimestamp(self.clock(), UTC)):
            return self._redirect(start, "/login")
        return self._logged_in(environ, start, found, via, {"second_factor": used})


    def _login_link(self, environ: dict[str, Any], start: StartResponse, method: str) -> list[bytes]:
        """A one-time link from ``cryospy dashboard login-link``: GET shows a button (so that nothing that merely
        fetches the URL uses it up), POST redeems it. Not rate-limited: a token cannot be guessed. A locked
        runtime also needs the passphrase, to unlock the footage; a wrong one uses the link up."""
        assert self.links is not None
        cookies = _cookies(environ)
        pre = cookies.get(PRELOGIN_COOKIE) or secrets.token_urlsafe(24)
        set_pre = [self._cookie(environ, PRELOGIN_COOKIE, pre, 900)]

        def page(status: str, token: str = "", error: str = "") -> list[bytes]:
            html = self.env.get_template("login_link.html").render(csrf=pre, public=True, token=token,
                                                                   locked=self.locked(), error=error)
            return self._html(start, status, html, set_pre)

        if method not in ("GET", "POST"):
            start("405 Method Not Allowed", [("Content-Length", "0")])
            return [b""]
        if method == "GET":
            token = (parse_qs(environ.get("QUERY_STRING", "")).get("token") or [""])[0]
            try:
                self.links.check(token)
            except LinkInvalid as exc:
                return page("403 Forbidden", error=str(exc))
            return page("200 OK", token=token)
        form = _form(environ)
        if not hmac.compare_digest(form.get("csrf", ""), cookies.get(PRELOGIN_COOKIE, "\0")):
            return page("403 Forbidden", token=form.get("token", ""), error="The form expired. Please try again.")
        address = environ.get("REMOTE_ADDR", "")
        try:
            name = self.links.redeem(form.get("token", ""))
        except LinkInvalid as exc:
            self.failures.failed(ADMIN, "link", address, "invalid login link")
            return page("403 Forbidden", error=str(exc))
        try:
            # A locked runtime needs the account's passphrase to unlock the footage; else the account must
            # still exist and not have expired, exactly as for a session.
            account = self.accounts.login(name, form.get("passphrase", "")) if self.locked() \
                else self.accounts.account(name)
        except KeyStoreError:
            account = None
        if account is None or account.expired(datetime.fromtimestamp(self.clock(), UTC)):
            self.failures.failed(name, "link", address, "wrong passphrase or the account no longer works")
            return page("401 Unauthorized", error="Wrong passphrase, or the link's account no longer works; this "
                                                  "link is used up. Make a new one on the server with `cryospy "
                                                  "dashboard login-link`.")
        # A link proves access to the server itself, so it is the way back in when the second factor is lost.
        return self._logged_in(environ, start, account, "link")

    def _action(self, environ: dict[str, Any], start: StartResponse, session: Session,
                name: str) -> list[bytes]:
        """A state-changing form post (admins only): refused without the session's CSRF token; then back."""
        form = _form(environ)
        if not csrf_matches(form.get("csrf", ""), session.csrf):
            return self._html(start, "403 Forbidden", "<!doctype html><p>This form expired or did not come from "
                              "this dashboard. <a href='/'>Back</a></p>")
        action = self.actions.get(name)
        if action is None:
            return self._html(start, "404 Not Found", "<!doctype html><p>No such action. <a href='/'>Back</a></p>")
        try:
            action(form)
        except CryoSpyError as exc:
            return self._html(start, "400 Bad Request", self.env.get_template("message.html").render(
                csrf=mask_csrf(session.csrf), title="That did not work", message=str(exc)))
        target = form.get("next", "/")
        if not target.startswith("/") or target.startswith("//"):
            target = "/"
        return self._redirect(start, target)

    def _logout(self, environ: dict[str, Any], start: StartResponse, session: Session) -> list[bytes]:
        form = _form(environ)
        if not csrf_matches(form.get("csrf", ""), session.csrf):
            start("403 Forbidden", [("Content-Length", "0")])
            return [b""]
        self.sessions.end(session.token)
        self.audit.record("logout")
        return self._redirect(start, "/login", [self._cookie(environ, SESSION_COOKIE, "", 0)])


def mask_csrf(secret: str) -> str:
    """The session's CSRF token XOR a fresh pad, pad first: a different string in every response, so a compressed
    page does not leak the token to a BREACH-style length oracle (pages are gzip-encoded)."""
    raw = secret.encode()
    pad = os.urandom(len(raw))
    return base64.urlsafe_b64encode(pad + bytes(a ^ b for a, b in zip(pad, raw, strict=True))).decode().rstrip("=")


def csrf_matches(value: str, secret: str) -> bool:
    """True for the masked form of ``secret`` (what pages carry) and for ``secret`` itself."""
    if hmac.compare_digest(value.encode(), secret.encode()):
        return True
    try:
        blob = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (ValueError, TypeError):
        return False
    half = len(blob) // 2
    if half == 0 or half * 2 != len(blob):
        return False
    return hmac.compare_digest(bytes(a ^ b for a, b in zip(blob[:half], blob[half:], strict=True)), secret.encode())


def _mount_for(mounts: dict[str, Mount], path: str) -> Mount | None:
    for prefix, handler in mounts.items():
        if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
            return handler
    return None


def _cookies(environ: dict[str, Any]) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(environ.get("HTTP_COOKIE", ""))
    except Exception:
        return {}
    return {k: m.value for k, m in jar.items()}


def _form(environ: dict[str, Any]) -> dict[str, str]:
    try:
        length = min(int(environ.get("CONTENT_LENGTH") or 0), MAX_FORM_BODY)
    except ValueError:
        length = 0
    raw = environ["wsgi.input"].read(length).decode("utf-8", "replace") if length else ""
    return {k: v[0] for k, v in parse_qs(raw).items()}
