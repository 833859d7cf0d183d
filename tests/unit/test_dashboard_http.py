"""The dashboard's HTTP layer without a browser: gzip of pages, masked CSRF tokens, and what a logged-out client
gets, on both session stores (this process's memory, and PostgreSQL as with ``database_url``). (The browser tests
drive the same code in Chromium.)"""

from __future__ import annotations

import gzip
import io
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest

from cryospy.common.database import open_pool
from cryospy.common.keys import KeyStore
from cryospy.functions.keyvault import KeyVault
from cryospy.web.pg_login_state import PostgresLoginLimiter, PostgresSessions
from cryospy.web.server import Dashboard, csrf_matches, mask_csrf
from cryospy.web.site_store import SiteStore

PASS = "right passphrase"


def call(app: Dashboard, path: str, method: str = "GET", body: str = "", **headers: str) -> tuple[str, dict, bytes]:
    environ: dict[str, Any] = {
        "PATH_INFO": path, "REQUEST_METHOD": method, "QUERY_STRING": "", "REMOTE_ADDR": "127.0.0.1",
        "wsgi.input": io.BytesIO(body.encode()), "CONTENT_LENGTH": str(len(body)), "wsgi.url_scheme": "http",
        **{"HTTP_" + k.upper(): v for k, v in headers.items()}}
    seen: dict[str, Any] = {}

    def start(status: str, hdrs: list[tuple[str, str]], exc_info: Any = None) -> None:
        seen["status"], seen["headers"] = status, hdrs

    data = b"".join(app(environ, start))
    hdrs: dict[str, list[str]] = {}
    for k, v in seen["headers"]:
        hdrs.setdefault(k.lower(), []).append(v)
    return seen["status"], hdrs, data


@pytest.fixture(params=["embedded", "postgres"])
def dash(tmp_path: Path, request: pytest.FixtureRequest) -> Dashboard:
    key = os.urandom(32)
    site = SiteStore(tmp_path / "site", lambda: key)
    site.put("index", "<!doctype html><p>cameras</p>" + "<li>clip row</li>" * 500 +
             "<form><input name=csrf value=__CSRF_TOKEN__></form>")
    KeyStore.create(tmp_path / "keys.json", PASS, scrypt_n=2**10, insecure_for_tests=True)
    if request.param == "embedded":
        return Dashboard(site, KeyVault(tmp_path / "keys.json"))
    pool = open_pool(request.getfixturevalue("postgres").fresh_url(), max_size=2)
    request.addfinalizer(pool.close)
    return Dashboard(site, KeyVault(tmp_path / "keys.json"), sessions=PostgresSessions(pool, lambda: key),
                     limiter=PostgresLoginLimiter(pool, lambda: key))


def csrf_secret(dash: Dashboard, cookie: str) -> str:
    """The session's CSRF secret, as its store gives it."""
    record = dash.sessions.get(cookie.split("=", 1)[1], time.time())
    assert record is not None
    return record.csrf


def logged_in(dash: Dashboard, name: str = "", passphrase: str = PASS) -> str:
    status, headers, _ = call(dash, "/login")
    pre = headers["set-cookie"][0].split(";")[0]
    token = pre.split("=", 1)[1]
    status, headers, _ = call(dash, "/login", "POST", f"csrf={token}&name={name}&passphrase={quote_plus(passphrase)}",
                              cookie=pre, content_type="application/x-www-form-urlencoded")
    assert status.startswith("302"), status
    return next(c for c in headers["set-cookie"] if c.startswith("cryospy_session=")).split(";")[0]


def test_pages_are_gzip_encoded_for_clients_that_take_it(dash: Dashboard) -> None:
    cookie = logged_in(dash)
    status, headers, body = call(dash, "/", cookie=cookie, accept_encoding="gzip, br")
    assert status == "200 OK" and headers["content-encoding"] == ["gzip"]
    assert int(headers["content-length"][0]) == len(body) < 2000
    assert b"clip row" in gzip.decompress(body)
    _, headers, plain = call(dash, "/", cookie=cookie)
    assert "content-encoding" not in headers and plain.count(b"clip row") == 500


def test_each_response_masks_the_csrf_token_differently_and_both_forms_verify(dash: Dashboard) -> None:
    cookie = logged_in(dash)
    tokens = []
    for _ in range(2):
        _, _, body = call(dash, "/", cookie=cookie)
        tokens.append(body.split(b"name=csrf value=")[1].split(b">")[0].decode())
    assert tokens[0] != tokens[1]
    secret = csrf_secret(dash, cookie)
    assert secret not in tokens[0]
    assert all(csrf_matches(t, secret) for t in tokens)
    assert csrf_matches(secret, secret)
    assert not csrf_matches(mask_csrf("another session's token!"), secret)
    assert not csrf_matches("", secret) and not csrf_matches("%%%", secret) and not csrf_matches("ab", secret)
    # Logging out works with a masked token and refuses a forged one.
    status, _, _ = call(dash, "/logout", "POST", "csrf=forged", cookie=cookie,
                        content_type="application/x-www-form-urlencoded")
    assert status.startswith("403")
    status, _, _ = call(dash, "/logout", "POST", f"csrf={tokens[1]}", cookie=cookie,
                        content_type="application/x-www-form-urlencoded")
    assert status.startswith("302")
    assert call(dash, "/", cookie=cookie)[0].startswith("302")


def test_logged_out_requests_get_the_login_and_no_content(dash: Dashboard) -> None:
    for path in ("/", "/index.html", "/live", "/devices/00/2026-01-01", "/media/clip.mp4?key=x", "/admin",
                 "/export", "/actions/protect"):
        for method in ("GET", "POST"):
            status, headers, body = call(dash, path, method)
            assert status.startswith("302") and headers["location"] == ["/login"] and body == b"", (path, method)


VIEWER_PASS = "only the front door"


def _site_with_two_cameras(dash: Dashboard) -> None:
    from cryospy.web.access import camera_hex
    from cryospy.web.builder import day_page

    parts = "".join(f"<!--cam:{camera_hex(c)}--><section data-device='{c}'>{c} thumbnails</section>"
                    f"<!--/cam:{camera_hex(c)}-->" for c in ("front", "living-room"))
    dash.site.put("index", f"<!doctype html><nav>Cameras<!--admin--> <a href=/admin>Admin</a><!--/admin--></nav>"
                           f"{parts}<input name=csrf value=__CSRF_TOKEN__>")
    for camera in ("front", "living-room"):
        dash.site.put(day_page(camera, "2026-01-02"), f"<p>{camera} day</p>")


def _add_viewer(dash: Dashboard, expires: datetime | None = None) -> None:
    from cryospy.common.accounts import Account

    vault = dash.accounts
    assert isinstance(vault, KeyVault)
    vault.unlock(PASS)
    vault.add_account(Account("teen", "viewer", frozenset({"front"}), expires, datetime.now(UTC)), VIEWER_PASS)


def test_a_viewer_gets_its_cameras_only_and_no_admin_part(dash: Dashboard) -> None:
    from cryospy.web.builder import day_page

    _site_with_two_cameras(dash)
    _add_viewer(dash)
    viewer = logged_in(dash, "teen", VIEWER_PASS)
    _, _, page = call(dash, "/", cookie=viewer)
    assert b"front thumbnails" in page and b"living-room" not in page and b"/admin" not in page
    admin_page = call(dash, "/", cookie=logged_in(dash))[2]
    assert b"living-room thumbnails" in admin_page and b"/admin" in admin_page
    assert call(dash, "/" + day_page("front", "2026-01-02"), cookie=viewer)[0] == "200 OK"
    hidden = call(dash, "/" + day_page("living-room", "2026-01-02"), cookie=viewer)
    missing = call(dash, "/" + day_page("garage", "2026-01-02"), cookie=viewer)
    assert hidden[0] == missing[0] == "404 Not Found" and hidden[2] == missing[2]


def test_a_viewer_reaches_no_admin_url_even_with_a_stolen_csrf_token(dash: Dashboard) -> None:
    _add_viewer(dash)
    admin = logged_in(dash)
    stolen = csrf_secret(dash, admin)
    viewer = logged_in(dash, "teen", VIEWER_PASS)
    for path in ("/admin", "/admin/accounts", "/admin/passphrase", "/admin/devices/00"):
        assert call(dash, path, cookie=viewer)[0] == "404 Not Found", path
    for path in ("/admin/accounts", "/admin/accounts/teen/remove", "/admin/devices", "/actions/protect"):
        status, _, body = call(dash, path, "POST", f"csrf={stolen}&name=evil&confirm=teen", cookie=viewer,
                               content_type="application/x-www-form-urlencoded")
        assert status == "404 Not Found" and b"No such page" in body, path
    assert [a.name for a in dash.accounts.accounts()] == ["admin", "teen"]   # type: ignore[attr-defined]
    assert call(dash, "/", cookie=admin)[0] == "200 OK"


def test_a_removed_viewer_is_out_at_its_next_request(dash: Dashboard) -> None:
    _add_viewer(dash)
    viewer = logged_in(dash, "teen", VIEWER_PASS)
    assert call(dash, "/", cookie=viewer)[0] == "200 OK"
    dash.accounts.remove_account("teen")   # type: ignore[attr-defined]
    status, headers, _ = call(dash, "/", cookie=viewer)
    assert status.startswith("302") and headers["location"] == ["/login"]
    assert dash.sessions.get(viewer.split("=", 1)[1], time.time()) is None


def test_an_expired_viewer_is_refused_and_its_session_ends_at_expiry(dash: Dashboard) -> None:
    week = datetime.now(UTC) + timedelta(days=7)
    _add_viewer(dash, expires=week)
    viewer = logged_in(dash, "teen", VIEWER_PASS)
    assert call(dash, "/", cookie=viewer)[0] == "200 OK"
    later = week + timedelta(seconds=1)
    dash.clock = later.timestamp
    dash.accounts.clock = lambda: later   # type: ignore[attr-defined]
    status, headers, _ = call(dash, "/", cookie=viewer)
    assert status.startswith("302") and headers["location"] == ["/login"]
    _, headers, _ = call(dash, "/login")
    pre = headers["set-cookie"][0].split(";")[0]
    status, _, body = call(dash, "/login", "POST", f"csrf={pre.split('=', 1)[1]}&name=teen&passphrase="
                           f"{quote_plus(VIEWER_PASS)}", cookie=pre, content_type="application/x-www-form-urlencoded")
    assert status == "403 Forbidden" and b"expired" in body
    assert logged_in(dash)   # the admin is not affected


def test_a_locked_runtime_sends_a_shared_session_to_the_login_without_ending_it(dash: Dashboard,
                                                                                tmp_path: Path) -> None:
    """A runtime started without the passphrase sees no accounts: with PostgreSQL the session may be alive on
    the other runtimes, so it is refused here but not ended; in memory a locked vault ends it, as always."""
    cookie = logged_in(dash)
    locked = Dashboard(dash.site, KeyVault(tmp_path / "keys.json"), sessions=dash.sessions, locked=lambda: True)
    status, headers, _ = call(locked, "/", cookie=cookie)
    assert status.startswith("302") and headers["location"] == ["/login"]
    alive = dash.sessions.get(cookie.split("=", 1)[1], time.time()) is not None
    assert alive == dash.sessions.shared
