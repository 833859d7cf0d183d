"""A second (third, …) runtime for a deployment: the smallest step from one runtime to several.

Each runtime keeps what is its own (sessions, rendered pages, device health, logs: docs/scale-out.md) in a
data directory of its own. That directory holds a copy of the deployment's ``deployment.json`` (with this
runtime's port, the shared MinIO as external, the list of every runtime), ``keys.json`` and ``server.json``
(whose ``database_url`` makes the index, queue, registry and alert limits shared). Everything else is
per runtime because ``Deployment.path`` already puts it under the data directory, so nothing in the runtime
had to learn a second folder.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from .deployment import FILE_NAME, Deployment, make_private
from .errors import InfraError
from .server_config import load_server_config


def add_runtime(dep: Deployment, runtime_dir: Path, port: int) -> Deployment:
    """Create ``runtime_dir`` for a runtime on ``port`` sharing ``dep``'s MinIO and database; record every
    runtime's URL in ``dep``'s and the new deployment file so MinIO gets a webhook target for each (MinIO
    reads its targets at start: restart it, i.e. the first runtime's ``cryospy serve``, after adding one).

    Every runtime provisions the bucket's notifications from its own file, so all of them must list the same
    runtimes: with a third runtime, copy the list into the second's ``deployment.json`` too."""
    if not load_server_config(dep.path("server.json")).database_url:
        raise InfraError(f"{dep.path('server.json')} has no database_url: runtimes can share the work only "
                         "through PostgreSQL (docs/postgres.md). Set it, run `cryospy db migrate`, then add runtimes.")
    if (runtime_dir / FILE_NAME).exists() or runtime_dir.resolve() == dep.data_dir.resolve():
        raise InfraError(f"{runtime_dir} already holds a deployment; choose an empty folder for the new runtime")
    if not dep.keys_path.exists():
        raise InfraError(f"{dep.keys_path} is missing: finish the first runtime's setup before adding another")
    new = replace(dep, data_dir=runtime_dir, runtime_port=port, dashboard_port=0, minio_external=True,
                  minio_internal_url=dep.minio_url, tls_dir=str(dep.tls_path.resolve()) if dep.tls else dep.tls_dir)
    urls = (*(dep.runtime_urls or (dep.runtime_url,)), new.runtime_url)
    if len(set(urls)) != len(urls):
        raise InfraError(f"{new.runtime_url} is already one of this deployment's runtimes; pick another --port")
    make_private(runtime_dir)
    for name in ("keys.json", "server.json"):
        shutil.copy2(dep.path(name), runtime_dir / name)
        (runtime_dir / name).chmod(0o600)
    new = replace(new, runtime_urls=urls)
    new.save()
    replace(dep, runtime_urls=urls).save()
    return new
