"""Locating and running the ffmpeg binary, and the one error every ffmpeg failure becomes.

CryoSpy never depends on a system-wide ffmpeg: the ``imageio-ffmpeg`` wheel ships a static build with
libx264, so ``pip install`` alone gives a working encoder. An operator can still point at another
binary (a hardware-accelerated build, Debian's package) with ``CRYOSPY_FFMPEG``.

Exceptions::

    CryoSpyError
    └── FfmpegError        (no usable binary, ffmpeg exited non-zero, timed out, or produced nothing)
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import ffmpeg

from cryospy.common.errors import CryoSpyError

__all__ = ["ENV_VAR", "FfmpegError", "drain_into", "ffmpeg_command", "ffmpeg_exe", "run_ffmpeg", "stderr_tail"]

#: Environment variable that names the ffmpeg binary to use (a path or a command on PATH).
ENV_VAR = "CRYOSPY_FFMPEG"

_TAIL_LINES = 12
_TAIL_CHARS = 2000


class FfmpegError(CryoSpyError):
    """ffmpeg could not be found or failed; the message carries the last lines ffmpeg printed.

    The tail of stderr is in the message because ffmpeg's own diagnosis ("Invalid data found when
    processing input", "moov atom not found") is almost always the most useful thing to show.
    """

    def __init__(self, message: str, *, stderr: bytes | str | None = None, returncode: int | None = None):
        self.stderr = stderr_tail(stderr) if stderr else ""
        self.returncode = returncode
        if self.stderr:
            message = f"{message}\nffmpeg said:\n{self.stderr}"
        super().__init__(message)


def stderr_tail(stderr: bytes | str | None, *, lines: int = _TAIL_LINES) -> str:
    """Return the last few non-empty lines of ffmpeg's stderr, decoded leniently and length-capped."""
    if not stderr:
        return ""
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    kept = [line.rstrip() for line in text.splitlines() if line.strip()][-lines:]
    tail = "\n".join(kept)
    return tail[-_TAIL_CHARS:]


def drain_into(stream: IO[bytes], keep: bytearray, limit: int) -> None:
    """Read a child's stderr to its end, keeping the last ``limit`` bytes in ``keep``. Run it on a thread:
    a full stderr pipe would block ffmpeg, which would then stop reading its input."""
    for chunk in iter(lambda: stream.read(4096), b""):
        keep += chunk
        if len(keep) > limit:
            del keep[: len(keep) - limit]
    stream.close()


@functools.cache
def ffmpeg_exe() -> str:
    """Return the ffmpeg binary to run, looked up once per process.

    Order: ``$CRYOSPY_FFMPEG`` (an explicit choice wins and must work), then ``ffmpeg`` on PATH (a
    distribution build may have hardware encoders), then the static binary bundled with imageio-ffmpeg.
    Cached because callers spawn ffmpeg per clip and the answer cannot change during a run.
    """
    configured = os.environ.get(ENV_VAR, "").strip()
    if configured:
        found = _resolve(configured)
        if found is None:
            raise FfmpegError(
                f"{ENV_VAR}={configured!r} is not an executable file or a command on PATH; "
                f"fix the path, or unset {ENV_VAR} to use the ffmpeg bundled with imageio-ffmpeg"
            )
        return found
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path
    try:
        import imageio_ffmpeg
    except ImportError:  # pragma: no cover - imageio-ffmpeg is a declared dependency
        bundled = None
    else:
        try:
            bundled = imageio_ffmpeg.get_ffmpeg_exe()
        except RuntimeError:
            bundled = None
    if bundled and _resolve(bundled):
        return bundled
    raise FfmpegError(
        "no ffmpeg binary found: set CRYOSPY_FFMPEG to an ffmpeg executable, install ffmpeg on PATH "
        "(e.g. `apt-get install ffmpeg`), or reinstall the imageio-ffmpeg wheel "
        "(`pip install --force-reinstall imageio-ffmpeg`) which bundles one"
    )


def _resolve(candidate: str) -> str | None:
    """Return an absolute executable path for a path or a bare command name, or None."""
    path = Path(candidate).expanduser()
    if path.is_file() and os.access(path, os.X_OK):
        return str(path.resolve())
    return shutil.which(candidate)


def ffmpeg_command(job: ffmpeg.nodes.OutputStream | Sequence[str], *, piped_stdin: bool = False,
                   exe: str | None = None) -> list[str]:
    """The command line :func:`run_ffmpeg` runs for ``job``: the job's own arguments plus quiet, batch-mode
    global options (``-nostdin`` unless input is piped: an ffmpeg that inherits a terminal reads keystrokes
    and can stall).

    ``job`` is an ffmpeg-python graph, as everywhere ffmpeg is run. A plain argument list is accepted only
    for the commands ffmpeg-python cannot express because they have no input or output at all
    (``-encoders``, ``-version``); those are tests and diagnostics.
    """
    quiet = ("-hide_banner", "-nostats") if piped_stdin else ("-hide_banner", "-nostats", "-nostdin")
    binary = exe or ffmpeg_exe()
    if isinstance(job, ffmpeg.nodes.OutputStream):
        return job.global_args(*quiet).compile(cmd=binary)
    return [binary, *quiet, *job]


def run_ffmpeg(
    job: ffmpeg.nodes.OutputStream | Sequence[str],
    *,
    what: str,
    stdin: bytes | None = None,
    timeout: float = 60.0,
    exe: str | None = None,
) -> bytes:
    """Run the ffmpeg ``job`` (see :func:`ffmpeg_command`) to completion and return its stdout; raise
    FfmpegError on any failure. ``what`` describes the job ("thumbnail of clip.mp4") so the error names it.
    """
    command = ffmpeg_command(job, piped_stdin=stdin is not None, exe=exe)
    try:
        done = subprocess.run(
            command,
            input=stdin,
            stdin=subprocess.DEVNULL if stdin is None else None,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise FfmpegError(
            f"ffmpeg took longer than {timeout:g}s for {what}; the input may be huge or a pipe that "
            "never closes",
            stderr=exc.stderr,
        ) from exc
    except OSError as exc:
        raise FfmpegError(
            f"could not start ffmpeg ({command[0]}) for {what}: {exc}; check {ENV_VAR} or the "
            "imageio-ffmpeg install"
        ) from exc
    if done.returncode != 0:
        raise FfmpegError(
            f"ffmpeg failed (exit {done.returncode}) for {what}", stderr=done.stderr, returncode=done.returncode
        )
    return done.stdout
