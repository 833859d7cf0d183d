"""The Compose stack's tls-init service: the CA and the server certificates, before MinIO and the runtime start.

A one-shot container of the CryoSpy image, run at every `docker compose up` (MinIO and the runtime wait for it
to complete). It keeps the CA in the volume ``tls-ca`` (mounted here only, so the CA key is nowhere else), makes
the CA the first time and never again, and issues or renews the runtime's certificate into ``runtime-tls``
(with ca.crt, for agent configs and the runtime's own clients) and MinIO's into ``minio-certs`` (with
CAs/ca.crt, which MinIO's webhook uses to verify the runtime). A certificate is issued again only when it is
missing, expires within 30 days or lacks a name (infra/certificates.py), so restarts change nothing.

Names in both certificates: CRYOSPY_HOST (the LAN address or name cameras use), the hosts of
CRYOSPY_PUBLIC_API_URL and CRYOSPY_MINIO_PUBLIC_URL when set, every name in CRYOSPY_TLS_NAMES (commas or
spaces), and the container-internal ones: ``runtime``, ``minio``, ``localhost``, ``127.0.0.1``.
With CRYOSPY_TLS=off it does nothing (the plain-HTTP opt-out, docs/docker.md).
"""

import os
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

from cryospy.common.atomic import write_atomic
from cryospy.infra import certificates

CA_DIR, RUNTIME_DIR, MINIO_DIR = Path("/ca"), Path("/tls"), Path("/certs")
RUNTIME_UID, MINIO_UID = 10001, 10002      # the image's cryospy user, the MinIO image's minio user
INTERNAL_NAMES = ("runtime", "minio", "localhost", "127.0.0.1")


def names(env: dict[str, str]) -> list[str]:
    urls = (env.get("CRYOSPY_PUBLIC_API_URL", ""), env.get("CRYOSPY_MINIO_PUBLIC_URL", ""))
    return certificates.normalize_names([env.get("CRYOSPY_HOST", ""), *(urlsplit(u).hostname or "" for u in urls),
                                         *re.split(r"[\s,]+", env.get("CRYOSPY_TLS_NAMES", "")), *INTERNAL_NAMES])


def give(folder: Path, uid: int) -> None:
    """The folder and everything in it to ``uid``; only the folder's owner reads it (0700, files 0600)."""
    for path in (folder, *folder.rglob("*")):
        os.chown(path, uid, uid)
        path.chmod(0o700 if path.is_dir() else 0o600)


def main() -> int:
    env = dict(os.environ)
    if env.get("CRYOSPY_TLS", "on") == "off":
        print("tls-init: CRYOSPY_TLS=off, no certificates (plain HTTP: put a TLS proxy in front, docs/tls.md)")
        return 0
    host = env.get("CRYOSPY_HOST", "").strip()
    if not host:
        print("tls-init: set CRYOSPY_HOST in .env to this server's LAN address (or name), the one cameras use: "
              "the certificates must name it (infra/compose.env.example)", file=sys.stderr)
        return 2
    files = certificates.TlsFiles(CA_DIR / "ca.crt", CA_DIR / "ca.key", RUNTIME_DIR / "runtime.crt",
                                  RUNTIME_DIR / "runtime.key", MINIO_DIR)
    try:
        if certificates.ensure_authority(files, f"CryoSpy local CA ({host})"):
            print(f"tls-init: made the deployment's certificate authority in the tls-ca volume ({host})")
        wanted = names(env)
        for path in certificates.renew_server_certificates(files, wanted):
            print(f"tls-init: issued {path} for {', '.join(wanted)}")
    except certificates.CertificateError as exc:
        print(f"tls-init: {exc}", file=sys.stderr)
        return 2
    ca_pem = files.ca_cert.read_bytes()
    runtime_ca = RUNTIME_DIR / "ca.crt"
    if not runtime_ca.exists() or runtime_ca.read_bytes() != ca_pem:
        write_atomic(runtime_ca, ca_pem)
    give(CA_DIR, 0)
    give(RUNTIME_DIR, RUNTIME_UID)
    give(MINIO_DIR, MINIO_UID)
    return 0


if __name__ == "__main__":
    sys.exit(main())
