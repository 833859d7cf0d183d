"""The home deployment (docker-compose.yml) under a real Docker engine that the test starts and stops.

MinIO is built from source in its multi-stage image, the runtime and the agent from the CryoSpy image, on local
base images (no registry: see tests/docker_engine.py). Every published port is on 127.0.0.1 and picked free;
the agent uses host networking and reaches them as a camera on the LAN would. TLS is on, as by default: the
tls-init service makes the stack's CA and the certificates, every client here verifies with that CA (the
healthchecks too), and a client holding another CA is refused. The stack comes up with ``--wait``
(healthchecks), a camera is enrolled with ``docker compose exec runtime cryospy``, uploads over TLS and its clip
is indexed (MinIO's webhook verified the runtime) and played through the dashboard over HTTPS, the stack is
taken down and up again and the clip, the CA and the certificates are still there. A second stack runs the
plain-HTTP opt-out (``CRYOSPY_TLS=off``) through a first start without a passphrase.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.cookiejar import CookieJar
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cryospy.common.objectkeys import device_hex
from cryospy.edge_agent.api_client import ApiClient, ServerNotTrusted
from cryospy.edge_agent.config import parse_config
from cryospy.infra import certificates
from cryospy.web.server import SESSION_COOKIE
from tests.browser.conftest import CHROMIUM_ARGS, chromium_executable, login
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

    def __init__(self, engine: DockerEngine, project: str, workdir: Path, passphrase: str, *, tls: bool = True):
        self.engine = engine
        self.project = project
        self.runtime_port, self.minio_port = _free_port(), _free_port()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.runtime_port}"
        secrets = workdir / "secrets"
        subprocess.run([str(ROOT / "infra" / "docker" / "make-secrets.sh"), str(secrets)], check=True,
                       capture_output=True)
        (secrets / "admin_passphrase").write_text(passphrase + "\n" if passphrase else "")
        self.secrets = {p.name: p.read_text().strip() for p in secrets.iterdir() if p.read_text().strip()}
        self.env_file = workdir / ".env"
        self.env_file.write_text("\n".join([
            f"CRYOSPY_BASE_IMAGE={BASE_IMAGE}", f"CRYOSPY_NODE_IMAGE={BASE_IMAGE}", "CRYOSPY_ASSETS=prebuilt",
            f"CRYOSPY_GO_IMAGE={GO_IMAGE}", f"CRYOSPY_MINIO_BASE_IMAGE={BASE_IMAGE}",
            # The LAN address cameras use is loopback here; the public URLs follow from it and the ports.
            "CRYOSPY_HOST=127.0.0.1", f"CRYOSPY_TLS={'on' if tls else 'off'}", "CRYOSPY_PUBLISH_ADDRESS=127.0.0.1",
            f"CRYOSPY_RUNTIME_PORT={self.runtime_port}", f"CRYOSPY_MINIO_PORT={self.minio_port}",
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

    def ca_pem(self) -> str:
        """The stack's CA certificate, as the runtime has it (and puts in agent configs)."""
        return self.exec("runtime", "cat", "/tls/ca.crt")

    def trusting(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.ca_pem())


def _opener(context: ssl.SSLContext | None) -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()),
                                       urllib.request.HTTPSHandler(context=context))


def _login(base: str, passphrase: str, context: ssl.SSLContext | None = None) -> urllib.request.OpenerDirector:
    opener = _opener(context)
    page = opener.open(f"{base}/login", timeout=10).read().decode()
    csrf = page.split('name="csrf" value="')[1].split('"')[0]
    opener.open(f"{base}/login", data=f"csrf={csrf}&passphrase={urllib.parse.quote(passphrase)}".encode(),
                timeout=30)
    return opener


def _served_certificate(port: int, context: ssl.SSLContext) -> x509.Certificate:
    """The certificate a TLS port on 127.0.0.1 presents, after ``context`` verified it for that address."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


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
        print(f"compose build + up --wait (TLS): {time.monotonic() - started:.0f} s")
        yield stack
    finally:
        stack.down(volumes=True)


@pytest.fixture(scope="module")
def tls_browser(stack: Stack):  # type: ignore[no-untyped-def]
    """Chromium that accepts the runtime's certificate, and only it, pinned by its public key (the browser tests
    have no NSS tools to install the stack's CA; a person installs tls/ca.crt as docs/tls.md says)."""
    from playwright.sync_api import sync_playwright

    runtime_cert = x509.load_pem_x509_certificate(stack.exec("runtime", "cat", "/tls/runtime.crt").encode())
    spki = runtime_cert.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    pin = base64.b64encode(hashlib.sha256(spki).digest()).decode()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_executable(),
                              args=[*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={pin}"])
        yield b
        b.close()


def test_services_are_healthy_volumes_owned_and_secrets_not_in_the_environment(stack: Stack):
    states = {json.loads(line)["Service"]: json.loads(line)["Health"]
              for line in stack.compose("ps", "--format", "json").stdout.splitlines() if line.strip()}
    assert states == {"minio": "healthy", "runtime": "healthy"}
    [init] = [json.loads(line) for line in
              stack.compose("ps", "-a", "--format", "json", "tls-init").stdout.splitlines()]
    assert init["State"] == "exited" and init["ExitCode"] == 0
    assert stack.exec("minio", "stat", "-c", "%U %a", "/data").split() == ["minio", "700"]
    assert stack.exec("runtime", "stat", "-c", "%U %a", "/data").split() == ["cryospy", "700"]
    ids = stack.compose("ps", "-q").stdout.split()
    inspected = stack.engine.run("inspect", *ids).stdout
    for name, value in stack.secrets.items():
        if name != "minio_root_user":
            assert value not in inspected, f"the {name} secret shows in docker inspect"


def test_the_ca_key_stays_with_tls_init_and_each_server_holds_only_its_own_certificate(stack: Stack):
    assert stack.exec("runtime", "ls", "/tls").split() == ["ca.crt", "runtime.crt", "runtime.key"]
    assert stack.exec("runtime", "stat", "-c", "%U %a", "/tls/runtime.key").split() == ["cryospy", "600"]
    assert sorted(stack.exec("minio", "find", "/certs", "-type", "f").split()) == \
        ["/certs/CAs/ca.crt", "/certs/private.key", "/certs/public.crt"]
    assert stack.exec("minio", "stat", "-c", "%U %a", "/certs/private.key").split() == ["minio", "600"]
    for service in ("runtime", "minio"):
        found = stack.exec(service, "find", "/", "-path", "/proc", "-prune", "-o", "-path", "/sys", "-prune",
                           "-o", "-name", "ca.key", "-print")
        assert found.strip() == "", f"the CA key is in the {service} container: {found}"
    runtime_cert = x509.load_pem_x509_certificate(stack.exec("runtime", "cat", "/tls/runtime.crt").encode())
    # What cameras on the LAN use (CRYOSPY_HOST) and what the containers call each other.
    assert {"127.0.0.1", "runtime", "minio", "localhost"} <= set(certificates.certificate_names(runtime_cert))


def test_both_ports_speak_tls_with_the_stack_ca_and_refuse_another_ca(stack: Stack):
    trusting = stack.trusting()
    ca = x509.load_pem_x509_certificate(stack.ca_pem().encode())
    for port in (stack.runtime_port, stack.minio_port):
        assert _served_certificate(port, trusting).issuer == ca.subject
        _, stranger = certificates.make_authority("someone else's CA")
        other = ssl.create_default_context(cadata=stranger.public_bytes(serialization.Encoding.PEM).decode())
        with pytest.raises(ssl.SSLCertVerificationError):
            _served_certificate(port, other)
    # The dashboard: HSTS and a Secure session cookie over HTTPS; plain HTTP is sent to https://, not served.
    conn = http.client.HTTPSConnection("127.0.0.1", stack.runtime_port, timeout=10, context=trusting)
    conn.request("GET", "/login")
    page = conn.getresponse()
    page.read()
    assert page.status == 200 and page.getheader("Strict-Transport-Security") == "max-age=31536000"
    assert "; Secure" in page.getheader("Set-Cookie", "")           # the pre-login cookie
    conn.close()
    plain = http.client.HTTPConnection("127.0.0.1", stack.runtime_port, timeout=10)
    plain.request("GET", "/login")
    redirect = plain.getresponse()
    assert redirect.status == 301 and redirect.getheader("Location") == f"{stack.url}/login"
    plain.close()


def test_exec_cryospy_finds_the_deployment_and_leaves_nothing_root_owned(stack: Stack):
    assert "0 dead-lettered event(s)" in stack.exec("runtime", "cryospy", "events", "dead")
    assert stack.exec("runtime", "find", "/data", "-not", "-user", "cryospy").strip() == ""


def test_a_camera_is_enrolled_recorded_played_and_survives_a_restart(stack: Stack, tls_browser, tmp_path: Path):
    stack.exec("runtime", "cryospy", "devices", "create", "porch", "--out", "/data/porch.json",
               "--camera", "synthetic:320x180")
    config = json.loads(stack.exec("runtime", "cat", "/data/porch.json"))
    ca_before = stack.ca_pem()
    assert config["server_url"] == stack.url and config["ca_bundle"] == ca_before
    # The same config with another CA: the agent's client refuses the server before sending anything.
    _, stranger = certificates.make_authority("someone else's CA")
    impostor = {**config, "ca_bundle": stranger.public_bytes(serialization.Encoding.PEM).decode()}
    with pytest.raises(ServerNotTrusted, match="does not verify against this agent's ca_bundle"):
        ApiClient(parse_config(impostor, tmp_path)).get_settings()

    config["clip_seconds"] = 3
    (stack.secrets_dir / "agent.json").write_text(json.dumps(config))
    stack.up("agent")          # healthy: its healthcheck reached the runtime, verified with its ca_bundle
    assert stack.exec("agent", "stat", "-c", "%U %a", "/spool").split() == ["cryospy", "700"]

    trusting = stack.trusting()
    opener = _login(stack.url, PASSPHRASE, trusting)
    jar = next(h.cookiejar for h in opener.handlers if isinstance(h, urllib.request.HTTPCookieProcessor))
    assert SESSION_COOKIE in {c.name for c in jar} and all(c.secure for c in jar), "cookies must be Secure"
    keys = wait_for(lambda: _clip_keys(opener, stack.url) or None, timeout=240, what="a clip on the dashboard")
    # MinIO's webhook delivered its events over HTTPS, verifying the runtime with the stack's CA: its queue
    # (where an undelivered event waits) is empty, and it logged no certificate error.
    wait_for(lambda: stack.exec("minio", "find", "/data/.cryospy-events", "-type", "f").strip() == "",
             timeout=60, what="MinIO's webhook queue to drain")
    minio_log = stack.compose("logs", "--no-color", "minio").stdout
    assert "x509" not in minio_log and "certificate" not in minio_log.lower(), minio_log[-3000:]
    key = keys[0]
    playlist = opener.open(f"{stack.url}/media/clip.m3u8?key={urllib.parse.quote(key, safe='')}",
                           timeout=30).read().decode()
    assert "#EXT-X-MAP" in playlist and "#EXT-X-BYTERANGE" in playlist and "#EXT-X-ENDLIST" in playlist
    mp4_url = f"{stack.url}/media/clip.mp4?key={urllib.parse.quote(key, safe='')}"
    ranged = opener.open(urllib.request.Request(mp4_url, headers={"Range": "bytes=0-99"}), timeout=30)
    assert ranged.status == 206 and len(ranged.read()) == 100
    _assert_decodes(opener.open(mp4_url, timeout=60).read())
    # And in the dashboard's player (hls.js in Chromium), from the day page, over HTTPS.
    context, page = login(tls_browser, stack.url)
    page.goto(f"{stack.url}/devices/{b'porch'.hex()}/{'-'.join(key.split('/')[2:5])}")
    page.click(f"li[data-key='{key}'] a.play")
    wait_for(lambda: page.evaluate("() => document.getElementById('video').currentTime") > 0.5, timeout=60,
             what="the clip to play in Chromium")
    assert page.evaluate("() => location.protocol") == "https:"
    context.close()

    before = _clip_keys(opener, stack.url)
    certs_before = {path: stack.exec(service, "cat", path) for service, path in
                    (("runtime", "/tls/runtime.crt"), ("minio", "/certs/public.crt"))}
    stack.down()
    stack.up()                 # every service again, the agent too: healthy with the CA it was given
    assert stack.ca_pem() == ca_before, "a restart made a new CA: every camera would stop trusting the server"
    for path, pem in certs_before.items():
        assert stack.exec("runtime" if path.startswith("/tls") else "minio", "cat", path) == pem, \
            f"{path} was issued again although it was still good"
    assert "made the deployment's certificate authority" not in stack.compose("logs", "tls-init").stdout
    opener = _login(stack.url, PASSPHRASE, trusting)        # the CA from before the restart still verifies
    _assert_decodes(opener.open(mp4_url, timeout=60).read())     # the clip, its key and the index survived
    wait_for(lambda: set(before) <= set(_clip_keys(opener, stack.url)), timeout=60,
             what=f"the clips listed before the restart ({len(before)}) on the dashboard again")


def test_plain_http_opt_out_and_a_first_start_without_passphrase_offers_setup_in_the_browser(
        engine: DockerEngine, stack: Stack, tmp_path: Path):
    fresh = Stack(engine, "cryospy-firstrun", tmp_path, passphrase="", tls=False)
    fresh.down(volumes=True)
    try:
        fresh.up("minio", "runtime")      # the images are the ones the main stack built
        assert fresh.url.startswith("http://")
        page = urllib.request.urlopen(f"{fresh.url}/setup", timeout=10).read().decode()
        assert "setup" in page.lower() and 'name="code"' in page
        assert fresh.exec("runtime", "stat", "-c", "%U %a", "/data/setup-code.txt").split() == ["cryospy", "600"]
        [runtime_id] = fresh.compose("ps", "-q", "runtime").stdout.split()
        assert engine.run("inspect", "-f", "{{.RestartCount}}", runtime_id).stdout.strip() == "0"
        assert fresh.exec("runtime", "ls", "-A", "/tls").strip() == ""       # CRYOSPY_TLS=off: no certificates
    finally:
        fresh.down(volumes=True)


def _assert_decodes(mp4: bytes) -> None:
    import imageio_ffmpeg

    proc = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", "pipe:0", "-f", "null", "-"],
                          input=mp4, capture_output=True, timeout=60)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr.decode()[-2000:]
