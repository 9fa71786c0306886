"""The Debian package (issue 22), as an ops team installs it: built by
deploy/package/build-deb, then in a fresh minimal Debian 12 root (tests/lab/fresh-debian):
`apt install ./keepalived-arbiter_*.deb`, the files, the user and /var/lib/arbiter,
`arbiter --version` and `arbiter config validate` of the shipped config; an upgrade
over itself that keeps a changed conffile; remove, then purge."""

from __future__ import annotations

import os
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
apt-get install -y -q ./v1.deb >/srv/extra/install.log 2>&1
echo "adduser warnings: $(grep -ci "home dir" /srv/extra/install.log || true)"
grep -i "warn" /srv/extra/install.log || true
echo "user: $(id -un arbiter) $(stat -c %U:%G:%a /var/lib/arbiter)"
echo "depends: $(dpkg-query -W -f='${Depends}' keepalived-arbiter)"
echo "ssh-keyscan: $(command -v ssh-keyscan >/dev/null && echo there)"
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
# as `systemctl enable keepalived-arbiter` would have left it
mkdir -p /etc/systemd/system/multi-user.target.wants
ln -s /lib/systemd/system/keepalived-arbiter.service \
  /etc/systemd/system/multi-user.target.wants/keepalived-arbiter.service
apt-get purge -y -q keepalived-arbiter >/dev/null
echo "purged: $(test -e /etc/arbiter/arbiter.toml && echo conf-left || echo conf-gone)" \
     "$(test -L /etc/systemd/system/multi-user.target.wants/keepalived-arbiter.service \
        && echo wants-left || echo wants-gone)" \
     "$(getent passwd arbiter >/dev/null && echo user-left || echo user-gone)" \
     "$(getent group arbiter >/dev/null && echo group-left || echo group-gone)" \
     "$(test -e /var/lib/arbiter && echo state-left || echo state-gone)"
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
    assert "removed: gone venv-gone conf-kept" in out
    # issue 30: purge removes what install (and enable) created; no adduser warning
    assert "purged: conf-gone wants-gone user-gone group-gone state-gone" in out, out[-2000:]
    assert "adduser warnings: 0" in out, out[-2000:]
    assert "openssh-client" in out and "ssh-keyscan: there" in out


def test_the_package_is_lintian_clean_and_reproducible(tmp_path: Path) -> None:
    """Issue 30: lintian reports nothing (the vendored venv under /opt is a justified
    override, shipped in the package), and two builds of one commit are the same file
    (SOURCE_DATE_EPOCH, no compiled files, the same file list)."""
    debs = []
    for k in (1, 2):
        b = subprocess.run(["bash", str(REPO / "deploy/package/build-deb"), "--out",
                            str(tmp_path / f"b{k}")], capture_output=True, text=True,
                           timeout=600, env={**os.environ, "SOURCE_DATE_EPOCH": "1796000000"})
        assert b.returncode == 0, b.stderr
        debs.append(Path(b.stdout.strip().splitlines()[-1]))
    assert debs[0].read_bytes() == debs[1].read_bytes()
    files = subprocess.run(["dpkg-deb", "-c", str(debs[0])], capture_output=True, text=True,
                           check=True).stdout
    assert "__pycache__" not in files and ".pyc" not in files
    lint = subprocess.run(["lintian", "--tag-display-limit", "0", str(debs[0])],
                          capture_output=True, text=True, timeout=600)
    findings = [ln for ln in lint.stdout.splitlines() if ln[:2] in ("E:", "W:")]
    assert findings == [], "\n".join(findings[:40])
