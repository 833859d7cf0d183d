"""``cryospy demo``: MinIO, the runtime and one edge agent fed by a generated video, in one command.

The first run builds MinIO if needed, creates a deployment under ``--data-dir`` (default ``var/demo``; on
127.0.0.1 and, like any deployment, with TLS), generates the admin passphrase and a sample video, and enrols
a camera. Later runs reuse all of it, so the clips recorded before are still there. Ctrl-C stops the agent
(its current clip is kept), the runtime and MinIO, in that order.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from pathlib import Path

from cryospy.common.atomic import write_atomic
from cryospy.common.keys import KeyStore
from cryospy.edge_agent.agent import Agent
from cryospy.edge_agent.config import load_config
from cryospy.edge_agent.synthetic import make_sample_video
from cryospy.infra import certificates, deployment
from cryospy.infra.minio_binary import ensure_minio
from cryospy.infra.minio_server import MinioServer, free_port, port_is_free
from cryospy.infra.runtime import Runtime, RuntimeOptions

from .devices import create_device, list_devices
from .setup_cmd import setup

log = logging.getLogger(__name__)

DEMO_DEVICE = "demo-cam"


def _pick(host: str, preferred: int) -> int:
    return preferred if port_is_free(host, preferred) else free_port(host)


def prepare(data_dir: Path, say=print) -> tuple[deployment.Deployment, str]:
    pass_file = data_dir / "demo-passphrase.txt"
    if (data_dir / deployment.FILE_NAME).exists():
        dep = deployment.load(data_dir)
        return dep, pass_file.read_text().strip()
    say(f"Creating a demo deployment in {data_dir} …")
    passphrase = secrets.token_urlsafe(12)
    host = "127.0.0.1"
    dep = setup(data_dir, passphrase, runtime_port=_pick(host, 8480), minio_port=_pick(host, 9480),
                minio_console_port=_pick(host, 9481))
    write_atomic(pass_file, passphrase.encode())
    return dep, passphrase


def ensure_camera(dep: deployment.Deployment, data_dir: Path, clip_seconds: float) -> Path:
    config_path = data_dir / "agent.json"
    video = data_dir / "sample.mp4"
    if not video.exists():
        make_sample_video(video, seconds=30, width=640, height=360, fps=15)
    if not config_path.exists():
        if any(d["device_id"] == DEMO_DEVICE for d in list_devices(dep)):
            raise SystemExit(f"{config_path} is missing but {DEMO_DEVICE} is enrolled; delete {data_dir} to start over")
        create_device(dep, DEMO_DEVICE, config_path, {
            "camera_device": str(video), "clip_seconds": clip_seconds, "fps": 15, "loop": True,
            "spool_dir": "spool-demo-cam"})
    else:
        # Keep the server URL current if the runtime moved to another port.
        doc = json.loads(config_path.read_text())
        doc["server_url"] = dep.api_url
        if dep.tls:
            doc["ca_bundle"] = certificates.ca_pem(dep)
        doc["deployment_public_key"] = KeyStore.load(dep.keys_path).current_public_key().to_text()
        write_atomic(config_path, json.dumps(doc, indent=2).encode())
    return config_path


def run_demo(data_dir: Path, *, seconds: float | None, clip_seconds: float, say=print) -> int:
    data_dir = data_dir.resolve()
    ensure_minio()
    dep, passphrase = prepare(data_dir, say)
    minio = MinioServer(dep).start()
    runtime: Runtime | None = None
    agent: Agent | None = None
    thread: threading.Thread | None = None
    try:
        runtime = Runtime(dep, RuntimeOptions(reconcile_seconds=60))
        runtime.unlock(passphrase)
        runtime.start()
        agent = Agent.build(load_config(ensure_camera(dep, data_dir, clip_seconds)))
        thread = threading.Thread(target=agent.run, kwargs={"install_signals": False}, name="agent")
        thread.start()
        say("")
        say("CryoSpy demo is running.")
        say(f"  Dashboard:  {dep.dashboard_url}/")
        if dep.tls:
            say(f"  TLS:        this deployment's own CA; to open the dashboard without a warning, trust "
                f"{dep.ca_file} in your browser (docs/tls.md)")
        say(f"  Passphrase: {passphrase}   (also in {data_dir / 'demo-passphrase.txt'})")
        say(f"  First clip appears after about {clip_seconds:.0f} s. Press Ctrl-C to stop.")
        deadline = time.monotonic() + seconds if seconds else None
        try:
            while deadline is None or time.monotonic() < deadline:
                time.sleep(0.5)
        except KeyboardInterrupt:
            say("\nStopping …")
    finally:
        if agent is not None:
            agent.stop.set()
        if thread is not None:
            thread.join(120)
        if runtime is not None:
            runtime.stop()
        minio.stop()
    say("Stopped. Run the same command again to continue where you left off.")
    return 0
