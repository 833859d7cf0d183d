"""First-run setup in the browser, against a real runtime and MinIO on a deployment made without a key store.

The tests run in order on one deployment, as an admin would: the fresh system sends everything to /setup; wrong
codes, weak passphrases and stale forms are refused; one of several concurrent setups wins; the system then
works (clips get indexed) and never offers setup again, also after a restart.
"""

from __future__ import annotations

import http.client
import io
import os
import re
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest

from cryospy.cli.setup_cmd import announce_browser_setup, setup
from cryospy.common.keys import KeyStore, KeyStoreExists
from cryospy.functions.keyvault import KeyVault
from cryospy.infra.deployment import Deployment
from cryospy.infra.minio_server import MinioServer, free_port
from cryospy.infra.runtime import Runtime, RuntimeOptions
from cryospy.web.first_run import SETUP_CODE_FILE
from tests.conftest import FAST_SCRYPT_N
from tests.support import FakeCamera, cli_setup_browser, clip_place, wait_for

pytestmark = pytest.mark.integration

NEW_PASSPHRASE = "four words chosen at first run"


@dataclass
class Reply:
    status: int
    location: str
    cookies: list[str]
    body: str


class Client:
    """A cookie-keeping HTTP client that does not follow redirects (so each answer's Location can be checked)."""

    def __init__(self, base: str):
        self.base = urlsplit(base)
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict[str, str] | None = None) -> Reply:
        conn = http.client.HTTPConnection(self.base.hostname, self.base.port, timeout=30)
        body = urlencode(form).encode() if form is not None else None
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())} if self.cookies else {}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            reply = Reply(resp.status, resp.getheader("Location", ""), resp.headers.get_all("Set-Cookie") or [],
                          resp.read().decode())
        finally:
            conn.close()
        for header in reply.cookies:
            name, _, rest = header.partition("=")
            value = rest.split(";")[0]
            if "Max-Age=0" in header:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return reply

    def setup(self, code: str, passphrase: str, repeat: str | None = None) -> Reply:
        page = self.request("GET", "/setup")
        assert page.status == 200, page
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.body).group(1)
        return self.request("POST", "/setup", {"csrf": csrf, "code": code, "passphrase": passphrase,
                                               "repeat": passphrase if repeat is None else repeat})


class System:
    """The fresh deployment's runtime, restartable like `cryospy serve`."""

    def __init__(self, dep: Deployment):
        self.dep = dep
        self.runtime: Runtime | None = None

    def start(self) -> Runtime:
        self.runtime = Runtime(self.dep, RuntimeOptions(reconcile_seconds=3600, setup_scrypt_n=FAST_SCRYPT_N))
        return self.runtime.start()

    def restart(self) -> Runtime:
        self.stop()
        return self.start()

    def stop(self) -> None:
        if self.runtime is not None:
            self.runtime.stop()
            self.runtime = None

    @property
    def code_file(self) -> Path:
        return self.dep.path(SETUP_CODE_FILE)

    def code(self) -> str:
        return self.code_file.read_text().strip()

    def client(self) -> Client:
        return Client(self.dep.runtime_url)


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, minio_binary: Path) -> Iterator[System]:
    host = "127.0.0.1"
    dep = setup(tmp_path_factory.mktemp("first-run") / "data", None, tls=False, runtime_port=free_port(host),
                minio_port=free_port(host), minio_console_port=free_port(host))
    assert not dep.keys_path.exists()
    with MinioServer(dep, binary=minio_binary):
        sys_ = System(dep)
        sys_.start()
        try:
            yield sys_
        finally:
            sys_.stop()


def test_a_fresh_deployment_sends_every_page_to_setup(system: System):
    rt = system.runtime
    assert rt is not None and rt.services.vault.needs_setup and rt.services.vault.locked
    assert rt.setup_code_path == system.code_file
    assert stat.S_IMODE(system.code_file.stat().st_mode) == 0o600 and len(system.code()) >= 16
    client = system.client()
    for method, path in (("GET", "/"), ("GET", "/index.html"), ("GET", "/login"), ("POST", "/login"),
                         ("GET", "/live"), ("GET", "/export"), ("GET", "/admin"), ("GET", "/media/clip.mp4?key=x"),
                         ("GET", "/devices/cam/2026-01-02"), ("POST", "/logout"), ("POST", "/actions/protect")):
        reply = client.request(method, path, {} if method == "POST" else None)
        assert (reply.status, reply.location) == (302, "/setup"), (method, path)
    page = client.request("GET", "/setup")
    assert page.status == 200
    for field in ("code", "passphrase", "repeat", "csrf"):
        assert f'name="{field}"' in page.body
    assert any(c.startswith("cryospy_presetup=") and "HttpOnly" in c and "SameSite=Strict" in c
               for c in page.cookies)
    assert system.code() not in page.body                      # the page never shows the code itself
    assert client.request("GET", "/static/setup.css").status == 200
    assert client.request("GET", "/health").status == 200       # the API does not wait for the passphrase


def test_wrong_codes_are_refused_then_rate_limited(system: System):
    client = system.client()
    for attempt in range(5):
        reply = client.setup(f"not-the-code-{attempt}", NEW_PASSPHRASE)
        assert reply.status == 403 and "Wrong setup code" in reply.body
    reply = client.setup(system.code(), NEW_PASSPHRASE)            # even the right code, while blocked
    assert reply.status == 429 and "Too many wrong setup codes" in reply.body
    assert not system.dep.keys_path.exists()
    # A restart issues a new code; the old one is void.
    old = system.code()
    system.restart()
    assert system.code() != old
    client = system.client()
    assert client.setup(old, NEW_PASSPHRASE).status == 403
    assert not system.dep.keys_path.exists()


def test_a_stale_form_and_a_weak_passphrase_are_refused(system: System):
    client = system.client()
    client.request("GET", "/setup")
    reply = client.request("POST", "/setup", {"csrf": "forged", "code": system.code(),
                                              "passphrase": NEW_PASSPHRASE, "repeat": NEW_PASSPHRASE})
    assert reply.status == 403 and "The form expired" in reply.body
    reply = client.setup(system.code(), "short")
    assert reply.status == 400
    message = re.search(r'id="passphrase-error"[^>]*>([^<]+)<', reply.body)
    assert message and "at least 10 characters" in message.group(1)
    reply = client.setup(system.code(), NEW_PASSPHRASE, repeat=NEW_PASSPHRASE + "!")
    assert reply.status == 400 and re.search(r'id="repeat-error"[^>]*>[^<]*differ', reply.body)
    assert not system.dep.keys_path.exists() and system.code_file.exists()


def test_setup_logs_in_unlocks_and_clips_get_indexed(system: System, tmp_path: Path):
    rt = system.runtime
    assert rt is not None
    code = system.code()
    clients = [system.client() for _ in range(4)]
    forms = []
    for c in clients:
        csrf = re.search(r'name="csrf" value="([^"]+)"', c.request("GET", "/setup").body).group(1)
        forms.append({"csrf": csrf, "code": code, "passphrase": NEW_PASSPHRASE, "repeat": NEW_PASSPHRASE})
    replies: list[Reply | None] = [None] * len(clients)
    go = threading.Barrier(len(clients))

    def submit(i: int) -> None:
        go.wait()
        replies[i] = clients[i].request("POST", "/setup", forms[i])

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    statuses = sorted(r.status for r in replies if r is not None)
    assert statuses == [302, 409, 409, 409]                      # exactly one setup wins
    winner = next(c for c, r in zip(clients, replies, strict=True) if r is not None and r.status == 302)
    won = next(r for r in replies if r is not None and r.status == 302)
    assert won.location == "/" and any(c.startswith("cryospy_session=") for c in won.cookies)
    assert "cryospy_session" in winner.cookies                 # logged in: the overview answers
    assert winner.request("GET", "/").status == 200
    assert system.dep.keys_path.exists() and not system.code_file.exists()
    assert not rt.services.vault.locked and not rt.services.vault.needs_setup
    KeyStore.load(system.dep.keys_path).unlock(NEW_PASSPHRASE)   # the store opens with the chosen passphrase
    # The system works: a camera enrolled now uploads a clip, and it gets indexed.
    camera = FakeCamera(system.dep, "first-run-cam", tmp_path)
    key = camera.upload()
    ck = clip_place(rt, key)
    wait_for(lambda: rt.services.index.get_clip(ck.device_id, ck.day, key), what="the clip indexed")


def test_setup_is_refused_once_done(system: System):
    keys_before = system.dep.keys_path.read_bytes()
    client = system.client()
    reply = client.request("GET", "/setup")
    assert (reply.status, reply.location) == (302, "/login")
    reply = client.request("POST", "/setup", {"csrf": "x", "code": "x", "passphrase": "another passphrase!",
                                              "repeat": "another passphrase!"})
    assert reply.status == 409 and "cryospy_session" not in client.cookies
    assert client.request("GET", "/login").status == 200
    assert (client.request("GET", "/").location) == "/login"
    assert system.dep.keys_path.read_bytes() == keys_before


def test_a_restart_asks_for_the_login_not_setup(system: System):
    rt = system.restart()
    assert rt.setup_code_path is None and not system.code_file.exists()
    assert rt.services.vault.locked and not rt.services.vault.needs_setup
    client = system.client()
    assert client.request("GET", "/").location == "/login"
    assert client.request("GET", "/setup").location == "/login"
    page = client.request("GET", "/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.body).group(1)
    reply = client.request("POST", "/login", {"csrf": csrf, "passphrase": NEW_PASSPHRASE})
    assert (reply.status, reply.location) == (302, "/") and not rt.services.vault.locked


def test_the_setup_code_reaches_only_a_terminal(tmp_path: Path):
    code_file = tmp_path / SETUP_CODE_FILE
    code_file.write_text("secret-code-123\n")
    log = io.StringIO()                                          # a log file or a journal, not a TTY
    announce_browser_setup("http://127.0.0.1:8480", code_file, log)
    assert str(code_file) in log.getvalue() and "/setup" in log.getvalue()
    assert "secret-code-123" not in log.getvalue()


def test_cli_setup_browser_then_serve_offers_setup(tmp_path: Path, minio_binary: Path):
    data = tmp_path / "cli"
    cli = [sys.executable, "-m", "cryospy"]
    env = {**os.environ, "CRYOSPY_MINIO_BIN": str(minio_binary)}
    env.pop("CRYOSPY_PASSPHRASE", None)
    refused = subprocess.run([*cli, "setup", "--browser", "--data-dir", str(data), "--passphrase-file",
                              str(tmp_path / "p")], capture_output=True, text=True, timeout=60, env=env)
    assert refused.returncode == 2 and "exclude each other" in refused.stderr
    made = cli_setup_browser(data, env)
    assert made.returncode == 0, made.stderr
    assert "/setup" in made.stdout and (data / "deployment.json").exists() and not (data / "keys.json").exists()
    errors = tmp_path / "serve.stderr"
    # Started as a non-interactive shell starts a background job (SIGINT ignored): Ctrl-C must still stop it.
    proc = subprocess.Popen([*cli, "serve", "--data-dir", str(data)], env=env, stdout=subprocess.PIPE,
                            stderr=errors.open("w"), stdin=subprocess.DEVNULL, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        lines = []
        while not any("one-time setup code is in" in line for line in lines):
            line = proc.stdout.readline()
            assert line, "serve exited early:\n" + "".join(lines) + errors.read_text()
            lines.append(line)
        code = (data / SETUP_CODE_FILE).read_text().strip()
        assert "FIRST-RUN SETUP" in "".join(lines) and code not in "".join(lines)   # stdout is a pipe here
        url = re.search(r"open (http://\S+)/setup", "".join(lines)).group(1)
        assert Client(url).request("GET", "/").location == "/setup"
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130 and code not in out


def test_setup_never_overwrites_a_key_store_made_meanwhile(tmp_path: Path):
    path = tmp_path / "keys.json"
    vault = KeyVault(path)
    assert vault.needs_setup
    KeyStore.create(path, "made by another process", scrypt_n=FAST_SCRYPT_N, insecure_for_tests=True)
    before = path.read_bytes()
    with pytest.raises(KeyStoreExists):
        vault.initialise(NEW_PASSPHRASE, scrypt_n=FAST_SCRYPT_N)
    assert path.read_bytes() == before and not vault.needs_setup and vault.locked
