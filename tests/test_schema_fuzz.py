"""Schemathesis against a running `arbiter serve`: every operation of the OpenAPI
schema, every check, 200 examples each, without a token and with an operator token.
The result must be 0 server errors and 0 schema violations."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.verdict import arbiter_server

OPS = "ops-token-0123456789abcdef"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("fuzz")
    with arbiter_server(work, extra_toml=f'\n[api]\ntokens = {{ops = "{OPS}"}}\n',
                        scenario="split") as (port, _):
        yield f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("token", [None, OPS], ids=["anonymous", "operator"])
def test_schemathesis_finds_nothing(served: str, token: str | None, tmp_path: Path) -> None:
    st = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert st, "schemathesis is a test dependency (pip install -e .[test])"
    auth = ["-H", f"Authorization: Bearer {token}"] if token else []
    res = subprocess.run([st, "run", f"{served}/openapi.json", "--checks", "all",
                          "--max-examples", "200", "--request-timeout", "40", "--seed", "1",
                          "--no-color", *auth], capture_output=True, text=True, timeout=900,
                         cwd=tmp_path)
    summary = "\n".join(res.stdout.splitlines()[-25:])
    assert res.returncode == 0, res.stdout[-6000:]
    assert " passed" in summary and "failures" not in summary.split("generated")[-1], summary
