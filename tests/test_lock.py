"""The lock files (deploy/lock/) agree with pyproject.toml: every dependency the
project names is pinned, with hashes, at a version its range allows. Refreshing
resolves against PyPI (deploy/lock/refresh), so this checks agreement, not newness."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;\\]+)")


def pins(name: str) -> dict[str, str]:
    text = (REPO / "deploy/lock" / name).read_text()
    out = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        m = PIN.match(block)
        if m:
            assert "--hash=sha256:" in block, f"{m.group(1)} has no hash in {name}"
            out[canonicalize_name(m.group(1).split("[")[0])] = m.group(2)
    return out


def wanted(extras: tuple[str, ...]) -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for e in extras:
        reqs += project["optional-dependencies"][e]
    return [Requirement(r) for r in reqs]


@pytest.mark.parametrize(("lock", "extras"), [("requirements.txt", ("postgres",)),
                                              ("requirements-test.txt", ("postgres", "test"))])
def test_the_lock_pins_every_dependency_within_its_range(lock: str,
                                                          extras: tuple[str, ...]) -> None:
    pinned = pins(lock)
    env = {"python_version": "3.11", "sys_platform": "linux", "platform_system": "Linux"}
    for r in wanted(extras):
        if r.marker is not None and not r.marker.evaluate(env):
            continue
        name = canonicalize_name(r.name)
        assert name in pinned, f"{r} is not in deploy/lock/{lock}: run deploy/lock/refresh"
        assert r.specifier.contains(pinned[name], prereleases=True), \
            f"{name}=={pinned[name]} in {lock} is outside {r}: run deploy/lock/refresh"
    for build in ("setuptools", "wheel"):  # pip install --no-build-isolation uses them
        assert build in pinned
