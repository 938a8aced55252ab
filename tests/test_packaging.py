"""What the wheel holds: every package of the source tree (pyproject.toml lists
them by hand, since configs/ is mapped to detector.configs) and every config."""

import tomllib
from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[1]


def _setuptools():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_is_listed():
    found = set(find_packages(str(ROOT), include=["ops*", "detector*"]))
    listed = set(_setuptools()["packages"])
    assert found | {"detector.configs"} == listed


def test_every_config_is_packaged():
    patterns = _setuptools()["package-data"]["detector.configs"]
    packaged = {p for pattern in patterns for p in (ROOT / "configs").glob(pattern)}
    assert packaged == set((ROOT / "configs").rglob("*.yaml"))
