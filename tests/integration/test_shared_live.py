"""Live view across runtimes (issue 18 item 4, "any runtime can serve the dashboard"): two real runtimes in child
processes of their own on one PostgreSQL and one MinIO, a real agent with a synthetic camera that talks to
runtime A only, and a browser that watches it through runtime B only.

B's viewer reaches A's held agent long-poll (LISTEN/NOTIFY), the agent pushes parts to A, and B's playlist
lists them, numbered as A's playlist numbers them; B serves the parts' init segment and fragments (read from
MinIO and opened there); once the browser stops asking, A tells the agent nobody watches."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from cryospy.infra.deployment import load
from cryospy.infra.minio_server import MinioServer, free_port
from cryospy.infra.runtime_instances import add_runtime
from tests.conftest import new_deployment
from tests.live_support import ask, live_agent
from tests.runtime_process import RuntimeProcess
from tests.support import dashboard_login, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CAMERA = "live-porch"


def test_a_browser_on_one_runtime_watches_a_camera_that_pushes_to_another(postgres, minio_binary: Path,
                                                                          tmp_path: Path) -> None:
    main = new_deployment(tmp_path / "runtime-a")
    (main.data_dir / "server.json").write_text(json.dumps({"database_url": postgres.fresh_url()}))
    second = add_runtime(main, tmp_path / "runtime-b", free_port())
    main = load(main.data_dir)
    a_url, b_url = main.dashboard_url, second.dashboard_url
    with MinioServer(main, binary=minio_binary):
        a, b = RuntimeProcess(main), RuntimeProcess(second)
        cam = None
        try:
            cam = live_agent(main, CAMERA, tmp_path)        # its server_url is runtime A's
            wait_for(lambda: cam.agent.live_watch.polls > 0, timeout=60, what="the agent's long-poll on A")
            assert cam.agent.live_parts.sent == 0

            # The browser asks B only, as the page does (every half second here).
            http = dashboard_login(b_url)
            opened = time.monotonic()
            wait_for(lambda: ask(http, b_url, CAMERA)["parts"] >= 1, timeout=60, what="a part listed on B")
            print(f"first part listed on B {time.monotonic() - opened:.1f} s after B's first ask")
            wait_for(lambda: ask(http, b_url, CAMERA)["parts"] >= 3, timeout=60, what="parts listed on B")
            assert cam.agent.live_watch.watched.is_set()

            playlist = http.get(f"{b_url}/media/live-parts.m3u8", params={"device": CAMERA}, timeout=10)
            assert playlist.status_code == 200 and "#EXT-X-ENDLIST" not in playlist.text
            on_a = dashboard_login(a_url).get(f"{a_url}/media/live-parts.m3u8", params={"device": CAMERA},
                                              timeout=10).text
            seq = {url: n for text in (playlist.text, on_a) for n, url in _numbered(text)}
            assert all(seq[url] == n for n, url in _numbered(playlist.text) + _numbered(on_a)), \
                "A and B number every part alike"

            # B serves the parts: the init segment and a fragment, opened from the sealed objects.
            init = re.search(r'#EXT-X-MAP:URI="([^"]+)"', playlist.text).group(1)   # type: ignore[union-attr]
            frag = [line for line in playlist.text.splitlines() if line.startswith("/media/live-part.mp4")][-1]
            got_init, got_frag = http.get(b_url + init, timeout=10), http.get(b_url + frag, timeout=10)
            assert got_init.status_code == 200 and got_init.content[4:8] == b"ftyp"
            assert got_frag.status_code == 200 and b"moof" in got_frag.content[:16]

            # The browser leaves: A tells the agent nobody watches once the grace period is over.
            wait_for(lambda: not cam.agent.live_watch.watched.is_set(), timeout=60, what="the agent told to stop")
        finally:
            if cam is not None:
                cam.stop()
            a.stop()
            b.stop()


def _numbered(playlist: str) -> list[tuple[int, str]]:
    """(media sequence number, fragment URL) of each part in a live playlist."""
    lines = playlist.splitlines()
    first = int(next(line.split(":", 1)[1] for line in lines if line.startswith("#EXT-X-MEDIA-SEQUENCE:")))
    frags = [line for line in lines if line.startswith("/media/live-part.mp4")]
    return [(first + i, url) for i, url in enumerate(frags)]
