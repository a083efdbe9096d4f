"""The installed package (the image installs it without -e) holds every module and template: the
editable install a developer uses finds a package missing from pyproject.toml anyway, an image does
not."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_and_its_templates_are_in_pyproject():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    found = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "training").rglob("__init__.py")}
    assert found - listed == set(), "add these to [tool.setuptools] packages"
    for folder in (ROOT / "training").rglob("templates"):
        package = ".".join(folder.parent.relative_to(ROOT).parts)
        assert "templates/*.j2" in setuptools["package-data"].get(package, []), package
