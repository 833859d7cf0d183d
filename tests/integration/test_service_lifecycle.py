"""`cryospy serve` and `cryospy agent` as systemd runs them: real processes, the real MinIO that serve starts,
readiness over sd_notify, journald-shaped logs with no secrets in them, and SIGTERM as the only way to stop.

The story: an agent records into a served deployment; the server gets SIGTERM mid-stream and exits 0; the
agent keeps sealing clips into its spool, then gets SIGTERM and exits 0 with them still queued; both start
again, and the index ends up with every sealed clip exactly once (sequences 0..n-1, nothing dead-lettered).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cryospy.cli.devices import create_device
from cryospy.edge_agent.config import load_config
from cryospy.functions.index.store import TinyDBIndex
from cryospy.functions.keyvault import KeyVault
from cryospy.infra.deployment import Deployment
from cryospy.infra.jobqueue import JobQueue
from tests.conftest import PASSPHRASE, new_deployment
from tests.service_support import ServeProcess
from tests.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CRYOSPY = [sys.executable, "-m", "cryospy"]
TINY = {"camera_device": "synthetic:160x96", "clip_seconds": 2, "fps": 10, "settings_sync_seconds": 5,
        "server_timeout_seconds": 5, "upload_retry_minutes": 0.05, "source_retry_max_seconds": 1}
DEVICE = "service-cam"


def _agent(config_path: Path, log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        return subprocess.Popen([*CRYOSPY, "agent", "--config", str(config_path), "--log-level", "debug"],
                                stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _stop(proc: subprocess.Popen[bytes], timeout: float = 120) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    finally:
        proc.kill()
        proc.wait()


def _sequences(dep: Deployment) -> list[int]:
    vault = KeyVault(dep.keys_path)
    vault.unlock(PASSPHRASE)
    index = TinyDBIndex(dep.path("index"), vault.index_key)   # a read-only look from the test
    try:
        return sorted(c.sequence for day in index.days(DEVICE) for c in index.clips_for_day(DEVICE, day))
    finally:
        index.close()


def _spooled(spool_dir: Path) -> int:
    return len(list(spool_dir.glob("*.cse")))


def test_sigterm_stops_serve_and_agent_cleanly_and_a_restart_loses_nothing(minio_binary: Path, tmp_path: Path):
    dep = new_deployment(tmp_path / "deployment")
    passphrase_file = tmp_path / "passphrase"
    passphrase_file.write_text(PASSPHRASE + "\n")
    config_path = tmp_path / "agent.json"
    serve_log, agent_log = tmp_path / "serve.log", tmp_path / "agent.log"

    serve = ServeProcess(CRYOSPY, dep, passphrase_file, minio_binary, serve_log)
    agent = None
    try:
        serve.wait_ready()
        create_device(dep, DEVICE, config_path, {**TINY, "temp_dir": str(tmp_path)})   # through the admin API
        config = load_config(config_path)
        agent = _agent(config_path, agent_log)
        wait_for(lambda: len(_sequences(dep)) >= 2, timeout=90, what="two clips indexed")
        assert serve.terminate() == 0, serve_log.read_text()
        assert "STOPPING=1" in serve.states
        # The server is gone: the agent keeps recording and its clips wait in the spool.
        wait_for(lambda: _spooled(config.spool_dir) >= 2, timeout=60, what="clips waiting in the spool")
        assert _stop(agent) == 0, agent_log.read_text()
        agent = None
        waiting = _spooled(config.spool_dir)
        assert waiting >= 2
        assert re.search(rf"agent stopped; {waiting} clip\(s\) left in the spool", agent_log.read_text())

        serve = ServeProcess(CRYOSPY, dep, passphrase_file, minio_binary, serve_log)
        serve.wait_ready()
        agent = _agent(config_path, agent_log)
        sealed_before = json.loads((config.spool_dir / "state.json").read_text())["next_sequence"]
        wait_for(lambda: len(_sequences(dep)) >= sealed_before + 1, timeout=120,
                 what="the spooled clips and a new one indexed")
        assert _stop(agent) == 0, agent_log.read_text()
        agent = None
        sealed = json.loads((config.spool_dir / "state.json").read_text())["next_sequence"]
        wait_for(lambda: len(_sequences(dep)) >= sealed, timeout=60, what="every sealed clip indexed")
        assert serve.terminate() == 0, serve_log.read_text()
    finally:
        if agent is not None:
            _stop(agent)
        serve.terminate()
    assert _sequences(dep) == list(range(sealed)), "every clip exactly once"
    assert _spooled(config.spool_dir) == 0
    queue = JobQueue(dep.path("runtime", "jobs.sqlite"))
    try:
        assert queue.dead_letters() == []
    finally:
        queue.close()
    _assert_journal_lines(serve_log.read_text())
    _assert_no_secrets(dep, config_path, serve_log.read_text() + agent_log.read_text())


def _assert_journal_lines(text: str) -> None:
    """Under $JOURNAL_STREAM, every log line carries a syslog priority and no timestamp (journald adds it)."""
    lines = [line for line in text.splitlines() if line.startswith("<")]
    assert any(line.startswith("<6>INFO cryospy") for line in lines)
    assert any("stopped cleanly" in line for line in lines)
    for line in lines:
        assert re.match(r"<[2-7]>(DEBUG|INFO|WARNING|ERROR|CRITICAL) ", line), line
        assert not re.search(r"\b\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\b", line[:40]), line


def _assert_no_secrets(dep: Deployment, config_path: Path, logs: str) -> None:
    agent_doc = json.loads(config_path.read_text())
    secrets = {PASSPHRASE, dep.admin_token, dep.webhook_token, dep.minio_root_password, dep.presigner_secret,
               dep.handler_secret, agent_doc["client_secret"]}
    for secret in secrets:
        assert secret and secret not in logs
    assert "X-Amz-Signature=" not in logs.replace("X-Amz-Signature=***", "")
