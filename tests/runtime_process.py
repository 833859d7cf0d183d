"""A real runtime (``cryospy serve``'s Runtime) in a child process of its own, so that a test can SIGKILL it,
freeze it or let it run: what tests/integration/test_two_runtimes.py, test_runtime_takeover.py and
test_runtimes_share_device_state.py start on one PostgreSQL and one MinIO."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from cryospy.infra.deployment import Deployment, load
from tests.conftest import PASSPHRASE
from tests.support import wait_for


def _run_runtime(data_dir: str, smtp: dict[str, object] | None, recipient: str, stall: bool,
                 overrides: Mapping[str, Any], ready: Any) -> None:
    from cryospy.infra.runtime import Runtime, RuntimeOptions
    from cryospy.infra.server_config import load_server_config

    dep = load(Path(data_dir))
    config = replace(load_server_config(dep.path("server.json")), **overrides)
    if smtp is not None:
        config = replace(config, smtp=smtp, alert_recipients=(recipient,))
    runtime = Runtime(dep, RuntimeOptions(reconcile_seconds=3600), config)
    if stall:
        runtime.dispatcher.handlers = _stalling(runtime.dispatcher.handlers)
    runtime.unlock(PASSPHRASE)
    runtime.start()
    ready.set()
    threading.Event().wait()


def _stalling(routes: Mapping[str, Any]) -> dict[str, Any]:
    """Handlers that never finish, as in a runtime that dies mid-job: every other job stalls before its work,
    the rest after doing it (the clip indexed, its thumbnail stored) but before the job is recorded done."""
    calls = itertools.count()

    def stalled(handler: Callable[[Any], None]) -> Callable[[Any], None]:
        def run(event: Any) -> None:
            if next(calls) % 2:
                handler(event)
            threading.Event().wait()
        return run
    return {name: replace(route, handler=stalled(route.handler)) for name, route in routes.items()}


class RuntimeProcess:
    """``smtp``: mail settings (with ``recipient``) in place of server.json's; ``stall``: every job this runtime
    claims hangs (its worker pool fills up and stays full while the heartbeat keeps the leases); ``overrides``:
    other ServerConfig fields in place of server.json's (channels, limits)."""

    def __init__(self, dep: Deployment, smtp: dict[str, object] | None = None, recipient: str = "",
                 stall: bool = False, overrides: Mapping[str, Any] | None = None) -> None:
        context = multiprocessing.get_context("spawn")   # no threads of this process carried over by fork
        ready = context.Event()
        self.proc = context.Process(target=_run_runtime, args=(str(dep.data_dir), smtp, recipient, stall,
                                                               dict(overrides or {}), ready))
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
