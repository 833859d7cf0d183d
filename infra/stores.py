"""Where the clip index, the job queue, the device registry (with device health), camera presence, the live
view's state (viewers and newest parts), the failed
device logins, the upload slot budgets, the alert limits and the dashboard's login state (sessions, login
limiter, login links) live, chosen by one setting (``database_url`` in server.json).

Absent: the embedded stores with zero set-up (encrypted TinyDB shards under ``<data-dir>/index``, SQLite at
``<data-dir>/runtime/jobs.sqlite`` and ``alert-limits.sqlite``, the registry in ``runtime/devices.json``).
Present: PostgreSQL, one connection pool each, shared by every runtime pointed at the same database
(docs/postgres.md), where each runtime also records itself and its heartbeat (infra/runtime_registry.py).
The runtime and the CLI (``cryospy events``) open them here, so both always look at the
same store.

The index is sealed under the index key (only in an unlocked runtime's memory). The registry, the alert limits
and the other device-facing stores are used while the runtime is locked too (cameras upload then), so theirs
is :func:`registry_key`,
derived from the deployment's admin token; the login state's key (:func:`login_state_key`) is derived from it
too, for the reasons in web/pg_login_state.py, and so is the key of the shared documents
(:func:`open_shared_documents`: the key store, second-factor enrolments and saved channels, one copy for every
runtime), which the database must not be able to open either.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cryospy.common.database import open_pool
from cryospy.common.keys import KeyStore
from cryospy.functions.alerts.limits import AlertLimits, AlertLimitStore
from cryospy.functions.alerts.pg_limits import PostgresAlertLimits
from cryospy.functions.channels.presence import Presence
from cryospy.functions.channels.shared_presence import PostgresPresenceStore, SharedPresence
from cryospy.functions.devices.auth_defence import AuthDefence, AuthDefenceSettings, FailureDefence
from cryospy.functions.devices.pg_auth_defence import PostgresAuthDefence
from cryospy.functions.devices.pg_device_store import PostgresDeviceStore
from cryospy.functions.devices.pg_health import PostgresDeviceHealth
from cryospy.functions.devices.registry import DeviceRegistry
from cryospy.functions.index.postgres import PostgresIndex
from cryospy.functions.index.protocol import ClipIndex
from cryospy.functions.index.store import TinyDBIndex
from cryospy.functions.live.hub import LiveHub, LiveState
from cryospy.functions.live.pg_hub import PostgresLiveHub
from cryospy.functions.uploads.pg_slot_limiter import PostgresSlotLimiter
from cryospy.functions.uploads.slot_limiter import SlotBudget, SlotLimiter
from cryospy.web.login_limiter import LoginLimiter
from cryospy.web.login_links import LINKS_DIR, LoginLinks
from cryospy.web.pg_login_state import PostgresLoginLimiter, PostgresLoginLinks, PostgresSessions
from cryospy.web.sessions import LoginState, MemorySessions

from .deployment import Deployment
from .jobqueue import JobQueue, JobStore
from .pg_audit import PostgresAuditLines
from .pg_documents import SharedDocuments, SharedFile
from .pg_jobqueue import PostgresJobQueue
from .runtime_registry import Heartbeat, NoHeartbeat, RuntimeRegistry
from .server_config import ServerConfig, load_server_config

INDEX_CONNECTIONS = 10   # the HTTP threads read, the workers write, one listens for other runtimes' changes
QUEUE_CONNECTIONS = 4
REGISTRY_CONNECTIONS = 4   # every device request authenticates
ALERT_CONNECTIONS = 2
HEALTH_CONNECTIONS = 2     # throttled writes and a cached read of the whole table
PRESENCE_CONNECTIONS = 2   # the presence loop, and the rare contact that ends a silence
LIVE_CONNECTIONS = 4       # one listens; live pages' asks, the agents' parts and their held polls' reads
SLOT_CONNECTIONS = 2       # one transaction per upload slot
DEFENCE_CONNECTIONS = 2    # one transaction per failed device login
AUDIT_CONNECTIONS = 2
DOCUMENT_CONNECTIONS = 4   # one listens, one holds a document for a change, the others read
KEYS, SECOND_FACTOR, CHANNELS = "keys", "second-factor", "channels"
RUNTIME_CONNECTIONS = 2   # the heartbeat writes, the status page reads
LOGIN_CONNECTIONS = 4   # every dashboard request looks its session up


def open_index(dep: Deployment, config: ServerConfig, key: Callable[[], bytes]) -> ClipIndex:
    if config.database_url:
        return PostgresIndex(open_pool(config.database_url, max_size=INDEX_CONNECTIONS, name="cryospy-index"), key)
    return TinyDBIndex(dep.path("index"), key)


def open_job_store(dep: Deployment, config: ServerConfig, *, recover: bool = True) -> JobStore:
    """``recover``: take back the jobs this runtime was running when it stopped (the runtime, at start; not a
    CLI command that looks at the queue while the runtime runs)."""
    if config.database_url:
        return PostgresJobQueue(open_pool(config.database_url, max_size=QUEUE_CONNECTIONS, name="cryospy-jobs"),
                                owner=runtime_name(dep), lease_s=config.job_lease_seconds, recover=recover)
    return JobQueue(dep.path("runtime", "jobs.sqlite"), recover=recover)


def open_heartbeat(dep: Deployment, config: ServerConfig, queue: JobStore) -> Heartbeat | NoHeartbeat:
    """The runtime's heartbeat and its row in the runtime registry, for a queue shared in PostgreSQL (none for
    the embedded queue: one runtime, no leases to renew, nobody to tell)."""
    if not config.database_url or not isinstance(queue, PostgresJobQueue):
        return NoHeartbeat()
    registry = RuntimeRegistry(open_pool(config.database_url, max_size=RUNTIME_CONNECTIONS, name="cryospy-runtimes"),
                               queue.owner, dep.runtime_url, queue.lease_s)
    return Heartbeat(queue, registry)


def runtime_name(dep: Deployment) -> str:
    """This runtime across its restarts: the machine and its data directory."""
    return f"{socket.gethostname()}:{dep.data_dir.resolve()}"


def registry_key(dep: Deployment) -> bytes:
    """The key of the registry's and the alert limits' rows in PostgreSQL: every runtime of the deployment has
    the admin token (deployment.json), the database does not, and its holder may list the devices anyway."""
    return HKDF(hashes.SHA256(), 32, salt=None, info=b"cryospy registry rows v1").derive(dep.admin_token.encode())


def open_device_registry(dep: Deployment, config: ServerConfig) -> DeviceRegistry:
    """Health reports (last seen, heartbeats) live beside the registry: in this runtime's data directory, or
    in PostgreSQL, where every runtime sees the freshest (functions/devices/pg_health.py)."""
    path = dep.path("runtime", "devices.json")
    if config.database_url:
        key = registry_key(dep)
        store = PostgresDeviceStore(open_pool(config.database_url, max_size=REGISTRY_CONNECTIONS,
                                              name="cryospy-registry"), lambda: key)
        health = PostgresDeviceHealth(open_pool(config.database_url, max_size=HEALTH_CONNECTIONS,
                                                name="cryospy-health"), lambda: key)
        return DeviceRegistry(path, store=store, health=health)
    return DeviceRegistry(path)


def open_presence(dep: Deployment, config: ServerConfig) -> Presence:
    """Which cameras are in touch: this runtime's memory, or PostgreSQL, so that a camera talking to another
    runtime is not reported offline here and each change is published once (functions/channels/shared_presence.py)."""
    if config.database_url:
        key = registry_key(dep)
        store = PostgresPresenceStore(open_pool(config.database_url, max_size=PRESENCE_CONNECTIONS,
                                                name="cryospy-presence"), lambda: key)
        return SharedPresence(store, config.offline_after_seconds)
    return Presence(config.offline_after_seconds)


def open_live(dep: Deployment, config: ServerConfig, max_waiters: int) -> LiveState:
    """Who watches which camera and its newest live parts: this runtime's memory, or PostgreSQL, so that a
    browser on any runtime can watch a camera whose parts reach another (functions/live/pg_hub.py)."""
    if config.database_url:
        key = registry_key(dep)
        return PostgresLiveHub(open_pool(config.database_url, max_size=LIVE_CONNECTIONS, name="cryospy-live"),
                               lambda: key, max_waiters=max_waiters)
    return LiveHub(max_waiters=max_waiters)


def open_alert_limits(dep: Deployment, config: ServerConfig) -> AlertLimitStore:
    if config.database_url:
        key = registry_key(dep)
        return PostgresAlertLimits(open_pool(config.database_url, max_size=ALERT_CONNECTIONS, name="cryospy-alerts"),
                                   lambda: key)
    return AlertLimits(dep.path("runtime", "alert-limits.sqlite"))


def open_slot_limiter(dep: Deployment, config: ServerConfig) -> SlotBudget:
    """Upload slots per camera per minute: counted in this runtime, or in PostgreSQL, so that the budget is the
    deployment's whatever runtime a camera asks (functions/uploads/pg_slot_limiter.py)."""
    if config.database_url:
        key = registry_key(dep)
        return PostgresSlotLimiter(open_pool(config.database_url, max_size=SLOT_CONNECTIONS, name="cryospy-slots"),
                                   lambda: key, config.slots_per_minute)
    return SlotLimiter(config.slots_per_minute)


def open_auth_defence(dep: Deployment, config: ServerConfig) -> FailureDefence:
    """Failed device logins: counted in ``runtime/auth-failures.sqlite``, or in PostgreSQL, so that the budget
    and the alert are the deployment's whatever runtime an attacker tries (functions/devices/pg_auth_defence.py)."""
    settings = AuthDefenceSettings.from_dict(config.auth_events or {})
    if config.database_url:
        key = registry_key(dep)
        return PostgresAuthDefence(open_pool(config.database_url, max_size=DEFENCE_CONNECTIONS,
                                             name="cryospy-auth-defence"), lambda: key, settings)
    return AuthDefence(dep.path("runtime", "auth-failures.sqlite"), settings)


def documents_key(dep: Deployment) -> bytes:
    """The shared documents' key: like :func:`registry_key`, from the admin token the database does not have
    (a key of its own, so a document can never be taken for a registry row)."""
    return HKDF(hashes.SHA256(), 32, salt=None, info=b"cryospy shared documents v1").derive(dep.admin_token.encode())


def open_shared_documents(dep: Deployment, config: ServerConfig) -> SharedDocuments | None:
    """None without ``database_url``: each runtime's files are then the only copy, as they always were."""
    if not config.database_url:
        return None
    return SharedDocuments(open_pool(config.database_url, max_size=DOCUMENT_CONNECTIONS, name="cryospy-documents"),
                           documents_key(dep))


def shared_file(docs: SharedDocuments | None, name: str, path: Path) -> SharedFile | None:
    return SharedFile(docs, name, path) if docs is not None else None


@contextlib.contextmanager
def key_store(dep: Deployment) -> Iterator[KeyStore]:
    """The key store for a command-line change (accounts, passphrases, key rotation): with ``database_url`` set
    it is the shared copy, and every change is written through to it, so every runtime sees it."""
    docs = open_shared_documents(dep, load_server_config(dep.path("server.json")))
    try:
        yield KeyStore.load(dep.keys_path, shared_file(docs, KEYS, dep.keys_path))
    finally:
        if docs is not None:
            docs.close()


def open_audit_lines(dep: Deployment, config: ServerConfig) -> PostgresAuditLines | None:
    """The audit log every runtime appends to (None without ``database_url``: ``runtime/audit.log``)."""
    if not config.database_url:
        return None
    return PostgresAuditLines(open_pool(config.database_url, max_size=AUDIT_CONNECTIONS, name="cryospy-audit"),
                              config.database_url, dep.path("runtime", "audit.log"))
def login_state_key(dep: Deployment) -> bytes:
    """The key of the dashboard's sessions, login attempts and login links in PostgreSQL (web/pg_login_state.py
    says why it is not the index key)."""
    return HKDF(hashes.SHA256(), 32, salt=None, info=b"cryospy dashboard login state v1").derive(
        dep.admin_token.encode())


def open_login_state(dep: Deployment, config: ServerConfig) -> LoginState:
    """Sessions, the login limiter and login links: this runtime's memory and ``runtime/login-links/``, or
    PostgreSQL shared by every runtime (one pool for the three)."""
    if config.database_url:
        key = login_state_key(dep)
        pool = open_pool(config.database_url, max_size=LOGIN_CONNECTIONS, name="cryospy-login")
        return LoginState(PostgresSessions(pool, lambda: key), PostgresLoginLimiter(pool, lambda: key),
                          PostgresLoginLinks(pool, lambda: key))
    return LoginState(MemorySessions(), LoginLimiter(), LoginLinks(dep.path(*LINKS_DIR)))


def open_login_links(dep: Deployment, config: ServerConfig) -> LoginLinks | PostgresLoginLinks:
    """Where ``cryospy dashboard login-link`` writes: the runtimes' shared table, or this data directory."""
    if config.database_url:
        key = login_state_key(dep)
        return PostgresLoginLinks(open_pool(config.database_url, max_size=1, name="cryospy-login-link"),
                                  lambda: key)
    return LoginLinks(dep.path(*LINKS_DIR))
