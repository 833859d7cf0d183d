"""The edge agent against the real runtime and a real MinIO: outages, SIGKILL, a full spool, an unplugged
camera and settings changed on the server.

Every agent here records tiny clips (160x96 at 10 fps, 2 s unless the server decides) from a synthetic
camera or a generated video file. "Arrived once, in order" is checked against the index: the sequence numbers
of a device's clips must be exactly 0..n-1, where n is the number of clips the agent sealed.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from cryospy.cli.admin_client import AdminClient
from cryospy.cli.devices import create_device
from cryospy.edge_agent.agent import Agent
from cryospy.edge_agent.api_client import ApiClient
from cryospy.edge_agent.config import load_config
from cryospy.edge_agent.scratch import scratch_path
from cryospy.edge_agent.spool import Spool
from cryospy.edge_agent.synthetic import make_sample_video
from cryospy.functions.index.records import ClipRecord
from cryospy.infra.deployment import Deployment
from cryospy.infra.minio_server import MinioServer
from cryospy.infra.runtime import Runtime, RuntimeOptions
from tests.conftest import PASSPHRASE, new_deployment
from tests.support import agent_process, wait_for

pytestmark = pytest.mark.integration

TINY = {"camera_device": "synthetic:160x96", "clip_seconds": 2, "fps": 10, "settings_sync_seconds": 5,
        "server_timeout_seconds": 5, "upload_retry_minutes": 0.05, "source_retry_max_seconds": 1}


def start_runtime(dep: Deployment) -> Runtime:
    rt = Runtime(dep, RuntimeOptions(reconcile_seconds=3600))
    rt.unlock(PASSPHRASE)
    return rt.start()


def enrol(dep: Deployment, device_id: str, tmp_path: Path, **overrides: Any) -> Path:
    path = tmp_path / f"{device_id}.json"
    create_device(dep, device_id, path, {**TINY, "temp_dir": str(tmp_path), **overrides})
    return path


def patch_settings(dep: Deployment, device_id: str, changes: dict[str, Any]) -> str:
    """PATCH the device's settings as the admin; returns the ETag the device will be served."""
    from cryospy.functions.devices.self_service import settings_document
    from cryospy.functions.services import get_services

    AdminClient(dep.runtime_url, dep.admin_token).call(
        "PATCH", f"/v1/admin/devices/{quote(device_id)}/settings", changes)
    services = get_services()   # the runtime under test runs in this process
    return settings_document(services, services.devices.get(device_id))[1]


def indexed(rt: Runtime, device_id: str) -> list[ClipRecord]:
    return [c for day in rt.services.index.days(device_id) for c in rt.services.index.clips_for_day(device_id, day)]


def sequences(rt: Runtime, device_id: str) -> list[int]:
    return sorted(c.sequence for c in indexed(rt, device_id))


def heartbeat(rt: Runtime, device_id: str) -> dict[str, Any]:
    return rt.services.devices.get(device_id).heartbeat or {}


class RunningAgent:
    """An Agent on a thread, as `cryospy agent` runs it minus the signal handlers."""

    def __init__(self, config_path: Path) -> None:
        self.agent = Agent.build(load_config(config_path))
        self.thread = threading.Thread(target=self.agent.run, kwargs={"install_signals": False}, name="agent")
        self.thread.start()

    def stop(self) -> None:
        self.agent.stop.set()
        self.thread.join(120)
        assert not self.thread.is_alive()

    @property
    def sealed(self) -> int:
        return self.agent.spool.chain_state()[0]


@pytest.fixture
def own_runtime(deployment: Deployment, minio: MinioServer) -> Iterator[list[Runtime]]:
    """Runtimes this test starts and stops itself (the last one is stopped at the end)."""
    runtimes: list[Runtime] = [start_runtime(deployment)]
    yield runtimes
    runtimes[-1].stop()


def test_runtime_outage_loses_and_duplicates_nothing(deployment: Deployment, own_runtime, tmp_path: Path):
    agent = RunningAgent(enrol(deployment, "outage-agent", tmp_path))
    try:
        wait_for(lambda: indexed(own_runtime[-1], "outage-agent"), timeout=60, what="the first clip indexed")
        own_runtime[-1].stop()
        wait_for(lambda: len(agent.agent.spool.entries()) >= 3, timeout=60, what="clips waiting in the spool")
        own_runtime.append(start_runtime(deployment))
        wait_for(lambda: not agent.agent.spool.entries(), timeout=90, what="the spool to drain")
    finally:
        agent.stop()
    rt = own_runtime[-1]
    wait_for(lambda: len(sequences(rt, "outage-agent")) >= agent.sealed, timeout=60, what="everything indexed")
    assert agent.sealed >= 5
    assert sequences(rt, "outage-agent") == list(range(agent.sealed))
    assert agent.agent.spool.dropped == 0


def test_minio_outage_loses_and_duplicates_nothing(minio_binary: Path, tmp_path: Path):
    dep = new_deployment(tmp_path / "dep")
    store = MinioServer(dep, binary=minio_binary).start()
    rt = start_runtime(dep)
    try:
        agent = RunningAgent(enrol(dep, "minio-outage", tmp_path))
        try:
            wait_for(lambda: indexed(rt, "minio-outage"), timeout=60, what="the first clip indexed")
            store.stop()
            wait_for(lambda: len(agent.agent.spool.entries()) >= 3, timeout=60, what="clips waiting in the spool")
            store = MinioServer(dep, binary=minio_binary).start()
            wait_for(lambda: not agent.agent.spool.entries(), timeout=90, what="the spool to drain")
        finally:
            agent.stop()
        wait_for(lambda: len(sequences(rt, "minio-outage")) >= agent.sealed, timeout=90, what="everything indexed")
        assert agent.sealed >= 5
        assert sequences(rt, "minio-outage") == list(range(agent.sealed))
    finally:
        rt.stop()
        store.stop()


def _kill_while_spooled(proc: subprocess.Popen[bytes], spool_dir: Path) -> bool:
    """SIGKILL the agent at a moment when a sealed clip waits in its spool; False to try again later.

    The agent is frozen (SIGSTOP) before looking, so the clip cannot be uploaded between the look and the kill.
    """
    if not any(spool_dir.glob("0*.json")):
        return False
    proc.send_signal(signal.SIGSTOP)
    if any(spool_dir.glob("0*.json")):
        proc.kill()
        return True
    proc.send_signal(signal.SIGCONT)
    return False


def test_sigkill_mid_upload_then_restart_loses_and_duplicates_nothing(deployment: Deployment, runtime,
                                                                    tmp_path: Path):
    config_path = enrol(deployment, "killed-agent", tmp_path)
    config = load_config(config_path)
    log_path = tmp_path / "agent.log"
    first = agent_process(config_path, log_path)
    try:
        wait_for(lambda: len(indexed(runtime, "killed-agent")) >= 2, timeout=60, what="two clips indexed")
        wait_for(lambda: _kill_while_spooled(first, config.spool_dir), timeout=60, what="a clip in flight")
    finally:
        first.kill()
        first.wait(30)
    # The hardest moment to die: the PUT went through, the clip was not yet forgotten. Make it certain by
    # uploading the oldest spooled clip by hand, as the dead agent might have (or already did: 412).
    [oldest, *_] = Spool(config.spool_dir, config.spool_max_bytes).entries()
    client = ApiClient(config)
    slot = client.request_slot({"size": oldest.size, "sha256": oldest.sha256, "captured_at": oldest.captured_at,
                                "sequence": oldest.sequence, "duration_s": oldest.duration_s})
    assert client.put(slot, config.spool_dir / f"{oldest.name}.cse") in (200, 412)

    second = agent_process(config_path, log_path)
    try:
        wait_for(lambda: not (config.spool_dir / f"{oldest.name}.json").exists(), timeout=60,
                 what="the restarted agent to settle the clip uploaded by hand")
        wait_for(lambda: len(sequences(runtime, "killed-agent")) >= oldest.sequence + 3, timeout=60,
                 what="new clips after the restart")
    finally:
        second.send_signal(signal.SIGTERM)                     # finish the current clip, drain, exit
        assert second.wait(120) == 0
    log = log_path.read_text()
    assert f"clip #{oldest.sequence} was already uploaded" in log
    state = json.loads((config.spool_dir / "state.json").read_text())
    wait_for(lambda: len(sequences(runtime, "killed-agent")) >= state["next_sequence"], timeout=60,
             what="every sealed clip indexed")
    assert sequences(runtime, "killed-agent") == list(range(state["next_sequence"]))
    assert not list(config.spool_dir.glob("*.cse")), "SIGTERM drained the spool"
    assert not scratch_path(config.spool_dir, config.temp_dir).exists(), "no plaintext left behind"


def test_full_spool_drops_oldest_quiet_clips_and_reports_them(deployment: Deployment, own_runtime, tmp_path: Path):
    agent = RunningAgent(enrol(deployment, "full-spool", tmp_path, spool_max_megabytes=0.1))
    try:
        wait_for(lambda: indexed(own_runtime[-1], "full-spool"), timeout=60, what="the first clip indexed")
        own_runtime[-1].stop()
        wait_for(lambda: agent.agent.spool.dropped >= 2, timeout=90, what="the spool to overflow")
        own_runtime.append(start_runtime(deployment))
        rt = own_runtime[-1]
        wait_for(lambda: heartbeat(rt, "full-spool").get("dropped_clips", 0) >= 2, timeout=60,
                 what="the drops reported in a heartbeat")
    finally:
        agent.stop()
    rt = own_runtime[-1]
    wait_for(lambda: not agent.agent.spool.entries(), timeout=60, what="the spool to drain")
    dropped = agent.agent.spool.dropped
    wait_for(lambda: len(sequences(rt, "full-spool")) + dropped >= agent.sealed, timeout=60,
             what="every kept clip indexed")
    present = set(sequences(rt, "full-spool"))
    missing = sorted(set(range(agent.sealed)) - present)
    assert len(missing) == dropped and len(present) + dropped == agent.sealed
    assert missing[0] > 0 and missing == list(range(missing[0], missing[0] + dropped)), "oldest first, in a block"
    assert (agent.agent.config.spool_dir / "dropped.json").exists()


def test_unplugged_file_source_reconnects_and_reports_it(deployment: Deployment, runtime, tmp_path: Path):
    video = make_sample_video(tmp_path / "camera.mp4", seconds=2, width=160, height=96, fps=10)
    agent = RunningAgent(enrol(deployment, "unplugged", tmp_path, camera_device=str(video)))
    try:
        wait_for(lambda: indexed(runtime, "unplugged"), timeout=60, what="the first clip indexed")
        video.rename(tmp_path / "unplugged.mp4")
        beat = wait_for(lambda: (b := heartbeat(runtime, "unplugged")) and ("unavailable" in b["source_state"]
                                                                            or "lost" in b["source_state"]) and b,
                        timeout=60, what="the heartbeat to report the source gone")
        assert "camera.mp4" in beat["source_state"]
        assert agent.thread.is_alive()
        before = agent.agent.recorder.clips
        (tmp_path / "unplugged.mp4").rename(video)
        wait_for(lambda: agent.agent.recorder.clips >= before + 2, timeout=60, what="recording to resume")
        wait_for(lambda: heartbeat(runtime, "unplugged").get("source_state") == "ok", timeout=30,
                 what="the heartbeat to report the source back")
    finally:
        agent.stop()


def test_settings_changed_on_the_server_apply_within_one_sync_interval(deployment: Deployment, runtime,
                                                                     tmp_path: Path):
    config_path = enrol(deployment, "follower", tmp_path, clip_seconds=None, settings_sync_seconds=None)
    patch_settings(deployment, "follower", {"clip_duration_seconds": 5, "settings_sync_seconds": 5,
                                            "capture_frame_rate": 10, "downscale_resolution": "160x96"})
    agent = RunningAgent(config_path)
    try:
        wait_for(lambda: indexed(runtime, "follower"), timeout=60, what="the first clip indexed")
        assert indexed(runtime, "follower")[0].duration_s == pytest.approx(5.0, abs=0.05)
        new_etag = patch_settings(deployment, "follower", {"clip_duration_seconds": 6})
        wait_for(lambda: heartbeat(runtime, "follower").get("settings_etag") == new_etag, timeout=30,
                 what="the heartbeat to carry the new ETag")
        wait_for(lambda: any(c.duration_s == pytest.approx(6.0, abs=0.05) for c in indexed(runtime, "follower")),
                 timeout=60, what="a 6 s clip")
    finally:
        agent.stop()
    durations = [round(c.duration_s) for c in sorted(indexed(runtime, "follower"), key=lambda c: c.sequence)]
    first_six = durations.index(6)
    assert set(durations[:first_six]) <= {5, 6} and all(d == 6 for d in durations[first_six:-1])
