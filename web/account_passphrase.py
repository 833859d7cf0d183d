"""``/account/passphrase``: every account changes its own passphrase here, admins and viewers alike.

Only the account's own key slot is rewrapped (``KeyStore.change_passphrase``): no other account and no clip is
touched. Wrong guesses of the current passphrase count against the address exactly as failed logins do (the
login limiter) and go to the audit log; after a change every other session of the account ends, since whoever
knew the old passphrase may be one of them. ``/admin/passphrase`` (the old address) answers the same way.
"""

from __future__ import annotations

from typing import Any

from cryospy.common.errors import CryoSpyError
from cryospy.common.keys import WrongPassphrase
from cryospy.functions.errors import BadRequest
from cryospy.functions.keyvault import MIN_PASSPHRASE_CHARS, check_new_passphrase
from cryospy.functions.services import Services

from .login_limiter import LoginThrottled
from .server import Dashboard, Session, StartResponse

PATH = "/account/passphrase"


class AccountPassphrase:
    def __init__(self, dashboard: Dashboard, services: Services):
        self.dashboard, self.services = dashboard, services

    def __call__(self, environ: dict[str, Any], start: StartResponse, session: Session | None) -> list[bytes]:
        assert session is not None, "mounted behind the login"
        method = environ["REQUEST_METHOD"]
        if method == "GET":
            return self.page(start, session, changed="changed=1" in environ.get("QUERY_STRING", ""))
        if method != "POST":
            start("405 Method Not Allowed", [("Content-Length", "0"), ("Allow", "GET, POST")])
            return [b""]
        form = self.dashboard.form(environ, session)
        if form is None:
            return self.dashboard.forbidden(start, session)
        return self.change(environ, start, session, form)

    def page(self, start: StartResponse, session: Session, status: str = "200 OK",
             errors: dict[str, str] | None = None, changed: bool = False) -> list[bytes]:
        return self.dashboard.render(start, status, "account_passphrase.html", session, section="passphrase",
                                     errors=errors or {}, changed=changed, min_chars=MIN_PASSPHRASE_CHARS,
                                     is_admin=session.account.is_admin, account=session.account.name)

    def change(self, environ: dict[str, Any], start: StartResponse, session: Session,
               form: dict[str, str]) -> list[bytes]:
        current, new = form.get("current", ""), form.get("passphrase", "")
        address = environ.get("REMOTE_ADDR", "")
        try:
            check_new_passphrase(new, form.get("repeat", ""))
        except BadRequest as exc:
            return self.page(start, session, "400 Bad Request", {exc.field or "passphrase": exc.message})
        limiter = self.dashboard.limiter
        try:
            claim = limiter.claim(address)   # counted before scrypt runs
        except LoginThrottled as exc:
            return self.page(start, session, "429 Too Many Requests", {
                "current": f"Too many wrong passphrases. Try again in {int(exc.wait) + 1} s."})
        try:
            self.services.vault.store().change_passphrase(current, new, account=session.account.name)
        except WrongPassphrase:
            self.dashboard.failures.failed(session.account.name, "passphrase-form", address, "wrong current passphrase")
            return self.page(start, session, "400 Bad Request",
                             {"current": "That is not the current passphrase. Nothing was changed."})
        except CryoSpyError as exc:
            limiter.succeeded(claim)   # not a wrong passphrase: give the attempt back
            return self.page(start, session, "400 Bad Request", {"current": str(exc)})
        limiter.succeeded(claim)
        self.services.audit.record("passphrase.change")
        self.dashboard.end_other_sessions(session)
        return self.dashboard.redirect(start, PATH + "?changed=1")
