"""deploy/ansible/ (issue 22): the example playbook passes ansible-playbook's syntax
check and ansible-lint's production profile, and the arbiter.toml its template renders
from the example inventory is one `arbiter config validate` accepts. Nothing connects
anywhere: the render runs with `connection: local` and writes into a temporary dir.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HERE = REPO / "deploy" / "ansible"
BIN = Path(sys.executable).parent
ENV = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCAL_TEMP": "/tmp",
       "ANSIBLE_HOME": "/tmp/arbiter-test-ansible", "NO_COLOR": "1",
       "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}


def run(*args: str, cwd: Path = HERE, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300,
                          env=env or ENV)


def test_the_playbook_passes_the_syntax_check_and_ansible_lint() -> None:
    r = run(str(BIN / "ansible-playbook"), "--syntax-check", "-i", "inventory.example.yml",
            "site.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    r = run(str(BIN / "ansible-lint"), "--offline", "--project-dir", ".", "site.yml",
            "inventory.example.yml", "group_vars/directors.yml", "requirements.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "criteria was 'production'" in r.stdout + r.stderr


def test_the_rendered_config_is_valid(tmp_path: Path) -> None:
    out = tmp_path / "arbiter.toml"
    play = tmp_path / "render.yml"
    play.write_text(f"""- name: Render arbiter.toml as site.yml does, locally
  hosts: arbiters
  connection: local
  gather_facts: false
  tasks:
    - name: Template
      ansible.builtin.template:
        src: {HERE / "templates" / "arbiter.toml.j2"}
        dest: {out}
        mode: "0600"
""")
    for name in ("id_ed25519", "known_hosts"):  # what site.yml puts in /etc/arbiter
        (tmp_path / name).write_text("")
    r = run(str(BIN / "ansible-playbook"), "-i", str(HERE / "inventory.example.yml"),
            "-e", f"ansible_python_interpreter={sys.executable}", "-e",
            f"arbiter_etc={tmp_path}", str(play))
    assert r.returncode == 0, r.stdout + r.stderr
    text = out.read_text()
    assert 'name = "lb2"' in text and "priority = 90" in text
    secrets = {"ARBITER_OPS_TOKEN": "o" * 24, "ARBITER_TOKEN_LB1": "a" * 24,
               "ARBITER_TOKEN_LB2": "b" * 24}
    r = run(str(BIN / "arbiter"), "config", "validate", str(out),
            env={**os.environ, **secrets})
    assert r.returncode == 0, r.stdout + r.stderr
    # and without the secrets it names the missing one, as the unit's validate would
    r = run(str(BIN / "arbiter"), "config", "validate", str(out))
    assert r.returncode != 0 and "ARBITER_OPS_TOKEN" in r.stdout + r.stderr
