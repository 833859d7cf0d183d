"""The home deployment (docker-compose.yml) under a real Docker engine that the test starts and stops.

MinIO is built from source in its multi-stage image, the runtime and the agent from the CryoSpy image, on local
base images (no registry: see tests/docker_engine.py). Every published port is on 127.0.0.1 and picked free;
the agent uses host networking and reaches them as a camera on the LAN would. The stack comes up with
``--wait`` (healthchecks), a camera is enrolled with ``docker compose exec runtime cryospy``, its clip is
indexed and played through the dashboard, the stack is taken down and up again and the clip is still there.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.cookiejar import CookieJar
from pathlib import Path

import pytest

from cryospy.common.objectkeys import device_hex
from tests.browser.conftest import browser, login  # noqa: F401  (the Chromium fixture plays the clip)
from tests.conftest import PASSPHRASE  # the browser fixture's login uses it
from tests.docker_engine import BASE_IMAGE, GO_IMAGE, DockerEngine, docker_engine
from tests.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    """One Compose project of docker-compose.yml with its own secrets, ports and volumes."""

    def __init__(self, engine: DockerEngine, project: str, workdir: Path, passphrase: str):
        self.engine = engine
        self.project = project
        self.runtime_port, self.minio_port = _free_port(), _free_port()
        self.url = f"http://127.0.0.1:{self.runtime_port}"
        secrets = workdir / "secrets"
        subprocess.run([str(ROOT / "infra" / "docker" / "make-secrets.sh"), str(secrets)], check=True,
                       capture_output=True)
        (secrets / "admin_passphrase").write_text(passphrase + "\n" if passphrase else "")
        self.secrets = {p.name: p.read_text().strip() for p in secrets.iterdir() if p.read_text().strip()}
        self.env_file = workdir / ".env"
        self.env_file.write_text("\n".join([
            f"CRYOSPY_BASE_IMAGE={BASE_IMAGE}", f"CRYOSPY_NODE_IMAGE={BASE_IMAGE}", "CRYOSPY_ASSETS=prebuilt",
            f"CRYOSPY_GO_IMAGE={GO_IMAGE}", f"CRYOSPY_MINIO_BASE_IMAGE={BASE_IMAGE}",
            "CRYOSPY_PUBLISH_ADDRESS=127.0.0.1",
            f"CRYOSPY_RUNTIME_PORT={self.runtime_port}", f"CRYOSPY_MINIO_PORT={self.minio_port}",
            f"CRYOSPY_PUBLIC_API_URL={self.url}", f"CRYOSPY_MINIO_PUBLIC_URL=http://127.0.0.1:{self.minio_port}",
            f"CRYOSPY_SECRETS_DIR={secrets}", ""]))
        self.secrets_dir = secrets

    def compose(self, *args: str, check: bool = True, timeout: float = 300,
                input: bytes | None = None) -> subprocess.CompletedProcess[str]:
        return self.engine.run("compose", "--project-name", self.project, "--project-directory", str(ROOT),
                               "-f", str(ROOT / "docker-compose.yml"), "--env-file", str(self.env_file),
                               "--profile", "agent", *args, check=check, timeout=timeout, input=input)

    def up(self, *services: str, build: bool = False) -> None:
        args = ["up", "-d", "--wait", "--wait-timeout", "240", *(["--build"] if build else []), *services]
        proc = self.compose(*args, check=False, timeout=3600)
        if proc.returncode != 0:
            logs = self.compose("logs", "--no-color", "--tail", "60", check=False).stdout
            raise AssertionError(f"compose up failed:\n{proc.stderr[-5000:]}\n--- logs ---\n{logs[-8000:]}")

    def exec(self, service: str, *command: str) -> str:
        return self.compose("exec", "-T", service, *command).stdout

    def down(self, *, volumes: bool = False) -> None:
        self.compose("down", "-t", "5", *(["-v"] if volumes else []), check=False)


def _login(base: str, passphrase: str) -> urllib.request.OpenerDirector:
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    page = opener.open(f"{base}/login", timeout=10).read().decode()
    csrf = page.split('name="csrf" value="')[1].split('"')[0]
    opener.open(f"{base}/login", data=f"csrf={csrf}&passphrase={urllib.parse.quote(passphrase)}".encode(),
                timeout=30)
    return opener


def _clip_keys(opener: urllib.request.OpenerDirector, base: str, device_id: str = "porch") -> list[str]:
    """Every clip of today's device-day page (the overview shows only the newest few)."""
    day = time.strftime("%Y-%m-%d", time.gmtime())
    try:
        html = opener.open(f"{base}/devices/{device_hex(device_id)}/{day}", timeout=10).read().decode()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:    # no clip yet
            return []
        raise
    return sorted(set(re.findall(r'<li class="clip[^"]*" data-key="(clips/[^"]+)"', html)))


@pytest.fixture(scope="module")
def engine() -> Iterator[DockerEngine]:
    with docker_engine() as engine:
        yield engine


@pytest.fixture(scope="module")
def stack(engine: DockerEngine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(engine, "cryospy-test", tmp_path_factory.mktemp("compose"), PASSPHRASE)
    stack.down(volumes=True)            # a run killed half-way may have left the project behind
    started = time.monotonic()
    try:
        stack.up("minio", "runtime", build=True)
        print(f"compose build + up --wait: {time.monotonic() - started:.0f} s")
        yield stack
    finally:
        stack.down(volumes=True)


def test_services_are_healthy_volumes_owned_and_secrets_not_in_the_environment(stack: Stack):
    states = {json.loads(line)["Service"]: json.loads(line)["Health"]
              for line in stack.compose("ps", "--format", "json").stdout.splitlines() if line.strip()}
    assert states == {"minio": "healthy", "runtime": "healthy"}
    assert stack.exec("minio", "stat", "-c", "%U %a", "/data").split() == ["minio", "700"]
    assert stack.exec("runtime", "stat", "-c", "%U %a", "/data").split() == ["cryospy", "700"]
    ids = stack.compose("ps", "-q").stdout.split()
    inspected = stack.engine.run("inspect", *ids).stdout
    for name, value in stack.secrets.items():
        if name != "minio_root_user":
            assert value not in inspected, f"the {name} secret shows in docker inspect"


def test_exec_cryospy_finds_the_deployment_and_leaves_nothing_root_owned(stack: Stack):
    assert "0 dead-lettered event(s)" in stack.exec("runtime", "cryospy", "events", "dead")
    assert stack.exec("runtime", "find", "/data", "-not", "-user", "cryospy").strip() == ""


def test_a_camera_is_enrolled_recorded_played_and_survives_a_restart(stack: Stack, browser):  # noqa: F811
    stack.exec("runtime", "cryospy", "devices", "create", "porch", "--out", "/data/porch.json",
               "--camera", "synthetic:320x180")
    config = json.loads(stack.exec("runtime", "cat", "/data/porch.json"))
    assert config["server_url"] == stack.url
    config["clip_seconds"] = 3
    (stack.secrets_dir / "agent.json").write_text(json.dumps(config))
    stack.up("agent")
    assert stack.exec("agent", "stat", "-c", "%U %a", "/spool").split() == ["cryospy", "700"]

    opener = _login(stack.url, PASSPHRASE)
    keys = wait_for(lambda: _clip_keys(opener, stack.url) or None, timeout=240, what="a clip on the dashboard")
    key = keys[0]
    playlist = opener.open(f"{stack.url}/media/clip.m3u8?key={urllib.parse.quote(key, safe='')}",
                           timeout=30).read().decode()
    assert "#EXT-X-MAP" in playlist and "#EXT-X-BYTERANGE" in playlist and "#EXT-X-ENDLIST" in playlist
    mp4_url = f"{stack.url}/media/clip.mp4?key={urllib.parse.quote(key, safe='')}"
    ranged = opener.open(urllib.request.Request(mp4_url, headers={"Range": "bytes=0-99"}), timeout=30)
    assert ranged.status == 206 and len(ranged.read()) == 100
    _assert_decodes(opener.open(mp4_url, timeout=60).read())
    # And in the dashboard's player (hls.js in Chromium), from the day page.
    context, page = login(browser, stack.url)
    page.goto(f"{stack.url}/devices/{b'porch'.hex()}/{'-'.join(key.split('/')[2:5])}")
    page.click(f"li[data-key='{key}'] a.play")
    wait_for(lambda: page.evaluate("() => document.getElementById('video').currentTime") > 0.5, timeout=60,
             what="the clip to play in Chromium")
    context.close()

    before = _clip_keys(opener, stack.url)
    stack.down()
    stack.up()
    opener = _login(stack.url, PASSPHRASE)
    _assert_decodes(opener.open(mp4_url, timeout=60).read())     # the clip, its key and the index survived
    wait_for(lambda: set(before) <= set(_clip_keys(opener, stack.url)), timeout=60,
             what=f"the clips listed before the restart ({len(before)}) on the dashboard again")


def test_a_first_start_without_passphrase_offers_setup_in_the_browser(engine: DockerEngine, stack: Stack,
                                                                     tmp_path: Path):
    fresh = Stack(engine, "cryospy-firstrun", tmp_path, passphrase="")
    fresh.down(volumes=True)
    try:
        fresh.up("minio", "runtime")      # the images are the ones the main stack built
        page = urllib.request.urlopen(f"{fresh.url}/setup", timeout=10).read().decode()
        assert "setup" in page.lower() and 'name="code"' in page
        assert fresh.exec("runtime", "stat", "-c", "%U %a", "/data/setup-code.txt").split() == ["cryospy", "600"]
        [runtime_id] = fresh.compose("ps", "-q", "runtime").stdout.split()
        assert engine.run("inspect", "-f", "{{.RestartCount}}", runtime_id).stdout.strip() == "0"
    finally:
        fresh.down(volumes=True)


def _assert_decodes(mp4: bytes) -> None:
    import imageio_ffmpeg

    proc = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", "pipe:0", "-f", "null", "-"],
                          input=mp4, capture_output=True, timeout=60)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr.decode()[-2000:]
