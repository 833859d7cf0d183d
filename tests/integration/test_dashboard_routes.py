"""Every dashboard route refuses a request without a session: pages, JSON, media, forms, and each mounted
section. The list is checked against the routes themselves (the media module's table and the mounted prefixes),
so a route added later without a place here fails this test."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest

from cryospy.common.objectkeys import device_hex
from cryospy.web import media_routes
from cryospy.web.builder import day_page, live_page
from tests.conftest import PASSPHRASE
from tests.support import FakeCamera, clip_place, sample_clip, wait_for

pytestmark = pytest.mark.integration


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


def _fetch(url: str, method: str) -> tuple[int, str, bytes]:
    data = b"csrf=x&key=y" if method == "POST" else None
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.build_opener(_NoRedirect).open(request, timeout=10) as response:
            return response.status, response.headers.get("Location", ""), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Location", ""), exc.read()


def test_every_route_refuses_a_logged_out_request(runtime, deployment, tmp_path: Path):
    camera = FakeCamera(deployment, "route-cam", tmp_path)
    key = camera.upload(sample_clip(seconds=2.0))
    ck = clip_place(runtime, key)
    wait_for(lambda: runtime.site.get(day_page(ck.device_id, ck.day)), what="the day page rendered")
    k, dev = quote(key, safe=""), quote(ck.device_id, safe="")
    hex_id = device_hex(ck.device_id)
    media = {
        "/media/clip.mp4": f"/media/clip.mp4?key={k}&download=1",
        "/media/clip.m3u8": f"/media/clip.m3u8?key={k}",
        "/media/day.m3u8": f"/media/day.m3u8?device={dev}&day={ck.day}",
        "/media/thumb.jpg": f"/media/thumb.jpg?key={k}",
        "/media/latest.json": f"/media/latest.json?device={dev}",
        "/media/live.m3u8": f"/media/live.m3u8?device={dev}",
        "/media/live-status.json": f"/media/live-status.json?device={dev}",
        "/media/live-parts.m3u8": f"/media/live-parts.m3u8?device={dev}",
        "/media/live-part.mp4": f"/media/live-part.mp4?device={dev}&key=live%2F{dev}%2Fx.cse&p=frag",
    }
    documented = set(re.findall(r"^\s+(/media/[\w./-]+)", media_routes.__doc__ or "", re.M))
    assert documented == set(media), "a media route is missing from this walk (or the module's table)"
    sections = ["/admin", f"/admin/devices/{hex_id}", "/admin/passphrase", "/admin/status",
                "/export", "/export/0123456789abcdef", "/export/0123456789abcdef/progress.json",
                "/export/0123456789abcdef/download", "/account/second-factor", "/account/passphrase"]
    for prefix in runtime.dashboard.mounts:
        assert any(path == prefix or path.startswith(prefix + "/") for path in sections), prefix
    pages = ["/", "/index.html", "/live", "/" + live_page(ck.device_id), "/" + day_page(ck.device_id, ck.day),
             "/actions/protect", "/logout", "/no/such/page"]
    for path in pages + list(media.values()) + sections:
        for method in ("GET", "POST", "HEAD"):
            status, location, body = _fetch(deployment.runtime_url + path, method)
            assert (status, location, body) == (302, "/login", b""), (method, path, status, body[:200])


# How a viewer is kept to its cameras on each route. A route added to the media table or a section mounted
# without an entry here fails the test below: every route needs an access rule.
VIEWER_RULES = {
    "/media/clip.mp4": "clip", "/media/clip.m3u8": "clip", "/media/thumb.jpg": "clip",
    "/media/day.m3u8": "camera", "/media/latest.json": "camera", "/media/live.m3u8": "camera",
    "/media/live-status.json": "camera", "/media/live-parts.m3u8": "camera", "/media/live-part.mp4": "camera",
    "/admin": "admin only", "/actions/": "admin only", "/export": "own cameras, own jobs",
    "/account/second-factor": "the session's own account only (requiring it for everyone: admins only)",
    "/account/passphrase": "the session's own account's key slot only",
    "pages": "camera pages served to the camera's accounts, shared pages filtered",
}
VIEWER_PASS = "sees only the front camera"


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)   # type: ignore[union-attr]


def test_a_viewer_given_one_camera_gets_nothing_of_another(runtime, deployment, tmp_path: Path):
    from cryospy.common.accounts import Account
    from cryospy.common.keys import KeyStore, WrongPassphrase
    from tests.support import dashboard_login

    documented = set(re.findall(r"^\s+(/media/[\w./-]+)", media_routes.__doc__ or "", re.M))
    assert documented <= set(VIEWER_RULES), documented - set(VIEWER_RULES)
    assert set(runtime.dashboard.mounts) <= set(VIEWER_RULES), set(runtime.dashboard.mounts) - set(VIEWER_RULES)

    front = FakeCamera(deployment, "acl-front", tmp_path / "f")
    back = FakeCamera(deployment, "acl-back", tmp_path / "b")
    front_key, back_key = front.upload(sample_clip(seconds=2.0)), back.upload(sample_clip(seconds=2.0))
    fp, bp = clip_place(runtime, front_key), clip_place(runtime, back_key)
    for place in (fp, bp):
        wait_for(lambda p=place: runtime.site.get(day_page(p.device_id, p.day)), what="the day pages rendered")
    vault = runtime.services.vault
    vault.add_account(Account("acl-viewer", "viewer", frozenset({fp.device_id})), VIEWER_PASS)
    try:
        base = deployment.runtime_url
        viewer = dashboard_login(base, "acl-viewer", VIEWER_PASS)
        admin = dashboard_login(base)
        wait_for(lambda: bp.device_id in admin.get(base + "/", timeout=10).text, what="the overview")

        def get(http, path):  # type: ignore[no-untyped-def]
            answer = http.get(base + path, timeout=30, allow_redirects=False)
            return answer.status_code, answer.content

        # Shared pages: the front camera is there, the back camera's name appears nowhere.
        for path in ("/", "/live", "/export"):
            status, body = get(viewer, path)
            assert status == 200 and fp.device_id.encode() in body and bp.device_id.encode() not in body, path
            assert b'href="/admin"' not in body, path
        # Camera pages and every media route: the back camera answers as one that does not exist.
        ghost, ghost_key = "acl-ghost", back_key.replace(back.storage_token, "0" * len(back.storage_token))
        k = {cam: quote(key, safe="") for cam, key in ((bp.device_id, back_key), (ghost, ghost_key),
                                                         (fp.device_id, front_key))}

        def routes(cam: str) -> list[str]:
            d = quote(cam, safe="")
            return ["/" + live_page(cam), "/" + day_page(cam, bp.day),
                    f"/media/clip.mp4?key={k[cam]}", f"/media/clip.m3u8?key={k[cam]}",
                    f"/media/thumb.jpg?key={k[cam]}", f"/media/clip.mp4?key={k[cam]}&download=1",
                    f"/media/day.m3u8?device={d}&day={bp.day}", f"/media/latest.json?device={d}",
                    f"/media/live.m3u8?device={d}", f"/media/live-status.json?device={d}",
                    f"/media/live-parts.m3u8?device={d}", f"/media/live-part.mp4?device={d}&key=x&p=frag",
                    f"/export?device={d}"]

        for hidden, missing in zip(routes(bp.device_id), routes(ghost), strict=True):
            answer, nothing = get(viewer, hidden), get(viewer, missing)
            if hidden.startswith("/export"):   # the form, without the camera in its list
                assert answer[0] == 200 and bp.device_id.encode() not in answer[1].split(b"<select")[1]
                continue
            assert answer == nothing and answer[0] == 404, (hidden, answer)
            assert bp.device_id.encode() not in answer[1]
        for path in routes(fp.device_id)[:6]:   # its own camera plays
            assert get(viewer, path)[0] in (200, 206), path
        assert get(admin, routes(bp.device_id)[2])[0] in (200, 206)
        # Exporting the other camera is refused like a camera that does not exist; nothing starts.
        form = viewer.get(base + "/export", timeout=10).text
        refused = [viewer.post(base + "/export", data={"csrf": _csrf(form), "device": cam,
                                                       "start": f"{bp.day}T00:00:00Z", "end": f"{bp.day}T23:00:00Z"},
                               allow_redirects=False, timeout=10) for cam in (bp.device_id, ghost)]
        assert [r.status_code for r in refused] == [400, 400]
        assert all("Choose a camera from the list." in r.text and bp.device_id not in r.text.split("<select")[1]
                   for r in refused)
        # Admin URLs and forms: not found, even with the admin's CSRF token; nothing changes.
        stolen = _csrf(admin.get(base + "/admin/accounts", timeout=10).text)
        before = deployment.keys_path.read_bytes()
        for path in ("/admin", "/admin/accounts", "/admin/status", "/admin/passphrase"):
            assert get(viewer, path)[0] == 404, path
        for path, data in (("/admin/accounts", {"name": "evil", "role": "admin", "passphrase": "x" * 20,
                                                "repeat": "x" * 20}),
                           ("/admin/accounts/acl-viewer/remove", {"confirm": "acl-viewer"}),
                           ("/actions/protect", {"key": back_key, "protected": "1"})):
            answer = viewer.post(base + path, data={"csrf": stolen, **data}, allow_redirects=False, timeout=10)
            assert answer.status_code == 404, path
        assert deployment.keys_path.read_bytes() == before

        # The viewer changes its own passphrase: its slot only; the admin's still opens, its old one no longer.
        status, body = get(viewer, "/account/passphrase")
        assert status == 200 and b"acl-viewer" in body and b'href="/admin"' not in body
        new_pass = "the viewer's own new phrase"
        answer = viewer.post(base + "/account/passphrase", data={
            "csrf": _csrf(body.decode()), "current": VIEWER_PASS, "passphrase": new_pass, "repeat": new_pass},
            allow_redirects=False, timeout=30)
        assert answer.status_code == 302 and answer.headers["Location"] == "/account/passphrase?changed=1"
        document = KeyStore.load(deployment.keys_path)
        assert document.open(new_pass, "acl-viewer").account.name == "acl-viewer"
        assert document.open(PASSPHRASE, "admin").account.is_admin
        with pytest.raises(WrongPassphrase):
            document.open(VIEWER_PASS, "acl-viewer")

        # Removing the logged-in viewer: its next request fails, its slot is gone from the file.
        audit_from = len(runtime.services.audit.lines())
        page = admin.get(base + "/admin/accounts", timeout=10)
        answer = admin.post(base + "/admin/accounts/acl-viewer/remove", data={"csrf": _csrf(page.text),
                                                                               "confirm": "acl-viewer"},
                            allow_redirects=False, timeout=10)
        assert answer.status_code == 302
        status, _ = get(viewer, "/")
        assert status == 302 and get(viewer, f"/media/thumb.jpg?key={k[fp.device_id]}")[0] == 302
        document = KeyStore.load(deployment.keys_path)
        for name in ("acl-viewer", "admin"):
            with pytest.raises(WrongPassphrase):
                document.open(VIEWER_PASS, name)
        assert "acl-viewer" not in deployment.keys_path.read_text()
        removed = [(e.kind, e.account, e.detail.get("subject")) for e in runtime.services.audit.entries()
                   if e.n >= audit_from and e.kind.startswith("account.")]
        assert removed == [("account.remove", "admin", "acl-viewer")], "the audit log names who removed whom, once"
    finally:
        if vault.account("acl-viewer") is not None:
            vault.remove_account("acl-viewer")


def test_account_form_refuses_bad_input_and_changes_nothing(runtime, deployment, tmp_path: Path):
    from tests.support import dashboard_login

    base = deployment.runtime_url
    admin = dashboard_login(base)
    FakeCamera(deployment, "acl-form-cam", tmp_path)
    cam = "cam-" + b"acl-form-cam".hex()
    good = {"name": "acl-new", "role": "viewer", cam: "1", "expires": "", "passphrase": "a long passphrase",
            "repeat": "a long passphrase"}
    before = deployment.keys_path.read_bytes()
    cases = [({"name": "admin"}, "already exists"), ({cam: ""}, "at least one camera"),
             ({"expires": "2020-01-01"}, "in the past"), ({"passphrase": "short", "repeat": "short"}, "at least 10"),
             ({"name": "Not OK!"}, "not allowed"), ({"role": "root"}, "viewer"),
             ({"cam-" + b"nope".hex(): "1"}, "does not exist"), ({"repeat": "something else"}, "differ")]
    for change, message in cases:
        page = admin.get(base + "/admin/accounts", timeout=10)
        answer = admin.post(base + "/admin/accounts", data={**good, **change, "csrf": _csrf(page.text)},
                            allow_redirects=False, timeout=10)
        assert answer.status_code == 400 and message in answer.text, (change, answer.status_code)
        assert deployment.keys_path.read_bytes() == before, change
    page = admin.get(base + "/admin/accounts", timeout=10)
    answer = admin.post(base + "/admin/accounts/admin/remove", data={"csrf": _csrf(page.text), "confirm": "admin"},
                        allow_redirects=False, timeout=10)
    assert answer.status_code == 400 and "last admin" in answer.text
    assert deployment.keys_path.read_bytes() == before
