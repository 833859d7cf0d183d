"""pyproject.toml maps the repository's folders onto the ``cryospy`` namespace by hand; these tests make sure a
new folder or a new kind of data file cannot be forgotten (the installed package would then fail on import,
or serve a page without its template). The wheel itself is built and installed in
tests/integration/test_wheel_install.py."""

from __future__ import annotations

import fnmatch
import subprocess
import tomllib
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[2]
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
# Files inside the package folders that the wheel leaves out on purpose, and why.
NOT_SHIPPED = {
    "infra/docker/*": "the container build reads them from the repository",
    "infra/compose.env.example": "docker compose reads it from the repository",
    "infra/systemd/*": "`cryospy service units` writes these; the copies document the default layout",
}


def _package_dirs() -> dict[str, Path]:
    """Every package folder (one with an ``__init__.py``; infra/docker's script is not one) under the mapped
    roots, by the name it installs as."""
    found: dict[str, Path] = {}
    for package, folder in SETUPTOOLS["package-dir"].items():   # no mapped folder lies inside another
        root = ROOT / folder
        for code in root.rglob("__init__.py"):
            relative = code.parent.relative_to(root)
            if any(part == "__pycache__" or part.startswith(".") for part in relative.parts):
                continue   # caches, and tool folders such as .chalice/venv
            found[".".join((package, *relative.parts))] = code.parent
    return found


def test_every_package_folder_is_listed_in_pyproject():
    on_disk = set(_package_dirs())
    listed = set(SETUPTOOLS["packages"])
    assert on_disk - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert listed - on_disk == set(), "these packages in pyproject.toml have no folder"


def _tracked(folder: Path) -> list[str]:
    out = subprocess.run(["git", "ls-files", "--", str(folder.relative_to(ROOT))], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    return out.split()


def test_every_data_file_in_a_package_is_shipped_or_excluded_with_a_reason():
    package_data: dict[str, list[str]] = SETUPTOOLS["package-data"]
    missing = []
    for package, folder in _package_dirs().items():
        for path in _tracked(folder):
            relative = PurePosixPath(path).relative_to(PurePosixPath(folder.relative_to(ROOT).as_posix()))
            in_subpackage = len(relative.parts) > 1 and (folder / relative.parts[0] / "__init__.py").exists()
            if path.endswith(".py") or in_subpackage:
                continue   # code, or a file of a subpackage (checked under that package)
            shipped = any(fnmatch.fnmatch(relative.as_posix(), pattern) for pattern in package_data.get(package, []))
            excluded = any(fnmatch.fnmatch(path, pattern) for pattern in NOT_SHIPPED)
            if not shipped and not excluded:
                missing.append(path)
    assert missing == [], "add a package-data pattern in pyproject.toml (or a reason to NOT_SHIPPED here)"
