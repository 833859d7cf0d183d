"""Admin → Accounts (``/admin/accounts``): add, change and remove dashboard accounts.

Each account is a key slot in the key store (:mod:`cryospy.common.keys`); the vault changes it with the master
key it holds while unlocked, so the admin does not type their own passphrase again. Bad input (a taken or bad
name, a viewer without cameras, an unknown camera, an expiry in the past, a weak passphrase) gets a 400 with
the message beside its field and changes nothing. Removing an account ends its sessions at once.

Routes (relative to ``/admin``)::

    GET  /accounts                      the accounts and the form to add one
    POST /accounts                      add
    POST /accounts/<name>/access        a viewer's cameras and expiry
    POST /accounts/<name>/passphrase    set a new passphrase (only that slot is rewrapped)
    POST /accounts/<name>/remove        remove (type the name to confirm)
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

from cryospy.common.accounts import (
    MIN_PASSPHRASE_CHARS,
    Account,
    AccountError,
    changed_account,
    check_passphrase,
    check_removal,
    new_account,
    parse_expiry,
)
from cryospy.common.errors import CryoSpyError
from cryospy.functions.services import Services

from .access import camera_from_hex, camera_hex
from .server import Dashboard, Session, StartResponse

PATH = "/admin/accounts"
_NOTICES = {"added": "Account added. It logs in with its name and its own passphrase.",
            "changed": "Access changed; it applies from the account's next request.",
            "passphrase": "Passphrase set. Only that account's key slot was rewrapped.",
            "removed": "Account removed: its key slot is destroyed and its sessions have ended."}


class AccountsPage:
    def __init__(self, dashboard: Dashboard, services: Services):
        self.dashboard, self.services = dashboard, services

    def __call__(self, start: StartResponse, session: Session, method: str, parts: list[str],
                 form: dict[str, str] | None, query: dict[str, str]) -> list[bytes] | None:
        """The answer for ``/admin/accounts…`` (``parts`` after ``accounts``), or None for no such route."""
        if method == "GET" and not parts:
            return self.page(start, session, notice=_NOTICES.get(query.get("done", ""), ""))
        if method != "POST" or form is None:
            return None
        if not parts:
            return self.add(start, session, form)
        if len(parts) == 2 and parts[1] in ("access", "passphrase", "remove"):
            account = self.services.vault.account(parts[0])
            if account is None:
                return None
            return getattr(self, parts[1])(start, session, account, form)
        return None

    def page(self, start: StartResponse, session: Session, status: str = "200 OK", errors: dict[str, str] | None
             = None, entered: dict[str, str] | None = None, failed: str = "", notice: str = "") -> list[bytes]:
        now = datetime.now(UTC)
        chosen_new = [camera_from_hex(k[4:]) for k in (entered or {}) if k.startswith("cam-")] if failed == "new" \
            else []
        return self.dashboard.render(
            start, status, "admin_accounts.html", session, section="accounts", accounts=self.services.vault.accounts(),
            cameras=self.cameras(), camera_hex=camera_hex, errors=errors or {}, entered=entered or {},
            failed=failed, notice=notice, now=now, chosen_new=chosen_new, me=session.account.name,
            min_chars=MIN_PASSPHRASE_CHARS)

    def cameras(self) -> list[str]:
        every = {d.device_id for d in self.services.devices.list()}
        with contextlib.suppress(CryoSpyError):   # the index is locked: registered cameras only
            every |= set(self.services.index.devices())
        return sorted(every)

    def _chosen(self, form: dict[str, str]) -> list[str]:
        known = set(self.cameras())
        chosen = [camera_from_hex(k[4:]) or "" for k, v in form.items() if k.startswith("cam-") and v]
        unknown = [c for c in chosen if c not in known]
        if unknown:
            raise AccountError("a chosen camera does not exist (any more); reload the page and choose again",
                               "cameras")
        return chosen

    def add(self, start: StartResponse, session: Session, form: dict[str, str]) -> list[bytes]:
        name, passphrase = form.get("name", "").strip(), form.get("passphrase", "")
        now = datetime.now(UTC)
        try:
            existing = {a.name: a for a in self.services.vault.accounts()}
            account = new_account(name, form.get("role", ""), self._chosen(form),
                                  parse_expiry(form.get("expires", ""), now), now, existing)
            check_passphrase(passphrase, name)
            if form.get("repeat", "") != passphrase:
                raise AccountError("the two passphrases differ; type the same passphrase twice", "repeat")
            self.services.vault.add_account(account, passphrase)
        except AccountError as exc:
            return self.page(start, session, "400 Bad Request", {exc.field: exc.message}, form, failed="new")
        self.services.audit.record("account.add", subject=account.name, role=account.role,
                                   cameras=",".join(sorted(account.cameras)), expires=form.get("expires", ""))
        return self.dashboard.redirect(start, PATH + "?done=added")

    def access(self, start: StartResponse, session: Session, account: Account, form: dict[str, str]) -> list[bytes]:
        now = datetime.now(UTC)
        try:
            if account.is_admin:
                raise AccountError("an admin sees every camera and does not expire; nothing to change", "cameras")
            changed = changed_account(account, self._chosen(form), parse_expiry(form.get("expires", ""), now), now)
            self.services.vault.update_account(changed)
        except AccountError as exc:
            return self.page(start, session, "400 Bad Request", {exc.field: exc.message}, form, failed=account.name)
        self.services.audit.record("account.access", subject=changed.name, cameras=",".join(sorted(changed.cameras)),
                                   expires=form.get("expires", ""))
        return self.dashboard.redirect(start, PATH + "?done=changed")

    def passphrase(self, start: StartResponse, session: Session, account: Account,
                   form: dict[str, str]) -> list[bytes]:
        new = form.get("passphrase", "")
        try:
            check_passphrase(new, account.name)
            if form.get("repeat", "") != new:
                raise AccountError("the two passphrases differ; type the same passphrase twice", "repeat")
            self.services.vault.set_passphrase(account.name, new)
        except AccountError as exc:
            return self.page(start, session, "400 Bad Request", {exc.field: exc.message}, failed=account.name)
        self.dashboard.end_sessions(account.name, keep=session.token)   # whoever knew the old one is out
        self.services.audit.record("account.passphrase", subject=account.name)
        return self.dashboard.redirect(start, PATH + "?done=passphrase")

    def remove(self, start: StartResponse, session: Session, account: Account, form: dict[str, str]) -> list[bytes]:
        try:
            if form.get("confirm", "").strip() != account.name:
                raise AccountError(f"type the account's name ({account.name}) exactly to confirm", "confirm")
            check_removal(account.name, {a.name: a for a in self.services.vault.accounts()})
            self.services.vault.remove_account(account.name)
        except AccountError as exc:
            return self.page(start, session, "400 Bad Request", {exc.field: exc.message}, failed=account.name)
        self.dashboard.end_sessions(account.name)
        self.services.audit.record("account.remove", subject=account.name)
        return self.dashboard.redirect(start, PATH + "?done=removed")

