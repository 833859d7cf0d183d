"""The app really is a Chalice app; the demo really records, indexes and shows clips; the CLI fails clearly."""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import subprocess
import sys
import urllib.request
import zipfile
from collections.abc import Callable
from http.cookiejar import CookieJar
from pathlib import Path

import pytest

from tests.support import wait_for

ROOT = Path(__file__).resolve().parents[2]
CRYOSPY = [sys.executable, "-m", "cryospy"]


def test_chalice_package_builds_a_deployment_package(tmp_path: Path):
    out = tmp_path / "pkg"
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1"}
    chalice = Path(sys.executable).with_name("chalice")
    # CloudFormation cannot attach notifications to an existing bucket, so Chalice packages S3 handlers
    # only in its Terraform format.
    subprocess.run([str(chalice), "package", "--pkg-format", "terraform", str(out)], cwd=ROOT / "functions",
                   env=env, check=True, capture_output=True, timeout=120)
    names = zipfile.ZipFile(out / "deployment.zip").namelist()
    assert "app.py" in names
    tf = json.loads((out / "chalice.tf.json").read_text())["resource"]
    assert set(tf["aws_lambda_function"]) == {"api_handler", "on_clip_created", "on_clip_removed"}
    [notify] = tf["aws_s3_bucket_notification"].values()
    assert notify["bucket"] == "cryospy"
    events = {tuple(f["events"]) for f in notify["lambda_function"]}
    assert events == {("s3:ObjectCreated:*",), ("s3:ObjectRemoved:*",)}
    assert all(f["filter_prefix"] == "clips/" and f["filter_suffix"] == ".cse" for f in notify["lambda_function"])


def test_missing_minio_and_go_gives_one_clear_message(tmp_path: Path):
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path), "CRYOSPY_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([*CRYOSPY, "minio", "build"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3
    assert "Traceback" not in proc.stderr
    for way_out in ("install Go", "CRYOSPY_MINIO_BIN", "docker compose"):
        assert way_out in proc.stderr


def test_wrong_binary_path_is_named(tmp_path: Path):
    env = {**os.environ, "CRYOSPY_MINIO_BIN": str(tmp_path / "nope")}
    proc = subprocess.run([*CRYOSPY, "minio", "build"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3 and str(tmp_path / "nope") in proc.stderr and "Traceback" not in proc.stderr


def test_serve_without_setup_says_what_to_do(tmp_path: Path):
    proc = subprocess.run([*CRYOSPY, "serve", "--data-dir", str(tmp_path / "none")], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode != 0 and "cryospy setup" in proc.stderr and "Traceback" not in proc.stderr


def _login(base: str, passphrase: str, context: ssl.SSLContext) -> urllib.request.OpenerDirector:
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar),
                                         urllib.request.HTTPSHandler(context=context))
    page = opener.open(f"{base}/login", timeout=10).read().decode()
    csrf = page.split('name="csrf" value="')[1].split('"')[0]
    data = f"csrf={csrf}&passphrase={urllib.parse.quote(passphrase)}".encode()
    opener.open(f"{base}/login", data=data, timeout=30)
    return opener


def _run_demo_until(data: Path, minio_binary: Path, want: Callable[[str], bool]) -> str:
    """Start `cryospy demo`, log in, wait until the overview satisfies ``want``, Ctrl-C it; return the page."""
    env = {**os.environ, "CRYOSPY_MINIO_BIN": str(minio_binary)}
    proc = subprocess.Popen([*CRYOSPY, "demo", "--data-dir", str(data), "--clip-seconds", "3"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        while not any("Passphrase:" in line for line in lines):
            line = proc.stdout.readline()
            assert line, "demo exited early:\n" + "".join(lines)
            lines.append(line)
        url = next(line.split()[-1] for line in lines if "Dashboard:" in line).rstrip("/")
        assert url.startswith("https://")           # the demo, like `cryospy setup`, has TLS on
        context = ssl.create_default_context(cafile=data / "tls" / "ca.crt")
        passphrase = (data / "demo-passphrase.txt").read_text().strip()
        assert passphrase in "".join(lines)
        anonymous = urllib.request.urlopen(f"{url}/", timeout=10, context=context)
        assert anonymous.url.endswith("/login")     # no session, no page
        opener = _login(url, passphrase, context)

        def page_ready() -> str | None:
            html = opener.open(f"{url}/", timeout=10).read().decode()
            return html if want(html) else None

        html = wait_for(page_ready, timeout=90, what="demo clips on the overview page")
        # The device-day pages list every clip of the day (the overview only the newest few).
        for href in sorted(set(re.findall(r'href="(/devices/[0-9a-f]+/[0-9-]+)"', html))):
            html += opener.open(f"{url}{href}", timeout=10).read().decode()
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
        lines.append(out)
    assert proc.returncode == 0, "".join(lines)
    assert "Stopped." in "".join(lines)
    return html


def _clip_keys(html: str) -> list[str]:
    # The demo camera's clips sit under its storage token (a pseudonym), never under "demo-cam".
    return re.findall(r'class="clip" data-key="(clips/_[a-z2-7]{26}/[^"]+)"', html)


@pytest.mark.integration
def test_demo_records_indexes_and_lists_clips_then_stops_and_resumes(tmp_path: Path, minio_binary: Path):
    data = tmp_path / "demo"
    first = _clip_keys(_run_demo_until(data, minio_binary, lambda html: bool(_clip_keys(html))))
    # Nothing left listening: MinIO and the runtime are gone.
    dep = json.loads((data / "deployment.json").read_text())
    for port in (dep["runtime_port"], dep["minio_port"]):
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
    # A second run reuses the deployment: the old clips are still there and new ones join them.
    second = _clip_keys(_run_demo_until(data, minio_binary,
                                        lambda html: bool(set(_clip_keys(html)) - set(first))))
    assert set(first) <= set(second)


def test_docker_compose_file_is_valid(tmp_path: Path):
    from tests.docker_engine import COMPOSE_VERSION, cache_dir

    compose = cache_dir() / f"docker-compose-{COMPOSE_VERSION}"
    if not compose.exists():
        pytest.skip(f"Docker Compose is not built at {compose} (./dev test builds it as root)")
    env_file = tmp_path / ".env"
    env_file.write_text((ROOT / "infra" / "compose.env.example").read_text()
                        + f"CRYOSPY_SECRETS_DIR={tmp_path / 'secrets'}\n")
    subprocess.run([str(ROOT / "infra" / "docker" / "make-secrets.sh"), str(tmp_path / "secrets")], check=True,
                   capture_output=True)
    for extra in ([], ["-f", str(ROOT / "infra" / "docker" / "usb-camera.yml")]):
        proc = subprocess.run([str(compose), "--env-file", str(env_file), "-f", str(ROOT / "docker-compose.yml"),
                               *extra, "--profile", "agent", "config", "--quiet"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr


def test_compose_file_declares_the_home_deployment():
    import yaml  # type: ignore[import-untyped]

    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = doc["services"]
    assert {"minio", "runtime", "agent"} <= set(services)
    assert services["minio"]["build"]["dockerfile"].endswith("minio.Dockerfile")
    assert "profiles" in services["agent"]          # the agent is optional
    assert set(doc["volumes"]) >= {"minio-data", "cryospy-data"}
    text = (ROOT / "docker-compose.yml").read_text()
    assert "PASSWORD=" not in text and "SECRET=" not in text
    # Secrets are Compose secrets (files), never environment variables that `docker inspect` would show.
    for service in services.values():
        assert not any(word in name for name in service.get("environment", {})
                       for word in ("PASSWORD", "PASSPHRASE", "TOKEN", "SECRET", "ROOT_USER"))
    assert set(doc["secrets"]) >= {"minio_root_user", "minio_root_password", "webhook_token", "admin_passphrase"}
