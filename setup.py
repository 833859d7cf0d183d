"""Build hook (the metadata lives in pyproject.toml): refuse to build a wheel without the dashboard's player.

hls.js is not committed; ``./dev`` copies it from the npm package into ``web/vendor/``. A wheel built without
it installs and starts, and then every clip fails to play, so the build fails here instead, saying how to
fetch it. Editable installs (``pip install -e``, which ``./dev`` runs before fetching the assets) serve the
file from the checkout and are not checked.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.errors import FileError

PLAYER = Path(__file__).resolve().parent / "web" / "vendor" / "hls.light.min.js"


class BuildWithPlayer(build_py):
    def run(self) -> None:
        if not getattr(self, "editable_mode", False) and not PLAYER.is_file():
            raise FileError(
                f"{PLAYER} is missing: it is the dashboard's video player (hls.js), and a package without it "
                "cannot play a single clip. Fetch it from the npm registry with `./dev wheel` (which builds the "
                "wheel too), or by hand: npm ci && mkdir -p web/vendor && cp node_modules/hls.js/dist/"
                "hls.light.min.js web/vendor/ && gzip -kf9 web/vendor/hls.light.min.js")
        super().run()


setup(cmdclass={"build_py": BuildWithPlayer})
