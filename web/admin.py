"""The dashboard's admin section (``/admin``): devices, their settings and secrets, the passphrase, system status.

Mounted under ``/admin`` by the runtime; the Dashboard has already checked the session before any of this
runs. Pages are rendered per request (they are small and change with every action). Every state change is a
POST carrying the session's CSRF token and is answered with a redirect (post/redirect/get), except the two
pages that must show a device secret: it is shown once, in that POST's own response (``no-store``), and is
kept nowhere (not in the session, not in a cache, not in a URL). A resubmitted rotation is refused through a
one-time form token, so reloading the result cannot mint and show another secret.

Routes (relative to ``/admin``)::

    GET  /                         devices list + create form
    POST /devices                  create a device -> its secret and agent config, once
    GET  /devices/<hex id>         one device: heartbeat, settings form, actions
    POST /devices/<hex id>/settings|enabled|rotate|delete
    GET  /accounts     POST /accounts[/<name>/access|passphrase|remove] (admin_accounts.py)
    GET  /passphrase   POST /passphrase (the old address of /account/passphrase: account_passphrase.py)
    GET  /status       POST /status/retry   POST /status/test (a test event to one channel)
    GET  /channels     POST /channels/<name> (switch a channel on/off and set it: admin_channels.py)
    GET  /audit        the audit log, filtered and paged (admin_audit.py)

Issue 17: device and clip actions are recorded in the audit log by the domain functions themselves (the API
calls the same ones, so each action is recorded once); the actions only this section has (channels, test
events, passphrase, dead-letter retry) are recorded here, each marked ``audit``.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from cryospy import __version__
from cryospy.common.errors import CryoSpyError
from cryospy.common.keys import KeyStore, verify_key_fingerprint
from cryospy.common.objectkeys import device_from_hex, device_hex
from cryospy.functions.audit.log import AuditUnavailable
from cryospy.functions.channels.control import ChannelControl
from cryospy.functions.channels.errors import ChannelSettingsError
from cryospy.functions.devices import lifecycle
from cryospy.functions.devices.registry import Device
from cryospy.functions.devices.self_service import settings_in_sync, settings_report
from cryospy.functions.errors import ApiError, BadRequest, KeysLocked, NotFound
from cryospy.functions.services import Services

from . import admin_audit, admin_channels, admin_status
from .account_passphrase import AccountPassphrase
from .admin_accounts import AccountsPage
from .admin_forms import agent_config, form_to_settings, setting_name, settings_fields
from .server import Dashboard, Session, StartResponse

PREFIX = "/admin"
ONE_TIME_FORM_SECONDS = 3600


def device_path(device_id: str) -> str:
    """The device's admin page; ids may hold spaces and '+', so the path carries them hex-encoded (as the
    day pages do)."""
    return f"{PREFIX}/devices/{device_hex(device_id)}"


def _status(code: int) -> str:
    return f"{code} {HTTPStatus(code).phrase}"


class OneTimeForms:
    """Tokens for forms that must not take effect twice (a rotation shows a secret: a reload must not rotate
    again). Bound to the session and to what the form does; used up on the first submission."""

    def __init__(self, ttl: float = ONE_TIME_FORM_SECONDS, limit: int = 1000):
        self.ttl, self.limit = ttl, limit
        self._tokens: dict[str, tuple[str, str, float]] = {}
        self._lock = threading.Lock()

    def issue(self, session: Session, purpose: str) -> str:
        token = secrets.token_urlsafe(18)
        now = time.monotonic()
        with self._lock:
            self._tokens = {t: v for t, v in self._tokens.items() if v[2] > now}
            if len(self._tokens) >= self.limit:
                self._tokens.pop(next(iter(self._tokens)))
            self._tokens[token] = (session.token, purpose, now + self.ttl)
        return token

    def use(self, session: Session, purpose: str, token: str) -> bool:
        with self._lock:
            entry = self._tokens.get(token)
            if entry is None or entry[0] != session.token or entry[1] != purpose or entry[2] < time.monotonic():
                return False
            del self._tokens[token]
            return True


class AdminSection:
    """The ``/admin`` mount: ``(environ, start_response, session) -> body``."""

    def __init__(self, dashboard: Dashboard, services: Services, queue: Any, api_url: str, minio_url: str,
                 version: str = __version__, channels: ChannelControl | None = None, ca_pem: str = "",
                 drives: Callable[[], Any] | None = None, runtimes: Any = None):
        self.dashboard = dashboard
        self.services = services
        self.queue = queue
        self.api_url = api_url
        self.minio_url = minio_url
        self.ca_pem = ca_pem    # the deployment's CA (TLS): new agent configs carry it, MinIO's probe trusts it
        self.version = version
        self.started = time.monotonic()
        self.one_time = OneTimeForms()
        self.channels = channels
        self.accounts = AccountsPage(dashboard, services)
        self.passphrase = AccountPassphrase(dashboard, services)   # the old address, /admin/passphrase
        self.drives = drives    # MinIO's drives and their healing (infra.minio_drives.drive_report), if known
        self.runtimes = runtimes   # the runtimes sharing the database (infra.runtime_registry), if shared

    # -- routing -------------------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start: StartResponse, session: Session | None) -> list[bytes]:
        assert session is not None, "the admin section is mounted behind the login"
        path = (environ.get("PATH_INFO") or PREFIX)[len(PREFIX):].rstrip("/")
        method = environ["REQUEST_METHOD"]
        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        parts = path.strip("/").split("/") if path else []
        if method == "GET":
            if parts in ([], ["devices"]):
                return self.devices_page(start, session)
            if parts == ["passphrase"]:
                return self.passphrase.page(start, session, changed=query.get("changed") == "1")
            if parts and parts[0] == "accounts":
                return self.accounts(start, session, method, parts[1:], None, query) or self._not_found(start, session)
            if parts == ["status"]:
                return self.status_page(start, session, query)
            if parts == ["audit"]:   # issue 17
                return self.audit_page(start, session, query)
            if parts == ["channels"] and self.channels is not None:
                return self.channels_page(start, session, saved=query.get("saved", ""))
            if len(parts) == 2 and parts[0] == "devices":
                return self._with_device(start, session, parts[1], lambda d: self.device_page(
                    start, session, d, notice=_NOTICES.get(query.get("done", ""), "")))
            return self._not_found(start, session)
        if method != "POST":
            start("405 Method Not Allowed", [("Content-Length", "0"), ("Allow", "GET, POST")])
            return [b""]
        form = self.dashboard.form(environ, session)
        if form is None:
            return self.dashboard.forbidden(start, session)
        if parts == ["devices"]:
            return self.create(start, session, form)
        if parts == ["passphrase"]:
            return self.passphrase.change(environ, start, session, form)
        if parts and parts[0] == "accounts":
            return self.accounts(start, session, method, parts[1:], form, query) or self._not_found(start, session)
        if parts == ["status", "retry"]:
            return self.retry(start, session, form)
        if parts == ["status", "test"]:
            return self.send_test(start, session, form)
        if len(parts) == 2 and parts[0] == "channels" and self.channels is not None:
            return self.save_channel(start, session, parts[1], form)
        if len(parts) == 3 and parts[0] == "devices":
            action = self._device_actions().get(parts[2])
            if action is not None:
                return self._with_device(start, session, parts[1], lambda d: action(start, session, d, form))
        return self._not_found(start, session)

    def _device_actions(self) -> dict[str, Callable[..., list[bytes]]]:
        return {"settings": self.save_settings, "enabled": self.set_enabled, "rotate": self.rotate,
                "delete": self.delete}

    def _with_device(self, start: StartResponse, session: Session, hex_id: str,
                     then: Callable[[Device], list[bytes]]) -> list[bytes]:
        try:
            device = self.services.devices.get(device_from_hex(hex_id))
        except (ValueError, NotFound):
            return self._not_found(start, session)
        try:
            return then(device)
        except ApiError as exc:
            return self._message(start, session, exc.status, "That did not work", exc.message)
        except CryoSpyError as exc:
            return self._message(start, session, 503, "That did not work", str(exc))

    def _message(self, start: StartResponse, session: Session, code: int, title: str, message: str) -> list[bytes]:
        return self.dashboard.render(start, _status(code), "message.html", session, title=title, message=message)

    def _not_found(self, start: StartResponse, session: Session) -> list[bytes]:
        return self._message(start, session, 404, "Not found",
                             "There is no such admin page or device. Open the devices list from the Admin link.")

    # -- devices list and create -------------------------------------------------------------------------
    def devices_page(self, start: StartResponse, session: Session, status: int = 200,
                     errors: dict[str, str] | None = None, entered: str = "") -> list[bytes]:
        rows = [self._device_row(d) for d in self.services.devices.list()]
        return self.dashboard.render(start, _status(status), "admin_devices.html", session, devices=rows,
                                     errors=errors or {}, entered=entered, section="devices")

    def _device_row(self, device: Device) -> dict[str, Any]:
        try:
            used: int | None = self.services.index.usage(device.device_id).bytes
        except KeysLocked:
            used = None
        return {"id": device.device_id, "path": device_path(device.device_id), "state": _state(device),
                "last_seen": device.last_seen, "fingerprint": _fingerprint(device), "used_bytes": used,
                "sync": self._sync(device)}

    def _sync(self, device: Device) -> str:
        """"in sync", "not yet applied" (the camera reports older settings) or "" (nothing reported yet)."""
        if device.retired or not (device.heartbeat or {}).get("settings_etag"):
            return ""
        return "in sync" if settings_in_sync(self.services, device) else "not yet applied"

    def create(self, start: StartResponse, session: Session, form: dict[str, str]) -> list[bytes]:
        device_id = form.get("device_id", "").strip()
        try:
            created = lifecycle.create_device(self.services, {"device_id": device_id, "settings": {}})
        except ApiError as exc:
            return self.devices_page(start, session, exc.status, {exc.field or "form": exc.message}, device_id)
        except CryoSpyError as exc:
            return self.devices_page(start, session, 503, {"form": str(exc)}, device_id)
        return self._secret_page(start, session, created["device_id"], created["secret"], "created")

    def _secret_page(self, start: StartResponse, session: Session, device_id: str, secret: str,
                     what: str) -> list[bytes]:
        """The only page that ever carries a device secret; rendered into this response and forgotten."""
        config = agent_config(device_id, secret, self.api_url, self.services.vault.public_key().to_text(),
                              self.services.devices.get(device_id).storage_token, self.ca_pem)
        return self.dashboard.render(start, "200 OK", "admin_secret.html", session, device_id=device_id,
                                     device_path=device_path(device_id), secret=secret, config=config, what=what,
                                     section="devices")

    # -- one device ----------------------------------------------------------------------------------
    def device_page(self, start: StartResponse, session: Session, device: Device, status: int = 200,
                    submitted: dict[str, str] | None = None, errors: dict[str, str] | None = None,
                    notice: str = "") -> list[bytes]:
        errors = errors or {}
        heartbeat = dict(device.heartbeat or {})
        report = settings_report(self.services, device)
        return self.dashboard.render(
            start, _status(status), "admin_device.html", session, section="devices",
            device=device, state=_state(device), path=device_path(device.device_id),
            fingerprint=_fingerprint(device), heartbeat=heartbeat, report=report, sync=self._sync(device),
            fields=settings_fields(device.settings, submitted,
                                   {n: m for f, m in errors.items() if (n := setting_name(f))}),
            errors=errors, notice=notice, sync_seconds=device.settings.get("settings_sync_seconds"),
            rotate_token=self.one_time.issue(session, "rotate:" + device.device_id),
            delete_choice=(submitted or {}).get("clips", ""))

    def save_settings(self, start: StartResponse, session: Session, device: Device,
                      form: dict[str, str]) -> list[bytes]:
        try:
            update = form_to_settings(form, device.settings)
            if update:
                lifecycle.update_settings(self.services, device.device_id, update)
        except BadRequest as exc:
            return self.device_page(start, session, device, 400, submitted=form,
                                    errors={exc.field or "settings": exc.message})
        return self.dashboard.redirect(start, device_path(device.device_id) + ("?done=saved" if update else ""))

    def set_enabled(self, start: StartResponse, session: Session, device: Device,
                    form: dict[str, str]) -> list[bytes]:
        enabled = form.get("enabled") == "1"
        lifecycle.set_enabled(self.services, device.device_id, enabled)
        return self.dashboard.redirect(start, device_path(device.device_id)
                                       + ("?done=enabled" if enabled else "?done=disabled"))

    def rotate(self, start: StartResponse, session: Session, device: Device, form: dict[str, str]) -> list[bytes]:
        if not self.one_time.use(session, "rotate:" + device.device_id, form.get("once", "")):
            return self._message(start, session, 409, "Already rotated",
                                 "This rotation form was already used; its new secret was shown once and is not "
                                 "shown again. To get another secret, open the device page and rotate again.")
        rotated = lifecycle.rotate_secret(self.services, device.device_id)
        return self._secret_page(start, session, device.device_id, rotated["secret"], "rotated")

    def delete(self, start: StartResponse, session: Session, device: Device, form: dict[str, str]) -> list[bytes]:
        clips = form.get("clips") or None
        errors: dict[str, str] = {}
        if clips not in ("keep", "delete"):
            errors["clips"] = "Choose whether the device's clips are kept or deleted."
        if form.get("confirm", "").strip() != device.device_id:
            errors["confirm"] = f"Type the device id ({device.device_id}) exactly to confirm."
        if errors:
            return self.device_page(start, session, device, 400, submitted=form, errors=errors)
        lifecycle.delete_device(self.services, device.device_id, clips)
        return self.dashboard.redirect(start, PREFIX)

    # -- system status -------------------------------------------------------------------------------
    def status_page(self, start: StartResponse, session: Session, query: dict[str, str]) -> list[bytes]:
        counts = self.queue.counts()
        return self.dashboard.render(
            start, "200 OK", "admin_status.html", session, section="status",
            queue={state: counts.get(state, 0) for state in ("pending", "running", "dead", "done")},
            dead=admin_status.dead_letters(self.queue),
            minio=admin_status.minio_health(self.minio_url, ca_pem=self.ca_pem),
            storage=admin_status.storage(self.services), budget=self.services.global_budget_bytes,
            locked=self.services.vault.locked, uptime=admin_status.uptime_text(self.started),
            version=self.version, channels=self.services.home_events.status(),
            tested=query.get("tested", ""), audit=self._audit_check(),
            drives=self.drives() if self.drives else None,
            runtimes=admin_status.runtimes(self.runtimes) if self.runtimes else None)

    # -- audit log (issue 17) --------------------------------------------------------------------------
    def _audit_check(self) -> Any:
        self.dashboard.failures.flush()
        return self.services.audit.check(), self.services.audit.write_error

    def audit_page(self, start: StartResponse, session: Session, query: dict[str, str]) -> list[bytes]:
        self.dashboard.failures.flush()
        try:
            view = admin_audit.audit_view(self.services.audit, query)
        except KeysLocked as exc:
            return self._message(start, session, 503, "The audit log is locked", str(exc))
        except AuditUnavailable as exc:
            return self._message(start, session, 503, "The audit log cannot be read", str(exc))
        fingerprint = verify_key_fingerprint(KeyStore.load(self.services.vault.path).server_verify_key())
        return self.dashboard.render(start, "200 OK", "admin_audit.html", session, section="audit",
                                     fingerprint=fingerprint, **view)

    def send_test(self, start: StartResponse, session: Session, form: dict[str, str]) -> list[bytes]:
        name = form.get("channel", "")
        if name not in self.services.home_events.names:
            return self._message(start, session, 400, "That did not work", "No configured channel was named; reload "
                                                                               "the status page and try again.")
        self.services.home_events.send_test(name)
        self.services.audit.record("channel.test", channel=name)   # audit
        return self.dashboard.redirect(start, PREFIX + "/status?tested=" + name)

    # -- channels ------------------------------------------------------------------------------------
    def channels_page(self, start: StartResponse, session: Session, status: int = 200, saved: str = "",
                      submitted: dict[str, str] | None = None, failed: str = "", error: str = "") -> list[bytes]:
        assert self.channels is not None
        return self.dashboard.render(
            start, _status(status), "admin_channels.html", session, section="channels",
            cards=admin_channels.cards(self.channels, self.services.home_events.status(), submitted, failed, error),
            saved=saved if saved in admin_channels.TITLES else "", problem=self.channels.problem,
            smtp=self.channels.smtp_configured)

    def save_channel(self, start: StartResponse, session: Session, name: str, form: dict[str, str]) -> list[bytes]:
        assert self.channels is not None
        if name not in admin_channels.TITLES:
            return self._not_found(start, session)
        try:
            admin_channels.save(self.channels, name, form)
        except ChannelSettingsError as exc:
            return self.channels_page(start, session, 400, submitted=form, failed=name, error=str(exc))
        except KeysLocked as exc:
            return self._message(start, session, 503, "That did not work", str(exc))
        self.services.audit.record("channel.change", channel=name, enabled=form.get("enabled") == "on")   # audit
        return self.dashboard.redirect(start, PREFIX + "/channels?saved=" + name)

    def retry(self, start: StartResponse, session: Session, form: dict[str, str]) -> list[bytes]:
        try:
            job_id = int(form.get("job_id", ""))
        except ValueError:
            return self._message(start, session, 400, "That did not work", "No dead letter was named; reload the "
                                                                               "status page and try again.")
        self.queue.requeue_dead(job_id)
        self.services.audit.record("deadletter.retry", job=job_id)   # audit
        return self.dashboard.redirect(start, PREFIX + "/status")


_NOTICES = {
    "saved": "Settings saved. The camera picks them up at its next settings check.",
    "enabled": "The device is enabled: it may upload again.",
    "disabled": "The device is disabled: its uploads are refused until you enable it.",
}


def _state(device: Device) -> str:
    return "retired" if device.retired else "enabled" if device.enabled else "disabled"


def _fingerprint(device: Device) -> str:
    return device.signing_key_fingerprint or ""
