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
                "/export/0123456789abcdef/download"]
    for prefix in runtime.dashboard.mounts:
        assert any(path == prefix or path.startswith(prefix + "/") for path in sections), prefix
    pages = ["/", "/index.html", "/live", "/" + live_page(ck.device_id), "/" + day_page(ck.device_id, ck.day),
             "/actions/protect", "/logout", "/no/such/page"]
    for path in pages + list(media.values()) + sections:
        for method in ("GET", "POST", "HEAD"):
            status, location, body = _fetch(deployment.runtime_url + path, method)
            assert (status, location, body) == (302, "/login", b""), (method, path, status, body[:200])
