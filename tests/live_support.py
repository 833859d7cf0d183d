"""Shared pieces of the live-view tests and benchmark: an enrolled agent with a synthetic camera on a thread,
a viewer that asks for live view as the page does, and what is under ``live/`` in the bucket."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import requests

from cryospy.cli.devices import create_device
from cryospy.common.liveparts import LIVE_PREFIX
from cryospy.infra.deployment import Deployment
from tests.support import RunningAgent

LIVE_AGENT = {"camera_device": "synthetic:320x180", "clip_seconds": 20, "fps": 10, "keyframe_seconds": 1,
              "settings_sync_seconds": 5, "server_timeout_seconds": 5, "upload_retry_minutes": 0.05,
              "source_retry_max_seconds": 1}


def live_agent(dep: Deployment, device_id: str, tmp: Path, **overrides: Any) -> RunningAgent:
    """Enrol ``device_id`` (the admin makes its signing key) and run its agent with a synthetic camera."""
    path = tmp / f"{device_id}.json"
    create_device(dep, device_id, path, {**LIVE_AGENT, "temp_dir": str(tmp), **overrides})
    return RunningAgent(path)


def ask(http: requests.Session, base: str, device_id: str) -> dict[str, Any]:
    """What the live page asks every second (and what marks the camera as watched)."""
    answer = http.get(f"{base}/media/live-status.json", params={"device": device_id}, timeout=10)
    answer.raise_for_status()
    return answer.json()  # type: ignore[no-any-return]


def live_objects(runtime: Any, device_id: str | None = None) -> list[str]:
    s3 = runtime.services.handler_client
    owner = runtime.services.devices.get(device_id).storage_token if device_id else ""   # keys name the token
    prefix = LIVE_PREFIX + (f"{owner}/" if owner else "")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=runtime.services.bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def measure_latency(page, seconds: float, every: float = 0.5) -> list[float]:  # type: ignore[no-untyped-def]
    """Seconds behind real time, sampled from the page while it plays live parts."""
    samples: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        value = page.eval_on_selector("video[data-live-device]", "v => v.dataset.behindMs || null")
        if value is not None:
            samples.append(int(value) / 1000)
        time.sleep(every)
    return samples
