"""``cryospy serve``: the self-hosted runtime that stands in for API Gateway, Lambda and S3 event delivery.

One process, one WSGI server (waitress), three front doors:

    /_minio/events   MinIO's webhook → durable job queue → worker pool → @app.on_s3_event handlers
    /v1/...          the Chalice app (device and admin API)
    everything else  the dashboard (login, rendered pages, static assets)

By default one listener answers all of them; with ``dashboard_port`` the dashboard (and the admin API) get a
listener of their own and the device listener answers only what cameras and MinIO need (front_door.py).
With ``tls`` both speak HTTPS with the deployment's certificate (certificates.py).

Start-up reads like a table of contents: build services, provision MinIO, wire the index to the dashboard
builder, start workers, the reconciler and the HTTP server.
"""

from __future__ import annotations

import contextvars
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from waitress import wasyncore
from waitress.server import create_server

from cryospy.common.keys import KeyStore
from cryospy.functions import services as services_mod
from cryospy.functions.alerts.mailer import Mailer, SmtpSettings
from cryospy.functions.alerts.rules import AlertPolicy, Alerts
from cryospy.functions.api.client_ip import parse_trusted_proxies
from cryospy.functions.app import OBJECT_HANDLERS, app
from cryospy.functions.audit.log import AuditLog
from cryospy.functions.channels import feed
from cryospy.functions.channels.build import build_hub
from cryospy.functions.channels.control import ChannelControl, MailSettings
from cryospy.functions.channels.mqtt import Instance
from cryospy.functions.channels.presence import PresenceWatch
from cryospy.functions.channels.stored import StoredChannels
from cryospy.functions.keyvault import KeyVault
from cryospy.functions.retention import clip_actions
from cryospy.functions.services import EventSink, S3Identity, Services
from cryospy.web.account_passphrase import PATH as PASSPHRASE_PATH
from cryospy.web.account_passphrase import AccountPassphrase
from cryospy.web.admin import AdminSection
from cryospy.web.builder import SiteBuilder
from cryospy.web.export import ExportSection
from cryospy.web.first_run import SETUP_CODE_FILE, FirstRun
from cryospy.web.media_routes import MediaRoutes
from cryospy.web.second_factor import SecondFactor
from cryospy.web.second_factor_pages import SecondFactorPages
from cryospy.web.server import ENROL_PATH, Dashboard
from cryospy.web.site_store import SiteStore

from . import certificates, front_door
from .bootstrap import provision
from .deployment import Deployment
from .device_identities import MinioDeviceIdentities, upgrade_legacy_identities
from .dispatcher import Dispatcher
from .event_routes import Route, routes_from_app
from .gateway import ChaliceWSGI, status_line
from .live_sweep import LiveSweeper
from .minio_drives import drive_report
from .minio_server import require_free
from .pg_documents import SharedDocuments
from .reconciler import Reconciler
from .runtime_registry import RuntimeRegistry
from .server_config import ServerConfig, load_server_config
from .stores import (
    CHANNELS,
    KEYS,
    SECOND_FACTOR,
    open_alert_limits,
    open_audit_lines,
    open_auth_defence,
    open_device_registry,
    open_heartbeat,
    open_index,
    open_job_store,
    open_live,
    open_login_state,
    open_presence,
    open_shared_documents,
    open_slot_limiter,
    runtime_name,
    shared_file,
)
from .webhook import WebhookReceiver

log = logging.getLogger(__name__)
OUTBUF_HIGH_WATERMARK = 4 * 1024 * 1024
OUTBUF_OVERFLOW = 64 * 1024 * 1024   # never reached: writers block at the high watermark first


def mqtt_instance(runtimes: RuntimeRegistry | None) -> Instance | None:
    """This runtime's MQTT identity among the runtimes in ``runtimes`` (None for a runtime on its own)."""
    if runtimes is None:
        return None
    return Instance(Instance.tag_of(runtimes.name), lambda: [Instance.tag_of(r.name) for r in runtimes.list()])


def build_services(dep: Deployment, config: ServerConfig, mailer: Mailer | None, *, event_sink: EventSink,
                   live_waiters: int = 4, runtimes: RuntimeRegistry | None = None,
                   shared: SharedDocuments | None = None) -> Services:
    """Every part the app and handlers use, built once. ``event_sink`` is where upload confirmations queue
    new clips (the runtime's webhook); ``live_waiters`` bounds the live-view long-polls held at once, so they
    leave the server's threads for everything else; ``runtimes``: the registry of the runtimes sharing the
    database, if any (each then has its own MQTT identity: functions/channels/mqtt.py). ``shared``: the
    documents every runtime shares when there is a database (the key store here)."""
    dep.path("runtime").mkdir(parents=True, exist_ok=True, mode=0o700)
    vault = KeyVault(dep.keys_path, mirror=shared_file(shared, KEYS, dep.keys_path))
    defence = open_auth_defence(dep, config)
    # The hub asks for the camera list at each MQTT connect, long after this returns.
    hub = build_hub(config.channels, mailer=mailer, recipients=config.alert_recipients,
                    cameras=lambda: feed.camera_states(services), instance=mqtt_instance(runtimes))
    alerts = (Alerts(mailer, config.alert_recipients, open_alert_limits(dep, config),
                     alert_policy(config)) if mailer else Alerts.off())
    services = Services(
        bucket=dep.bucket,
        presigner=S3Identity(dep.devices_minio_url, dep.presigner_user, dep.presigner_secret, dep.region, dep.ca_file),
        handler=S3Identity(dep.minio_url, dep.handler_user, dep.handler_secret, dep.region, dep.ca_file),
        devices=open_device_registry(dep, config),
        index=open_index(dep, config, vault.index_key),
        vault=vault,
        admin_token=dep.admin_token,
        max_clip_bytes=config.max_clip_bytes,
        slot_ttl_seconds=config.slot_ttl_seconds,
        identities=MinioDeviceIdentities(dep),
        proxy_auth=config.proxy_auth,
        defence=defence,
        alerts=alerts,
        event_sink=event_sink,
        live=open_live(dep, config, live_waiters),
        storage_warning_threshold=config.storage_warning_threshold,
        global_budget_bytes=config.global_budget_bytes,
        quarantine_limit_bytes=config.quarantine_bytes,
        slot_limiter=open_slot_limiter(dep, config),
        silent_minutes=config.silent_minutes,
        home_events=hub,
        presence=open_presence(dep, config),
        audit=audit_log(dep, vault, config),
    )
    services.presence.prime((d.device_id, d.last_seen) for d in services.devices.list() if not d.retired)
    return services


def audit_log(dep: Deployment, vault: KeyVault, config: ServerConfig) -> AuditLog:
    """The audit log in the data dir, or with a database one log for every runtime (each entry names its
    runtime): sealed to the deployment's public key (so a locked runtime can write it), signed with the key
    store's server key while unlocked (functions/audit/log.py)."""
    def verify_key() -> Any:
        return KeyStore.load(vault.path).server_verify_key() if vault.path.exists() else None
    shared = open_audit_lines(dep, config)
    return AuditLog(dep.path("runtime", "audit.log"), vault.public_key, vault.keys, verify_key, store=shared,
                    runtime=runtime_name(dep) if shared else "")


def channel_control(dep: Deployment, config: ServerConfig, services: Services, mailer: Mailer | None,
                    shared: SharedDocuments | None = None) -> ChannelControl:
    """Channels as server.json and the dashboard set them; the saved ones are read at the first unlock."""
    path = dep.path("runtime", "channels.sealed")
    control = ChannelControl(services, config.channels_doc,
                             MailSettings(config.alert_recipients, config.attach_thumbnails), mailer,
                             StoredChannels(path, services.vault.index_key, shared_file(shared, CHANNELS, path)))
    services.vault.add_unlock_listener(control.load)
    control.load()
    return control


def alert_policy(config: ServerConfig) -> AlertPolicy:
    minutes = config.alert_intervals_minutes
    defaults = AlertPolicy()
    return AlertPolicy(
        motion_interval_s=minutes.get("motion", defaults.motion_interval_s / 60) * 60,
        storage_interval_s=minutes.get("storage", defaults.storage_interval_s / 60) * 60,
        silent_interval_s=minutes.get("silent", defaults.silent_interval_s / 60) * 60,
        tamper_interval_s=minutes.get("tamper", defaults.tamper_interval_s / 60) * 60,
        attach_thumbnails=config.attach_thumbnails,
    )


@dataclass
class RuntimeOptions:
    workers: int = 2
    threads: int = 8
    reconcile_seconds: float = 300.0
    live_sweep_seconds: float = 30.0
    provision: bool = True
    setup_scrypt_n: int | None = None   # tests only: a cheap KDF for the key store first-run setup creates


class RuntimeApp:
    """The WSGI application: routes each request to the webhook, the Chalice app or the dashboard."""

    def __init__(self, webhook: WebhookReceiver, api: ChaliceWSGI, dashboard: Callable[..., list[bytes]]):
        self.webhook, self.api, self.dashboard = webhook, api, dashboard

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        # Each request in a copy of the thread's context: the audit actor one request sets (functions/audit/
        # actor.py) must not carry over to the next request served by this thread.
        return contextvars.copy_context().run(self._route, environ, start_response)

    def _route(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path == "/_minio/events":
            if environ["REQUEST_METHOD"] != "POST":
                start_response(status_line(405), [("Content-Length", "0")])
                return [b""]
            length = int(environ.get("CONTENT_LENGTH") or 0)   # the front door refused more than the cap
            body = environ["wsgi.input"].read(min(length, front_door.body_limit(path) + 1))
            result = self.webhook.handle(environ.get("HTTP_AUTHORIZATION"), body)
            data = json.dumps(result.body).encode()
            start_response(status_line(result.status), [("Content-Type", "application/json"),
                                                        ("Content-Length", str(len(data)))])
            return [data]
        if path.startswith("/v1/") or path == "/health":
            return self.api(environ, start_response)
        return self.dashboard(environ, start_response)


class Runtime:
    def __init__(self, dep: Deployment, options: RuntimeOptions | None = None, config: ServerConfig | None = None):
        self.dep = dep
        self.options = options or RuntimeOptions()
        config = config or load_server_config(dep.path("server.json"))
        self._init_events(config)
        self._init_services(config)
        self._init_dashboard(config)
        self._init_front_door(config)
        self._server: Any = None
        self._map: dict[int, Any] = {}   # waitress's socket map: every listener and connection of this runtime
        self._thread: threading.Thread | None = None
        self._http_stop = threading.Event()
        self._rebuild_lock = threading.Lock()
        self._rebuilt = False

    def _init_events(self, config: ServerConfig) -> None:
        """Bucket events: the routes from the app's registrations, the durable queue (with the heartbeat that
        renews its leases when it is shared), MinIO's webhook."""
        self.routes: list[Route] = routes_from_app(app, OBJECT_HANDLERS)
        self.queue = open_job_store(self.dep, config)
        self.heartbeat = open_heartbeat(self.dep, config, self.queue)
        self.webhook = WebhookReceiver(self.dep.webhook_token, self.routes, self.queue)

    def _init_services(self, config: ServerConfig) -> None:
        """What the handlers use (Services), the channels, and the background workers around them."""
        mailer = Mailer(SmtpSettings.from_dict(config.smtp)) if config.smtp else None
        self.shared = open_shared_documents(self.dep, config)
        self.services = build_services(self.dep, config, mailer, event_sink=self.webhook,
                                       live_waiters=max(1, self.options.threads // 2),
                                       runtimes=self.heartbeat.registry, shared=self.shared)
        self.channels = channel_control(self.dep, config, self.services, mailer, self.shared)
        self.presence = PresenceWatch(self.services.presence, self.services.home_events.publish)
        self.dispatcher = Dispatcher(self.queue, self.routes, workers=self.options.workers)
        self.reconciler = Reconciler(self.services, self.routes, self.queue, self.options.reconcile_seconds)
        self.live_sweeper = LiveSweeper(lambda: self.services.handler_client, self.services.bucket,
                                        self.options.live_sweep_seconds)

    def _init_dashboard(self, config: ServerConfig) -> None:
        """The rendered pages (rebuilt as the index changes), login, sessions and the dashboard's sections."""
        dep, services = self.dep, self.services
        self.site = SiteStore(dep.path("site"), services.vault.index_key)
        enrolments = dep.path("runtime", "second-factor.sealed")
        self.enrolments_mirror = shared_file(self.shared, SECOND_FACTOR, enrolments)
        self.second_factor = SecondFactor(enrolments, services.vault.index_key, mirror=self.enrolments_mirror)
        self.builder = SiteBuilder(services.index, services.devices, self.site)
        services.index.add_listener(self.builder.on_index_change)
        self.login_state = open_login_state(dep, config)   # shared by every runtime with database_url
        self.dashboard = Dashboard(self.site, services.vault, self._after_login,
                                   media=MediaRoutes(services), actions=self._dashboard_actions(),
                                   links=self.login_state.links, locked=lambda: services.vault.locked,
                                   audit=services.audit, second_factor=self.second_factor,
                                   sessions=self.login_state.sessions, limiter=self.login_state.limiter)
        # A deployment without a key store starts in "needs setup": pages go to /setup, the vault stays locked.
        self.first_run = FirstRun(self.dashboard, services.vault, dep.path(SETUP_CODE_FILE), self._after_login,
                                  scrypt_n=self.options.setup_scrypt_n)
        self.setup_code_path: Path | None = None
        self._mount_dashboard_sections()
        self._watch_shared()

    def _watch_shared(self) -> None:
        """With a database, apply what another runtime changes: accounts and keys (a removed account's
        sessions end at their next request here too), saved channels (swapped in), second-factor enrolments."""
        vault, enrolments = self.services.vault, self.enrolments_mirror
        if self.shared is None or vault.mirror is None or enrolments is None:
            return
        keys = vault.mirror

        def accounts_changed() -> None:
            if keys.pull():
                vault.refresh()

        self.shared.watch(KEYS, accounts_changed)
        self.shared.watch(CHANNELS, self.channels.reload)
        self.shared.watch(SECOND_FACTOR, enrolments.pull)

    def _init_front_door(self, config: ServerConfig) -> None:
        """One WSGI app for webhook, API and dashboard behind the front door (Host check, proxies, body caps)."""
        self.wsgi = front_door.FrontDoor(
            RuntimeApp(self.webhook, ChaliceWSGI(app), self.first_run.gate(self.dashboard)),
            front_door.host_names(self.dep.host, self.dep.public_api_url,
                                  (*config.allowed_hosts, *self.dep.tls_names, self.dep.dashboard_host)),
            tuple(str(n) for n in parse_trusted_proxies(config.trusted_proxies)))

    def _dashboard_actions(self) -> dict[str, Any]:
        """What the dashboard's forms may do: the same domain functions the admin API calls."""
        services = self.services
        return {
            "protect": lambda form: clip_actions.set_protected(
                services, {"key": form.get("key", ""), "protected": form.get("protected") == "1"}),
        }

    def _mount_dashboard_sections(self) -> None:
        """Sections of the dashboard that live in their own modules, each under a path prefix.

        ``dashboard.mounts`` need a session; ``dashboard.public_mounts`` (first-run setup only) do not."""
        mounts = self.dashboard.mounts
        mounts["/admin"] = AdminSection(self.dashboard, self.services, self.queue, self.dep.api_url, self.dep.minio_url,
                                        channels=self.channels, ca_pem=certificates.ca_pem(self.dep),
                                        drives=lambda: drive_report(self.dep),
                                        runtimes=self.heartbeat.registry)
        mounts["/export"] = ExportSection(self.dashboard, self.services)
        mounts[ENROL_PATH] = SecondFactorPages(self.dashboard, self.second_factor)
        mounts[PASSPHRASE_PATH] = AccountPassphrase(self.dashboard, self.services)
        self.dashboard.public_mounts["/setup"] = self.first_run

    def _after_login(self) -> None:
        # Only the first unlock needs a full render (the encrypted index just became readable); later logins
        # must not queue another rebuild, whose cost grows with the history.
        with self._rebuild_lock:
            if self._rebuilt:
                return
            self._rebuilt = True
        threading.Thread(target=self._safe_rebuild, daemon=True).start()

    def _safe_rebuild(self) -> None:
        try:
            self.builder.rebuild_all()
        except Exception:
            log.exception("dashboard rebuild failed")

    def unlock(self, passphrase: str) -> None:
        self.services.vault.unlock(passphrase)

    def listeners(self) -> list[front_door.Listener]:
        """Where the runtime listens: one listener for everything, or the device API and the dashboard apart."""
        dep = self.dep
        tls = certificates.server_context(dep) if dep.tls else None
        if not dep.dashboard_port:
            return [front_door.Listener(dep.listen_host, dep.runtime_port, front_door.ALL, tls)]
        return [front_door.Listener(dep.listen_host, dep.runtime_port, front_door.DEVICE, tls),
                front_door.Listener(dep.dashboard_listen_host, dep.dashboard_port, front_door.DASHBOARD, tls)]

    def start(self) -> Runtime:
        listeners = self.listeners()
        for listener in listeners:
            require_free(listener.host, listener.port, f"the CryoSpy runtime ({listener.family} routes)")
        services_mod.configure(self.services)
        self.setup_code_path = self.first_run.begin()
        if self.setup_code_path is not None:
            log.warning("first-run setup needed: open %s/setup and enter the one-time setup code from %s",
                        self.dep.dashboard_url, self.setup_code_path)
        self._map = {}
        self._server = create_server(self.wsgi, map=self._map, sockets=front_door.listening_sockets(listeners),
                                     threads=self.options.threads, ident="cryospy", **front_door.server_options(),
                                     # waitress spills a slow client's pending output to a temp file past
                                     # outbuf_overflow; decrypted video must never reach the disk, so the
                                     # handler waits at 4 MiB instead and the buffer stays in memory.
                                     outbuf_high_watermark=OUTBUF_HIGH_WATERMARK, outbuf_overflow=OUTBUF_OVERFLOW)
        # Bodies over their route's cap are refused before they are read; each listener gets its routes and TLS.
        front_door.install(self._map, listeners)
        self._thread = threading.Thread(target=self._serve_http, name="cryospy-http", daemon=True)
        self._thread.start()
        if self.options.provision:
            provision(self.dep, self.routes)
            replaced = upgrade_legacy_identities(self.services.identities, self.services.devices)
            if replaced:
                for device in self.services.devices.list():
                    self.services.forget_upload_client(device.device_id)
                log.info("replaced %d device upload identit%s that named the camera with pseudonymous ones",
                         replaced, "y" if replaced == 1 else "ies")
        self.heartbeat.start()   # before the workers claim: their leases are renewed from the first
        self.dispatcher.start()
        self.builder.start()
        if not self.services.vault.locked:
            self._rebuilt = True
            self._safe_rebuild()
        self.reconciler.start()
        self.channels.start()
        self.presence.start()
        self.live_sweeper.start()
        return self

    def _serve_http(self) -> None:
        """waitress's event loop, in slices, so that stop() can end it from this thread (no EBADF races)."""
        server = self._server
        while not self._http_stop.is_set():
            wasyncore.loop(timeout=0.2, map=self._map, count=1)
        server.task_dispatcher.shutdown(cancel_pending=False, timeout=5)
        wasyncore.close_all(self._map)

    def stop(self) -> None:
        # Stop taking requests (in-flight ones finish, long-polls answer now), then stop the workers, then
        # close the queue.
        self.services.live.release_waiters()
        if self._server is not None:
            self._http_stop.set()
        if self._thread:
            self._thread.join(10)
        self.reconciler.stop()
        self.live_sweeper.stop()
        self.presence.stop()
        self.dispatcher.stop()
        self.heartbeat.stop()
        self.heartbeat.close()
        self.services.home_events.close()
        self.builder.stop()
        self.dashboard.failures.flush(final=True)
        self.login_state.close()
        self.services.index.close()
        self.queue.close()
        self.services.devices.close()
        self.services.presence.close()
        self.services.live.close()
        self.services.slot_limiter.close()
        self.services.alerts.close()
        self.services.defence.close()
        if self.shared is not None:
            self.shared.close()
        self.services.audit.close()
        services_mod.configure(None)
