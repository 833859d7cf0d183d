"""Shared pieces of the browser tests: Debian's Chromium through Playwright, a logged-in page, artifacts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import PASSPHRASE

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--autoplay-policy=no-user-gesture-required")


def chromium_executable() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: ./dev test installs Debian's chromium package (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_executable(), args=list(CHROMIUM_ARGS))
        yield b
        b.close()


def login(browser, base_url: str, width: int = 1280, height: int = 800, **options):  # type: ignore[no-untyped-def]
    """A new browser context (``options`` go to ``new_context``, e.g. ``timezone_id``) logged in as the admin;
    returns (context, page) with the page on the overview."""
    context = browser.new_context(viewport={"width": width, "height": height}, **options)
    page = context.new_page()
    page.goto(base_url + "/login")
    page.fill("input[name=passphrase]", PASSPHRASE)
    page.click("button[type=submit]")
    page.wait_for_url(base_url + "/")
    return context, page
