"""``cryospy setup``: a new deployment directory with generated credentials and a fresh key store.

With ``--browser`` the key store is left out: the admin chooses the passphrase on the dashboard's first-run
page (``/setup``), which asks for a one-time code that ``cryospy serve`` writes into the data directory.

TLS is on unless ``tls=False`` (``--no-tls``): setup makes the deployment's certificate authority and the
server certificates (infra/certificates.py), or, with ``tls_dir`` (``--tls-dir``, the Compose stack), checks
the certificates another process issued there and makes none. Plain HTTP is for a runtime behind a reverse
proxy that does TLS (docs/tls.md) and for tests that exercise something else.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from cryospy.common.keys import KeyStore
from cryospy.infra import certificates, deployment
from cryospy.infra.deployment import Deployment
from cryospy.infra.minio_drives import check_layout


def setup(data_dir: Path, passphrase: str | None, *, scrypt_n: int | None = None, tls: bool = True,
          **overrides: object) -> Deployment:
    """Create the deployment; with ``passphrase=None`` no key store (first-run setup happens in the browser);
    with ``tls`` (the default) its certificate authority and server certificates too. ``minio_drives`` are
    checked (and created) before anything is written: a refused layout leaves no half deployment."""
    drives = [str(d) for d in overrides.get("minio_drives") or ()]   # type: ignore[attr-defined]
    overrides["minio_drives"] = check_layout(drives, int(overrides.get("minio_parity") or 0),  # type: ignore[arg-type]
                                             bool(overrides.get("minio_drives_share_disk")))
    deployment.make_private(data_dir)   # an existing directory keeps its mode otherwise (755 stays 755)
    tls_dir = str(overrides.get("tls_dir") or "")
    if tls and tls_dir:     # before deployment.json exists, so that a failed check can simply be run again
        certificates.check_issued(certificates.TlsFiles.in_folders(Path(tls_dir), data_dir / "minio" / "certs"))
    dep = deployment.create(data_dir, tls=tls, **overrides)
    if tls and not tls_dir:
        certificates.create_authority(dep)
    if passphrase is None:
        return dep
    if scrypt_n is None:
        KeyStore.create(dep.keys_path, passphrase)
    else:
        KeyStore.create(dep.keys_path, passphrase, scrypt_n=scrypt_n, insecure_for_tests=True)
    return dep


def announce_browser_setup(runtime_url: str, code_path: Path, out: TextIO = sys.stdout) -> None:
    """Tell the person at the terminal how to finish setup. The code itself is printed only to a terminal:
    when stdout is a log file or a journal, the code stays in its 0600 file."""
    print(f"CryoSpy runtime on {runtime_url}/ is waiting for FIRST-RUN SETUP: open {runtime_url}/setup and "
          f"choose the admin passphrase.\nThe one-time setup code is in {code_path} (readable only by this user).",
          file=out, flush=True)
    if out.isatty():
        print(f"Setup code: {code_path.read_text().strip()}", file=out, flush=True)
