"""A real runtime in a child process of its own, for tests where several runtimes share one PostgreSQL and one
MinIO (tests/integration/test_two_runtimes.py, test_runtimes_share_device_state.py): spawned, so no thread of
the test process is carried over, and SIGKILL kills it for real."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from cryospy.infra.deployment import Deployment, load
from tests.conftest import PASSPHRASE
from tests.support import wait_for


def _run_runtime(data_dir: str, overrides: dict[str, Any], ready: Any) -> None:
    """The child: the data directory's server.json with ``overrides`` (ServerConfig fields), unlocked."""
    from cryospy.infra.runtime import Runtime, RuntimeOptions
    from cryospy.infra.server_config import load_server_config

    dep = load(Path(data_dir))
    config = replace(load_server_config(dep.path("server.json")), **overrides)
    runtime = Runtime(dep, RuntimeOptions(reconcile_seconds=3600), config)
    runtime.unlock(PASSPHRASE)
    runtime.start()
    ready.set()
    threading.Event().wait()


class RuntimeProcess:
    def __init__(self, dep: Deployment, **overrides: Any) -> None:
        context = multiprocessing.get_context("spawn")
        ready = context.Event()
        self.proc = context.Process(target=_run_runtime, args=(str(dep.data_dir), overrides, ready))
        self.proc.start()
        wait_for(lambda: ready.is_set() or not self.proc.is_alive(), timeout=120, what="a runtime started")
        assert self.proc.is_alive(), "the runtime process exited during start-up"

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.join()

    def stop(self) -> None:
        if self.proc.is_alive():
            os.kill(self.proc.pid, signal.SIGTERM)   # not drained: its jobs are done or leased in PostgreSQL
            self.proc.join(10)
            if self.proc.is_alive():
                self.kill()
