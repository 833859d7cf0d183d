"""First-run setup in Chromium: a deployment without a key store, the /setup form at phone and desktop width.

Screenshots land in ``test-artifacts/`` (not committed): the form, its field messages, and the overview the
admin lands on, logged in.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cryospy.cli.setup_cmd import setup
from cryospy.infra.deployment import Deployment
from cryospy.infra.minio_server import MinioServer, free_port
from cryospy.infra.runtime import Runtime, RuntimeOptions
from cryospy.web.first_run import SETUP_CODE_FILE
from tests.conftest import FAST_SCRYPT_N, PASSPHRASE

from .conftest import ARTIFACTS, login

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory, minio_binary: Path) -> Iterator[tuple[Deployment, Runtime]]:
    host = "127.0.0.1"
    dep = setup(tmp_path_factory.mktemp("browser-first-run") / "data", None, tls=False, runtime_port=free_port(host),
                minio_port=free_port(host), minio_console_port=free_port(host))
    with MinioServer(dep, binary=minio_binary):
        rt = Runtime(dep, RuntimeOptions(reconcile_seconds=3600, setup_scrypt_n=FAST_SCRYPT_N)).start()
        try:
            yield dep, rt
        finally:
            rt.stop()


def _fill(page, code: str, passphrase: str, repeat: str) -> None:  # type: ignore[no-untyped-def]
    page.fill("input[name=code]", code)
    page.fill("input[name=passphrase]", passphrase)
    page.fill("input[name=repeat]", repeat)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def test_first_run_setup_in_the_browser(browser, fresh):  # type: ignore[no-untyped-def]
    dep, rt = fresh
    base = dep.runtime_url
    code = dep.path(SETUP_CODE_FILE).read_text().strip()
    ARTIFACTS.mkdir(exist_ok=True)

    phone = browser.new_context(viewport={"width": 390, "height": 844})
    page = phone.new_page()
    page.goto(base + "/admin")
    assert page.url == base + "/setup"                           # every page leads to setup
    assert page.query_selector("nav.sections") is None           # no navigation before there is an admin
    page.screenshot(path=str(ARTIFACTS / "setup-phone.png"), full_page=True)
    _fill(page, code, "too short", "too short")
    message = page.text_content("#passphrase-error") or ""
    assert "at least 10 characters" in message
    assert page.get_attribute("input[name=passphrase]", "aria-invalid") == "true"
    assert page.input_value("input[name=code]") == code            # the right code stays filled in
    page.screenshot(path=str(ARTIFACTS / "setup-weak-passphrase-phone.png"), full_page=True)
    phone.close()

    desktop = browser.new_context(viewport={"width": 1280, "height": 800})
    page = desktop.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(base + "/")
    assert page.url == base + "/setup"
    page.screenshot(path=str(ARTIFACTS / "setup-desktop.png"), full_page=True)
    _fill(page, "a guessed code", PASSPHRASE, PASSPHRASE)
    assert "Wrong setup code" in (page.text_content("#code-error") or "")
    page.screenshot(path=str(ARTIFACTS / "setup-wrong-code-desktop.png"), full_page=True)
    _fill(page, code, PASSPHRASE, PASSPHRASE)
    page.wait_for_url(base + "/")                                # set up and logged in: the overview
    assert page.query_selector("nav.sections") is not None
    page.screenshot(path=str(ARTIFACTS / "first-run-overview-desktop.png"), full_page=True)
    assert not rt.services.vault.locked and dep.keys_path.exists() and not dep.path(SETUP_CODE_FILE).exists()
    assert requests and all(url.startswith(base + "/") for url in requests), requests
    desktop.close()

    # From now on /setup leads to the login, and the chosen passphrase logs in.
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(base + "/setup")
    assert page.url == base + "/login"
    context.close()
    context, page = login(browser, base)
    assert page.url == base + "/"
    context.close()
