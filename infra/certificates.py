"""The deployment's own certificate authority and the server certificates it signs, for TLS on the LAN.

A home server has no public name a public CA would certify, and a self-signed server certificate teaches
everyone to click through warnings. So ``cryospy setup`` makes a small local CA: cameras get its certificate
in their agent config (``ca_bundle``) and verify the runtime and MinIO against it and nothing else; a browser
trusts the dashboard once the admin installs ``ca.crt`` (docs/tls.md).

Files, under the data directory (itself 0700)::

    tls/ca.crt                 the CA certificate (public: it goes into every agent config)
    tls/ca.key                 the CA private key, 0600: whoever holds it can impersonate this server
    tls/runtime.crt, .key      the runtime's certificate (API, dashboard, MinIO's webhook target)
    minio/certs/public.crt     MinIO's certificate and key, where ``minio server --certs-dir`` looks
    minio/certs/private.key
    minio/certs/CAs/ca.crt     MinIO trusts this CA for its outgoing calls (the webhook to the runtime)

Server certificates name every address cameras and browsers use (the LAN address, the public URLs' hosts,
extra ``tls_names``), this machine's hostname, ``localhost`` and ``127.0.0.1``. They are re-issued from the CA
at start-up when they are missing, about to expire, or no longer name what the deployment is reached by,
so changing the LAN address needs a restart, not a new CA.

The Compose stack splits these files over three volumes so that the CA key sits only where certificates are
issued: its one-shot tls-init service (infra/docker/tls-init.py) keeps the CA, and issues into the runtime's
and MinIO's volumes with :func:`ensure_authority` and :func:`renew_server_certificates`; the runtime, whose
deployment then names that folder (``Deployment.tls_dir``), only reads and checks its certificate
(:func:`check_issued`).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cryospy.common.atomic import write_atomic

from .deployment import Deployment
from .errors import InfraError

log = logging.getLogger(__name__)

CA_DAYS = 3650
SERVER_DAYS = 397            # what browsers accept for a server certificate; renewed at start-up
RENEW_BEFORE = dt.timedelta(days=30)
WILDCARD_ADDRESSES = {"", "0.0.0.0", "::"}


class CertificateError(InfraError):
    exit_code = 2


@dataclass(frozen=True)
class TlsFiles:
    """Where one deployment keeps its CA and server certificates (see the module docstring)."""

    ca_cert: Path
    ca_key: Path
    runtime_cert: Path
    runtime_key: Path
    minio_certs_dir: Path

    @classmethod
    def of(cls, dep: Deployment) -> TlsFiles:
        return cls.in_folders(dep.tls_path, dep.path("minio", "certs"))

    @classmethod
    def in_folders(cls, tls: Path, minio_certs_dir: Path) -> TlsFiles:
        """The CA and the runtime's files in ``tls``, MinIO's in ``minio_certs_dir``."""
        return cls(tls / "ca.crt", tls / "ca.key", tls / "runtime.crt", tls / "runtime.key", minio_certs_dir)

    @property
    def minio_cert(self) -> Path:
        return self.minio_certs_dir / "public.crt"

    @property
    def minio_key(self) -> Path:
        return self.minio_certs_dir / "private.key"

    @property
    def minio_trusted_ca(self) -> Path:
        return self.minio_certs_dir / "CAs" / "ca.crt"


def normalize_names(names: Iterable[str]) -> list[str]:
    """Names as a certificate carries them: lower case, no trailing dot, no wildcard address, each once, in order."""
    seen: list[str] = []
    for name in names:
        name = name.strip().lower().rstrip(".")
        if name not in WILDCARD_ADDRESSES and name not in seen:
            seen.append(name)
    return seen


def server_names(dep: Deployment) -> list[str]:
    """Every name or address a server certificate of this deployment must carry, in a stable order."""
    return normalize_names([dep.host, dep.dashboard_host, urlsplit(dep.public_api_url).hostname or "",
                            urlsplit(dep.minio_public_url).hostname or "", *dep.tls_names, socket.gethostname(),
                            "localhost", "127.0.0.1"])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_authority(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A CA key (P-256) and its self-signed certificate, allowed to sign server certificates only."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def _alt_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def issue_server_certificate(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, names: list[str],
                             common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A server key and a certificate for ``names`` (IP literals become IP SANs), signed by the CA."""
    if not names:
        raise CertificateError("a server certificate needs at least one name or address")
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
            .add_extension(x509.SubjectAlternativeName([_alt_name(n) for n in names]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def certificate_names(cert: x509.Certificate) -> list[str]:
    """The SANs of ``cert`` as text (IP addresses in their compressed form)."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(v) for v in sans.get_values_for_type(x509.DNSName)] + \
        [str(v) for v in sans.get_values_for_type(x509.IPAddress)]


def ensure_authority(files: TlsFiles, common_name: str) -> bool:
    """Make the CA in ``files`` unless its key exists; True when it was made. An existing CA is kept: cameras
    trust it. The certificate is written before the key, so a key on disk always has its certificate."""
    if files.ca_key.exists():
        return False
    key, cert = make_authority(common_name)
    write_atomic(files.ca_cert, cert.public_bytes(serialization.Encoding.PEM))
    write_atomic(files.ca_key, _key_pem(key))
    return True


def create_authority(dep: Deployment) -> None:
    """Make the deployment's CA (``cryospy setup``); refuses to replace one, which would orphan every camera."""
    files = TlsFiles.of(dep)
    if not ensure_authority(files, f"CryoSpy local CA ({socket.gethostname()})"):
        raise CertificateError(f"{files.ca_key} already exists; cameras trust that CA, so it is kept")
    ensure_server_certificates(dep)


def _load_authority(files: TlsFiles) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    try:
        key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    except FileNotFoundError as exc:
        raise CertificateError(f"this deployment uses TLS but its certificate authority is missing ({exc.filename}); "
                               "restore the data directory's tls/ folder from a backup") from None
    except ValueError as exc:
        raise CertificateError(f"cannot read the certificate authority in {files.ca_key.parent}: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertificateError(f"{files.ca_key} is not the EC key CryoSpy made; restore tls/ from a backup")
    return key, cert


def _still_good(cert_path: Path, key_path: Path, names: list[str], ca_cert: x509.Certificate) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError):
        return False
    return (key_path.exists() and cert.issuer == ca_cert.subject
            and cert.not_valid_after_utc - RENEW_BEFORE > _now()
            and set(certificate_names(cert)) >= {str(_alt_name(n).value) for n in names})


def ensure_server_certificates(dep: Deployment) -> TlsFiles:
    """Issue the runtime's and MinIO's certificates if missing, expiring or missing a name; cheap otherwise."""
    files = TlsFiles.of(dep)
    renew_server_certificates(files, server_names(dep))
    return files


def renew_server_certificates(files: TlsFiles, names: list[str]) -> list[str]:
    """Issue the runtime's and MinIO's certificates from the CA in ``files`` where one is missing, expires within
    :data:`RENEW_BEFORE` or lacks one of ``names``; returns the paths of the certificates it issued."""
    ca_key, ca_cert = _load_authority(files)
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    issued: list[str] = []
    for cert_path, key_path, what in ((files.runtime_cert, files.runtime_key, "CryoSpy runtime"),
                                      (files.minio_cert, files.minio_key, "CryoSpy MinIO")):
        if _still_good(cert_path, key_path, names, ca_cert):
            continue
        key, cert = issue_server_certificate(ca_key, ca_cert, names, what)
        write_atomic(key_path, _key_pem(key))
        write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        log.info("issued a TLS certificate for the %s naming %s", what, ", ".join(names))
        issued.append(str(cert_path))
    if not files.minio_trusted_ca.exists() or files.minio_trusted_ca.read_bytes() != ca_pem:
        write_atomic(files.minio_trusted_ca, ca_pem)
    return issued


def check_issued(files: TlsFiles) -> TlsFiles:
    """The runtime's certificate as something else issued it (``Deployment.tls_dir``): present, signed by the CA
    next to it and not expired, or a :class:`CertificateError` that says how to get a new one; a warning in its
    last :data:`RENEW_BEFORE`. Nothing is written: the runtime holds no CA key to issue with."""
    renew = ("the certificates in this folder are issued by docker-compose.yml's tls-init service, which runs "
             "at every `docker compose up`: `docker compose down && docker compose up -d` renews and loads them")
    try:
        ca_cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
        cert = x509.load_pem_x509_certificate(files.runtime_cert.read_bytes())
        if not files.runtime_key.is_file():
            raise FileNotFoundError(2, "missing", str(files.runtime_key))
    except FileNotFoundError as exc:
        raise CertificateError(f"{exc.filename} is missing; {renew}") from None
    except ValueError as exc:
        raise CertificateError(f"cannot read the certificates in {files.ca_cert.parent}: {exc}; {renew}") from None
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        raise CertificateError(f"{files.runtime_cert} is not signed by {files.ca_cert}; {renew}") from None
    left = cert.not_valid_after_utc - _now()
    if left <= dt.timedelta(0):
        raise CertificateError(f"{files.runtime_cert} expired on {cert.not_valid_after_utc:%Y-%m-%d}; {renew}")
    if left < RENEW_BEFORE:
        log.warning("the runtime's TLS certificate expires on %s; %s", f"{cert.not_valid_after_utc:%Y-%m-%d}", renew)
    return files


def server_context(dep: Deployment) -> ssl.SSLContext:
    """The runtime's TLS context (TLS 1.2 and up, the runtime certificate), certificates renewed first (or, with
    ``tls_dir``, checked: another process issues them)."""
    files = check_issued(TlsFiles.of(dep)) if dep.tls_dir else ensure_server_certificates(dep)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(files.runtime_cert, files.runtime_key)
    return context


def ca_pem(dep: Deployment) -> str:
    """The CA certificate as PEM text, what agent configs carry in ``ca_bundle`` ("" without TLS)."""
    return Path(dep.ca_file).read_text() if dep.ca_file else ""


def client_context(dep: Deployment) -> ssl.SSLContext | None:
    """A context that trusts the deployment's CA, for this machine's own calls; None without TLS."""
    ca = dep.ca_file
    return ssl.create_default_context(cafile=ca) if ca else None
