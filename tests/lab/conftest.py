"""The network-namespace lab, driven from pytest.

Every test gets a fresh lab (unique id) and tears it down, also on failure.
Traffic stays inside the lab's namespaces: the API is reached with
`ip netns exec <arbiter ns> curl http://127.0.0.1:8080`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.labctl import Lab


def _why_not_runnable() -> str | None:
    if os.geteuid() != 0:
        return "lab tests need root (network namespaces, nftables)"
    missing = [t for t in ("keepalived", "sshd", "nginx", "nft", "nsenter", "curl", "ssh-keygen")
               if not (shutil.which(t) or Path(f"/usr/sbin/{t}").exists())]
    if missing:
        return f"lab tests need {', '.join(missing)} (run: bash deploy/bootstrap.sh)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    why = _why_not_runnable()
    if why is None:
        return
    for item in items:
        if "lab" in item.keywords:
            if os.environ.get("ARBITER_LAB_REQUIRED"):
                # CI: a lab test that cannot run is a failure, never a silent skip.
                item.add_marker(pytest.mark.xfail(reason=why, run=False, strict=True))
                item.add_marker(pytest.mark.usefixtures("_lab_required"))
            else:
                item.add_marker(pytest.mark.skip(reason=why))


@pytest.fixture
def _lab_required() -> None:
    why = _why_not_runnable()
    if why:
        pytest.fail(f"ARBITER_LAB_REQUIRED is set but {why}")


@pytest.fixture
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    variant = getattr(request, "param", "active-backup")
    lab = Lab(variant)
    try:
        yield lab
    finally:
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            for arb in lab.arbiters:
                tail = "\n".join(lab.arbiter_log(arb).splitlines()[-40:])
                print(f"---- {arb}: arbiter log (tail) ----\n{tail}")
            for h in ("lb1", "lb2"):
                log = lab.dir / h / "log" / "keepalived.log"
                if log.exists():
                    lines = [ln for ln in log.read_text().splitlines() if "gratuitous" not in ln]
                    print(f"---- {h} keepalived.log (tail) ----\n" + "\n".join(lines[-15:]))
        lab.down()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # type: ignore[no-untyped-def]
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


