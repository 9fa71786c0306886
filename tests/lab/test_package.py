"""The Debian package (issue 22), as an ops team installs it: built by
deploy/package/build-deb, then in a fresh minimal Debian 12 root (tests/lab/fresh-debian):
`apt install ./keepalived-arbiter_*.deb`, the files, the user and /var/lib/arbiter,
`arbiter --version` and `arbiter config validate` of the shipped config; an upgrade
over itself that keeps a changed conffile; remove, then purge."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.lab

INSIDE = """
set -eu
export DEBIAN_FRONTEND=noninteractive
cd /srv/extra
apt-get update -q >/dev/null
apt-get install -y -q ./v1.deb >/dev/null
echo "user: $(id -un arbiter) $(stat -c %U:%G:%a /var/lib/arbiter)"
echo "version: $(arbiter --version)"
echo "unit: $(test -f /lib/systemd/system/keepalived-arbiter.service && echo yes)"
echo "node scripts: $(ls /usr/share/keepalived-arbiter/node | tr '\n' ' ')"
cd /usr/share/keepalived-arbiter
echo "monitoring: $(ls grafana/*.json prometheus/*.yml | tr '\n' ' ')"
cd /srv/extra
echo "conf modes: $(stat -c %a:%G /etc/arbiter/arbiter.toml)" \
     "$(stat -c %a:%U /etc/arbiter/arbiter.env)"
arbiter config validate --skip-files /etc/arbiter/arbiter.toml
echo '# an operator was here' >> /etc/arbiter/arbiter.toml
apt-get install -y -q ./v2.deb >/dev/null
echo "upgraded: $(dpkg-query -W -f='${Version}' keepalived-arbiter)"
echo "conffile kept: $(grep -c 'an operator was here' /etc/arbiter/arbiter.toml)"
arbiter config validate --skip-files /etc/arbiter/arbiter.toml >/dev/null
apt-get remove -y -q keepalived-arbiter >/dev/null
echo "removed: $(test -e /usr/bin/arbiter && echo still-there || echo gone)" \
     "$(test -e /opt/keepalived-arbiter/bin && echo venv-left || echo venv-gone)" \
     "$(test -e /etc/arbiter/arbiter.toml && echo conf-kept)"
apt-get purge -y -q keepalived-arbiter >/dev/null
echo "purged: $(test -e /etc/arbiter/arbiter.toml && echo conf-left || echo conf-gone)"
"""


def test_the_package_installs_upgrades_and_removes_cleanly(tmp_path: Path) -> None:
    build = subprocess.run(["bash", str(REPO / "deploy/package/build-deb"), "--out",
                            str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr
    v1 = tmp_path / "v1.deb"
    Path(build.stdout.strip().splitlines()[-1]).rename(v1)
    # the same package under a higher version: an upgrade over itself
    unpacked = tmp_path / "unpacked"
    subprocess.run(["dpkg-deb", "-R", str(v1), str(unpacked)], check=True)
    control = unpacked / "DEBIAN/control"
    control.write_text(control.read_text().replace("Version: 0.1.0\n", "Version: 0.1.0-2\n"))
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "-z1", "--build", str(unpacked),
                    str(tmp_path / "v2.deb")], check=True, capture_output=True)
    p = subprocess.run(["bash", str(REPO / "tests/lab/fresh-debian"), "--with", str(v1),
                        "--with", str(tmp_path / "v2.deb"), "--", "bash", "-c", INSIDE],
                       capture_output=True, text=True, timeout=900)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-3000:]
    assert "user: arbiter arbiter:arbiter:750" in out
    assert "version: arbiter 0.1.0" in out and "unit: yes" in out
    assert "arbiter-gate arbiter-notify arbiter-ssh-wrapper" in out
    assert "grafana/keepalived-arbiter.json prometheus/arbiter-rules.yml" in out
    assert "conf modes: 640:arbiter 600:arbiter" in out
    assert "/etc/arbiter/arbiter.toml: OK (1 cluster(s), 2 node(s)" in out
    assert "upgraded: 0.1.0-2" in out and "conffile kept: 1" in out
    assert "removed: gone venv-gone conf-kept" in out and "purged: conf-gone" in out
