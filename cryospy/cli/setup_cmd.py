"""``cryospy setup``: a new deployment directory with generated credentials and a fresh key store."""

from __future__ import annotations

from pathlib import Path

from cryospy.common.keys import KeyStore
from cryospy.infra import deployment
from cryospy.infra.deployment import Deployment


def setup(data_dir: Path, passphrase: str, *, scrypt_n: int | None = None, **overrides: object) -> Deployment:
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    dep = deployment.create(data_dir, **overrides)
    if scrypt_n is None:
        KeyStore.create(dep.keys_path, passphrase)
    else:
        KeyStore.create(dep.keys_path, passphrase, scrypt_n=scrypt_n, insecure_for_tests=True)
    return dep
