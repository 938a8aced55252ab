"""What the wheel holds: every package of the source tree (pyproject.toml lists
them by hand, since configs/ is mapped to detector.configs) and every config;
and the Python versions it claims are the ones CI tests."""

import re
import sys
import tomllib
from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[1]


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _setuptools():
    return _pyproject()["tool"]["setuptools"]


def test_every_package_is_listed():
    found = set(find_packages(str(ROOT), include=["ops*", "detector*"]))
    listed = set(_setuptools()["packages"])
    assert found | {"detector.configs"} == listed


def test_every_config_is_packaged():
    patterns = _setuptools()["package-data"]["detector.configs"]
    packaged = {p for pattern in patterns for p in (ROOT / "configs").glob(pattern)}
    assert packaged == set((ROOT / "configs").rglob("*.yaml"))


def test_the_lowest_python_allowed_is_the_one_ci_tests():
    """requires-python's lower bound is the Python .ci/run creates its venv
    with (the lowest supported version must be the tested one), the only
    version classifier, and the README's; and this interpreter satisfies it."""
    project = _pyproject()["project"]
    bound = re.fullmatch(r">=\s*3\.(\d+)", project["requires-python"])
    assert bound, f"requires-python {project['requires-python']!r}: expected '>=3.N'"
    lowest = f"3.{bound[1]}"
    ci = re.search(r'PYTHON="\$\{PYTHON:-python(3\.\d+)\}"', (ROOT / ".ci" / "run").read_text())
    assert ci and ci[1] == lowest, f".ci/run's Python is not python{lowest}"
    versions = [c.rsplit(" ", 1)[1] for c in project["classifiers"]
                if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)]
    assert versions == [lowest], versions
    assert f"Python ≥ {lowest} (CI tests {lowest})" in (ROOT / "README.md").read_text()
    assert sys.version_info >= (3, int(bound[1])), sys.version
