"""Find a MinIO server binary, or build the pinned commit from source.

Upstream publishes MinIO's community edition as source only, so the binary is built once with
``go install`` and cached outside the repository, keyed by the pinned module version. Lookup order:

1. ``CRYOSPY_MINIO_BIN`` (an explicit path),
2. ``minio`` on ``PATH``,
3. the cache (``$CRYOSPY_CACHE_DIR`` or ``~/.cache/cryospy``) ``/minio/<version>/minio``,
4. a fresh ``go install`` into that cache (several minutes on two cores; progress is printed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .errors import MinioUnavailable

# The last commit of the community repository (Feb 2026). The Go module proxy serves it under its pseudo-version;
# the raw commit hash is refused there.
MINIO_MODULE = "github.com/minio/minio"
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"

Progress = Callable[[str], None]


def _stderr_progress(message: str) -> None:
    print(f"[minio] {message}", file=sys.stderr, flush=True)


def cache_dir(env: os._Environ[str] | dict[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("CRYOSPY_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "cryospy")
    return Path(base) / "minio" / MINIO_VERSION


def find_minio(env: os._Environ[str] | dict[str, str] | None = None) -> Path | None:
    """Return an existing binary without building anything, or ``None``."""
    env = os.environ if env is None else env
    explicit = env.get("CRYOSPY_MINIO_BIN")
    if explicit:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise MinioUnavailable(
                f"CRYOSPY_MINIO_BIN points at {path}, which is not an executable file. "
                "Fix the path, or unset it to let CryoSpy build MinIO from source."
            )
        return path
    on_path = shutil.which("minio", path=env.get("PATH"))
    if on_path:
        return Path(on_path)
    cached = cache_dir(env) / "minio"
    if cached.is_file() and os.access(cached, os.X_OK):
        return cached
    return None


def ensure_minio(progress: Progress = _stderr_progress,
                 env: os._Environ[str] | dict[str, str] | None = None) -> Path:
    """Return a usable MinIO binary, building it with ``go install`` if needed."""
    found = find_minio(env)
    if found:
        return found
    return build_minio(progress, env)


def build_minio(progress: Progress = _stderr_progress,
                env: os._Environ[str] | dict[str, str] | None = None) -> Path:
    env = dict(os.environ if env is None else env)
    go = shutil.which("go", path=env.get("PATH"))
    if not go:
        raise MinioUnavailable(
            "No MinIO server binary was found and Go is not installed to build one. CryoSpy's package does not "
            "include MinIO (its community edition is published as source only); CryoSpy looks at "
            f"$CRYOSPY_MINIO_BIN, then `minio` on PATH, then {cache_dir(env) / 'minio'}. Either install Go "
            "(https://go.dev/doc/install, 1.24 or newer) and run `cryospy minio build`, which builds MinIO from "
            "source into that cache (a few minutes, once), set CRYOSPY_MINIO_BIN to an existing minio binary, "
            "or run the stack with `docker compose up`."
        )
    target = cache_dir(env)
    target.mkdir(parents=True, exist_ok=True)
    staging = target / "staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    env["GOBIN"] = str(staging)
    env.setdefault("GOFLAGS", "-trimpath")
    cmd = [go, "install", "-v", f"{MINIO_MODULE}@{MINIO_VERSION}"]
    progress(f"building MinIO {MINIO_VERSION} from source into {target} (first run only; "
             "several minutes on a small machine)")
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    tail: list[str] = []
    counts = {"downloaded": 0, "compiled": 0}

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            line = line.rstrip()
            tail.append(line)
            del tail[:-30]
            counts["downloaded" if line.startswith("go: downloading") else "compiled"] += 1

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    while proc.poll() is None:
        time.sleep(1.0)
        elapsed = time.monotonic() - started
        if int(elapsed) % 15 == 0:
            progress(f"  … {elapsed:4.0f}s: {counts['downloaded']} modules fetched, "
                     f"{counts['compiled']} packages compiled")
    reader.join(timeout=5)
    if proc.returncode != 0:
        detail = "\n".join(tail[-12:])
        raise MinioUnavailable(
            f"`go install {MINIO_MODULE}@{MINIO_VERSION}` failed (exit {proc.returncode}). Check that the Go "
            "module proxy is reachable and the disk has ~2 GB free, or set CRYOSPY_MINIO_BIN to an existing "
            f"minio binary.\n{detail}"
        )
    built = staging / "minio"
    final = target / "minio"
    os.replace(built, final)
    shutil.rmtree(staging, ignore_errors=True)
    progress(f"built MinIO in {time.monotonic() - started:.0f}s -> {final}")
    return final
