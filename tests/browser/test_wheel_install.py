"""The installable package: a wheel built from a clean copy of the repository, installed into a fresh virtualenv,
runs `cryospy setup` and `cryospy serve` from outside the checkout, and its dashboard plays a clip in Debian's
Chromium with the player (hls.js) that came inside the wheel.

Dependencies come from a wheelhouse kept in the cache (``$CRYOSPY_CACHE_DIR`` or ``~/.cache/cryospy``), filled
from the package registry the first time (or when the dependencies change) and used offline after that.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tomllib
import urllib.request
import zipfile
from pathlib import Path

import pytest

from cryospy.infra.certificates import client_context
from cryospy.infra.deployment import load
from cryospy.infra.minio_binary import cache_dir
from cryospy.infra.minio_server import free_port
from tests.conftest import PASSPHRASE
from tests.service_support import ServeProcess
from tests.support import FakeCamera, sample_clip, wait_for

from .conftest import login

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PLAYER = ROOT / "web" / "vendor" / "hls.light.min.js"
PIP_QUIET = ["--quiet", "--disable-pip-version-check", "--progress-bar", "off"]


def _clean_copy(dest: Path) -> Path:
    """The repository's files, as a fresh clone has them (no build/, no egg-info, no web/vendor, no .venv)."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout
    for name in files.decode().split("\0"):
        if name and (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def _build_wheel(src: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", "wheel", *PIP_QUIET, "--no-deps", str(src), "-w", str(out)],
                          capture_output=True, text=True, timeout=600)


def _install(venv: Path, wheel: Path) -> None:
    """Into ``venv``: the wheel, its dependencies from the cached wheelhouse (refilled from the registry if
    it lacks something)."""
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    house = cache_dir().parent.parent / "wheelhouse"
    house.mkdir(parents=True, exist_ok=True)
    offline = [*pip, "install", *PIP_QUIET, "--no-index", "--find-links", str(house), str(wheel)]
    if subprocess.run(offline, capture_output=True, text=True, timeout=900).returncode != 0:
        subprocess.run([*pip, "download", *PIP_QUIET, "--only-binary=:all:", "--dest", str(house), str(wheel)],
                       check=True, capture_output=True, text=True, timeout=1800)
        for own in house.glob("cryospy-*"):
            own.unlink()
        proc = subprocess.run(offline, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr


def test_wheel_installs_into_a_fresh_venv_and_its_dashboard_plays_a_clip(browser, minio_binary: Path,
                                                                          tmp_path: Path):
    assert PLAYER.is_file(), "./dev copies hls.js into web/vendor; run ./dev test"
    src = _clean_copy(tmp_path / "src")
    dist = tmp_path / "dist"
    # Without the player the build stops, saying how to fetch it: no wheel whose dashboard cannot play.
    refused = _build_wheel(src, dist)
    assert refused.returncode != 0 and "hls.light.min.js is missing" in refused.stdout + refused.stderr
    assert not list(dist.glob("*.whl"))
    shutil.copytree(PLAYER.parent, src / "web" / "vendor")
    built = _build_wheel(src, dist)
    assert built.returncode == 0, built.stderr
    [wheel] = dist.glob("cryospy-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    setuptools = tomllib.loads((src / "pyproject.toml").read_text())["tool"]["setuptools"]
    for package in setuptools["packages"]:    # every module of every package, under its installed name
        root = max((r for r in setuptools["package-dir"] if package == r or package.startswith(r + ".")), key=len)
        folder = src / setuptools["package-dir"][root] / package[len(root) + 1:].replace(".", "/")
        modules = list(folder.glob("*.py"))
        assert modules, folder
        for module in modules:
            assert f"{package.replace('.', '/')}/{module.name}" in names, module
    for expected in ("cryospy/web/vendor/hls.light.min.js", "cryospy/web/vendor/hls.light.min.js.gz",
                     "cryospy/web/templates/day.html", "cryospy/web/static/player.js",
                     "cryospy/functions/.chalice/config.json", "cryospy/functions/openapi.json",
                     "cryospy/functions/channels/__init__.py", "cryospy/edge_agent/agent.py",
                     "cryospy/infra/runtime.py", "cryospy/cli/main.py", "cryospy/common/sealed.py"):
        assert expected in names, expected

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    _install(venv, wheel)
    cryospy = venv / "bin" / "cryospy"
    home = tmp_path / "elsewhere"            # run outside the checkout: nothing may come from it
    home.mkdir()
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import cryospy.web; print(cryospy.web.__file__)"],
                           cwd=home, capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(venv)), where
    installed_player = Path(where).parent / "vendor" / "hls.light.min.js"
    assert installed_player.read_bytes() == PLAYER.read_bytes()

    # No MinIO anywhere: one clear message that says where it comes from.
    missing = subprocess.run([str(cryospy), "minio", "build"], cwd=home, capture_output=True, text=True,
                             env={"PATH": str(venv / "bin"), "HOME": str(home)}, timeout=60)
    assert missing.returncode == 3 and "Traceback" not in missing.stderr
    assert "does not include MinIO" in missing.stderr and "cryospy minio build" in missing.stderr

    data = tmp_path / "deployment"
    passphrase_file = tmp_path / "passphrase"
    passphrase_file.write_text(PASSPHRASE + "\n")
    minio_port = next(p for p in iter(lambda: free_port("127.0.0.1"), None) if _free(p + 1))
    # Loopback and plain HTTP: this is about the installed package; TLS, the default, has test_tls.py and the
    # Compose test (Chromium here has no way to trust the deployment's own CA).
    subprocess.run([str(cryospy), "setup", "--data-dir", str(data), "--passphrase-file", str(passphrase_file),
                    "--host", "127.0.0.1", "--no-tls",
                    "--runtime-port", str(free_port("127.0.0.1")), "--minio-port", str(minio_port)],
                   cwd=home, check=True, capture_output=True, timeout=120)
    dep = load(data)
    serve = ServeProcess([str(cryospy)], dep, passphrase_file, minio_binary, tmp_path / "serve.log", cwd=home,
                         log_level="info")
    try:
        serve.wait_ready()
        camera = FakeCamera(dep, "wheel-cam", tmp_path)
        key = camera.upload(sample_clip(seconds=4.0, width=320, height=180))
        base = dep.runtime_url
        context, page = login(browser, base)
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))

        def day_link() -> str | None:
            page.goto(base + "/")
            link = page.query_selector("section.device[data-device='wheel-cam'] a[href^='/devices/']")
            return link.get_attribute("href") if link else None

        page.goto(base + wait_for(day_link, timeout=90, what="the clip on the overview"))
        page.click(f"a.play[data-key='{key}']")
        wait_for(lambda: page.evaluate("() => document.getElementById('video').currentTime") > 0.8,
                 timeout=60, what="the clip to play")
        assert base + "/static/hls.light.min.js" in requests               # the player the page loaded
        with urllib.request.urlopen(base + "/static/hls.light.min.js", timeout=10,
                                    context=client_context(dep)) as reply:      # setup's own CA (TLS is on)
            assert reply.read() == PLAYER.read_bytes()                      # is the one inside the wheel
        assert all(url.startswith(base) for url in requests), [u for u in requests if not u.startswith(base)]
        context.close()
    finally:
        assert serve.terminate() == 0, (tmp_path / "serve.log").read_text()


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
