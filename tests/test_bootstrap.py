"""deploy/path-link.sh, the rule bootstrap uses for `arbiter` on PATH: a throw-away
clone never takes the link from a checkout whose venv is still there."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def checkout(root: Path) -> Path:
    """A checkout with a venv's `arbiter` in it (a script: nothing is installed)."""
    exe = root / ".venv" / "bin" / "arbiter"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\necho arbiter\n")
    exe.chmod(0o755)
    return exe


def link(target: Path, at: Path) -> str:
    p = subprocess.run(["bash", str(REPO / "deploy/path-link.sh"), str(target), str(at)],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_a_second_clone_leaves_the_first_clones_link_alone(tmp_path: Path) -> None:
    first, second = checkout(tmp_path / "first"), checkout(tmp_path / "second")
    at = tmp_path / "bin" / "arbiter"
    link(first, at)
    assert at.resolve() == first.resolve()
    said = link(second, at)  # the throw-away clone's bootstrap
    assert at.resolve() == first.resolve(), "the second clone took the link"
    assert "left alone" in said and str(second) in said
    # once the first checkout is gone, the link points nowhere: the next bootstrap fixes it
    subprocess.run(["rm", "-rf", str(tmp_path / "first")], check=True)
    said = link(second, at)
    assert at.resolve() == second.resolve() and "gone" in said


def test_a_file_that_is_not_a_link_is_never_replaced(tmp_path: Path) -> None:
    exe = checkout(tmp_path / "c")
    at = tmp_path / "arbiter"
    at.write_text("#!/bin/sh\n# installed by the package\n")
    said = link(exe, at)
    assert not at.is_symlink() and "installed by the package" in at.read_text()
    assert "not a link" in said
