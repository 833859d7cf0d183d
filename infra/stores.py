"""Where the clip index and the job queue live, chosen by one setting (``database_url`` in server.json).

Absent: the embedded stores with zero set-up (encrypted TinyDB shards under ``<data-dir>/index``, SQLite at
``<data-dir>/runtime/jobs.sqlite``). Present: PostgreSQL, one connection pool each, shared by every runtime
pointed at the same database (docs/postgres.md). The runtime and the CLI (``cryospy events``) open them here,
so both always look at the same store.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from cryospy.common.database import open_pool
from cryospy.functions.index.postgres import PostgresIndex
from cryospy.functions.index.protocol import ClipIndex
from cryospy.functions.index.store import TinyDBIndex

from .deployment import Deployment
from .jobqueue import JobQueue, JobStore
from .pg_jobqueue import PostgresJobQueue
from .server_config import ServerConfig

INDEX_CONNECTIONS = 10   # the HTTP threads read, the workers write, one listens for other runtimes' changes
QUEUE_CONNECTIONS = 4


def open_index(dep: Deployment, config: ServerConfig, key: Callable[[], bytes]) -> ClipIndex:
    if config.database_url:
        return PostgresIndex(open_pool(config.database_url, max_size=INDEX_CONNECTIONS, name="cryospy-index"), key)
    return TinyDBIndex(dep.path("index"), key)


def open_job_store(dep: Deployment, config: ServerConfig, *, recover: bool = True) -> JobStore:
    """``recover``: take back the jobs this runtime was running when it stopped (the runtime, at start; not a
    CLI command that looks at the queue while the runtime runs)."""
    if config.database_url:
        return PostgresJobQueue(open_pool(config.database_url, max_size=QUEUE_CONNECTIONS, name="cryospy-jobs"),
                                owner=runtime_name(dep), recover=recover)
    return JobQueue(dep.path("runtime", "jobs.sqlite"), recover=recover)


def runtime_name(dep: Deployment) -> str:
    """This runtime across its restarts: the machine and its data directory."""
    return f"{socket.gethostname()}:{dep.data_dir.resolve()}"
