"""A deployment: where its state lives, which ports it uses, and the credentials it generated.

Everything is read once at the edge (the CLI) and passed down. The file ``deployment.json`` holds generated
secrets (MinIO root and service identities, the webhook token, the admin API token), so it is written
atomically with mode 0600 and never logged. ``Deployment.__repr__`` hides every secret.

Data-dir layout::

    deployment.json        this file (0600)
    keys.json              the key store (public keys in clear, private keys wrapped by the passphrase)
    minio/data             MinIO's drive (unless ``minio_drives`` names drives of their own: docs/scale-out.md)
    minio/events           MinIO's webhook queue_dir (events survive a runtime outage)
    runtime/               job queue, dead letters, device registry, auth-failure state
    index/                 the TinyDB index shards (encrypted at rest)
    tls/                   the local certificate authority and the runtime's certificate (certificates.py)
    minio/certs            MinIO's certificate (``--certs-dir``)
    site/                  the rendered dashboard (encrypted at rest)
    logs/                  MinIO's log

The data directory and those folders are 0700 (:func:`make_private`, at ``setup`` and at every ``serve``): the
data dir holds MinIO's IAM files, whose handler identity can read every clip, and an existing directory keeps
whatever mode it had unless something sets it.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from cryospy.common.atomic import write_atomic
from cryospy.common.objectkeys import BUCKET

from .errors import InfraError

FILE_NAME = "deployment.json"
PRIVATE_FOLDERS = ("minio", "minio/data", "minio/events", "minio/certs", "runtime", "index", "site", "logs", "tls")
_SECRET_FIELDS = {"minio_root_password", "presigner_secret", "handler_secret", "webhook_token", "admin_token"}


def make_private(data_dir: Path) -> None:
    """Make the data directory 0700 (creating it if needed) and tighten the folders CryoSpy keeps in it.

    Idempotent and cheap (no walk of MinIO's objects): once the data directory is 0700 no other user reaches
    anything below it, whatever modes older versions left there."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(data_dir, 0o700)
    for name in PRIVATE_FOLDERS:
        folder = data_dir / name
        if folder.is_dir() and not folder.is_symlink():
            os.chmod(folder, 0o700)


@dataclass(frozen=True)
class Deployment:
    data_dir: Path
    bucket: str = BUCKET
    host: str = "127.0.0.1"
    runtime_port: int = 8480
    minio_port: int = 9480
    minio_console_port: int = 9481
    # The URL devices use to reach MinIO (presigned URLs are signed for exactly this host). Defaults to the
    # internal endpoint; set it when MinIO sits behind a reverse proxy.
    minio_public_url: str = ""
    # The URL devices use to reach the API.
    public_api_url: str = ""
    minio_root_user: str = "cryospy-root"
    minio_root_password: str = field(default="", repr=False)
    presigner_user: str = "cryospy-presigner"
    presigner_secret: str = field(default="", repr=False)
    handler_user: str = "cryospy-handler"
    handler_secret: str = field(default="", repr=False)
    webhook_token: str = field(default="", repr=False)
    admin_token: str = field(default="", repr=False)
    region: str = "us-east-1"
    # Containers: MinIO runs elsewhere (e.g. http://minio:9000) and the runtime listens on all interfaces.
    minio_internal_url: str = ""
    bind_host: str = ""
    # TLS with the deployment's own CA (certificates.py). Off in a deployment.json written before TLS existed;
    # `cryospy setup` turns it on unless told --no-tls.
    tls: bool = False
    tls_names: tuple[str, ...] = ()     # extra names for the server certificates (e.g. cryospy.lan)
    # "" = <data-dir>/tls, with the CA key: setup issues the certificates and every start renews them. Set, it
    # is a folder holding only ca.crt, runtime.crt and runtime.key that something else issues and renews (the
    # Compose stack's tls-init service, which keeps the CA key in a volume of its own): the runtime only reads it.
    tls_dir: str = ""
    # The dashboard on a listener of its own (0 = it shares runtime_port with the device API); each listener
    # then answers only its own routes (front_door.ROUTE_FAMILIES).
    dashboard_port: int = 0
    dashboard_host: str = ""            # "" = where the runtime listens
    # Several drives (absolute paths, one per disk): MinIO erasure-codes every object across them, so a drive
    # can fail without losing footage (docs/scale-out.md). Empty = one drive, minio/data.
    minio_drives: tuple[str, ...] = ()
    # Parity drives per object (MinIO's storage class EC:N); 0 = MinIO's default for the drive count
    # (EC:2 for 4-5 drives, EC:3 for 6-7, EC:4 for 8-16).
    minio_parity: int = 0
    # The operator accepts drives that share a disk (with each other or with the system): MinIO then uses
    # drives on the root disk, which it otherwise refuses. Such a layout survives a wiped folder, not a dead disk.
    minio_drives_share_disk: bool = False
    # MinIO is run by someone else (a multi-node cluster behind one address, minio_internal_url): `cryospy serve`
    # starts no MinIO and provisions the external one with the root credentials above.
    minio_external: bool = False
    # Several runtimes share this deployment (docs/scale-out.md): the device-API URL of each, so MinIO gets a
    # webhook target per runtime and a dead one does not stop delivery to the others. Empty: this runtime only.
    runtime_urls: tuple[str, ...] = ()

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def minio_url(self) -> str:
        return self.minio_internal_url or f"{self.scheme}://{_url_host(self.host)}:{self.minio_port}"

    @property
    def listen_host(self) -> str:
        return self.bind_host or self.host

    @property
    def devices_minio_url(self) -> str:
        return self.minio_public_url or self.minio_url

    @property
    def runtime_url(self) -> str:
        """Where the device API (and, unless split, the dashboard) answers: cameras, MinIO's webhook."""
        return f"{self.scheme}://{_url_host(self.host)}:{self.runtime_port}"

    @property
    def dashboard_listen_host(self) -> str:
        return self.dashboard_host or self.listen_host

    @property
    def dashboard_url(self) -> str:
        """Where the dashboard and the admin API answer (the runtime URL unless the dashboard is split off)."""
        if not self.dashboard_port:
            return self.runtime_url
        host = self.dashboard_host if self.dashboard_host not in ("", "0.0.0.0", "::") else self.host
        return f"{self.scheme}://{_url_host(host)}:{self.dashboard_port}"

    @property
    def tls_path(self) -> Path:
        """The folder of the CA certificate and the runtime's certificate (certificates.TlsFiles)."""
        return Path(self.tls_dir) if self.tls_dir else self.path("tls")

    @property
    def ca_file(self) -> str | None:
        """The CA certificate this machine's own clients trust (None without TLS)."""
        return str(self.tls_path / "ca.crt") if self.tls else None

    @property
    def api_url(self) -> str:
        return self.public_api_url or self.runtime_url

    @property
    def webhook_url(self) -> str:
        return f"{self.runtime_url}/_minio/events"

    @property
    def keys_path(self) -> Path:
        return self.data_dir / "keys.json"

    def path(self, *parts: str) -> Path:
        return self.data_dir.joinpath(*parts)

    def save(self) -> None:
        doc = {k: v for k, v in asdict(self).items() if k != "data_dir"}
        write_atomic(self.data_dir / FILE_NAME, json.dumps(doc, indent=2).encode())

    def with_ports(self, **ports: int) -> Deployment:
        return replace(self, **ports)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def create(data_dir: Path, **overrides: object) -> Deployment:
    """Generate a new deployment with fresh random credentials and save it (refuses to overwrite)."""
    if (data_dir / FILE_NAME).exists():
        raise InfraError(f"{data_dir / FILE_NAME} already exists; use it, or choose another --data-dir")
    values: dict[str, object] = {
        "minio_root_password": secrets.token_urlsafe(24),
        "presigner_secret": secrets.token_urlsafe(24),
        "handler_secret": secrets.token_urlsafe(24),
        "webhook_token": secrets.token_urlsafe(32),
        "admin_token": secrets.token_urlsafe(32),
    }
    values.update({k: v for k, v in overrides.items() if v not in (None, "")})
    for name in ("tls_names", "minio_drives"):
        if name in values:
            values[name] = tuple(values[name])  # type: ignore[arg-type]
    dep = Deployment(data_dir=data_dir, **values)  # type: ignore[arg-type]
    dep.save()
    return dep


def load(data_dir: Path) -> Deployment:
    path = data_dir / FILE_NAME
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise InfraError(
            f"no deployment in {data_dir}: run `cryospy setup --data-dir {data_dir}` first"
        ) from None
    except (OSError, ValueError) as exc:
        raise InfraError(f"cannot read {path}: {exc}. Restore it from a backup or set up anew.") from exc
    known = {f.name for f in fields(Deployment)} - {"data_dir"}
    unknown = set(doc) - known
    if unknown:
        raise InfraError(f"{path}: unknown keys {sorted(unknown)}; remove them (known: {sorted(known)})")
    missing = [k for k in _SECRET_FIELDS if not doc.get(k)]
    if missing:
        raise InfraError(f"{path}: missing generated secrets {missing}; the file is damaged")
    for name, what in (("tls_names", "host names"), ("minio_drives", "absolute drive paths"),
                       ("runtime_urls", "runtime URLs")):
        if not isinstance(doc.get(name, []), list):
            raise InfraError(f"{path}: {name} must be a list of {what}")
        doc[name] = tuple(doc.get(name, ()))
    return Deployment(data_dir=data_dir, **doc)
