#!/usr/bin/env bash
# Install what the demo and the tests need on a fresh Debian machine (as root):
# Debian packages for the lab, and the project in a virtualenv at .venv.
#   bash deploy/bootstrap.sh            # lab packages + the arbiter
#   bash deploy/bootstrap.sh --test     # also test extras, PostgreSQL, Chromium, Prometheus
# Progress goes to stderr, one line per phase; each tool's own output goes to a log in
# .bootstrap/, and on a failure the log's last lines and what to try are printed.
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
[[ ${1:-} == --test ]] && want_test=1
logs=.bootstrap
mkdir -p "$logs"

say() { echo "bootstrap: $*" >&2; }
fail() {  # LOG WHAT HINT: the reason, from the tool's own log, and what to try
  say "FAILED: $2"
  if [[ -s $1 ]]; then
    echo "---- last lines of $1 ----" >&2
    tail -n 25 "$1" >&2
    echo "----" >&2
  fi
  say "what to try: $3"
  exit 1
}
took() { echo "$(( $(date +%s) - $1 )) s"; }

# netbase: /etc/protocols (nftables only recommends it); e2fsprogs: chattr for the
# store tests
pkgs=(keepalived openssh-server openssh-client nftables iproute2 iputils-ping iputils-arping nginx curl util-linux procps python3-venv busybox dash netbase e2fsprogs)
# chromium: tests/test_page.py drives it headless through playwright; prometheus:
# promtool checks deploy/prometheus/arbiter-rules.yml (its service is kept from starting);
# lintian checks the .deb (tests/lab/test_package.py); systemd-container boots it
# (tests/lab/test_first_deployment.py)
[[ $want_test == 1 ]] && pkgs+=(postgresql chromium prometheus debootstrap lintian systemd-container)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  [[ $(id -u) -eq 0 ]] || { say "need root to install: ${missing[*]}"; exit 1; }
  say "installing ${#missing[@]} Debian package(s) with apt-get: ${missing[*]}"
  t=$(date +%s)
  # The lab runs its own sshd/nginx/keepalived inside namespaces: keep the packages
  # from starting system-wide copies in the root namespace while they install.
  made_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; made_policy=1
  fi
  trap '[[ $made_policy == 1 ]] && rm -f /usr/sbin/policy-rc.d' EXIT
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >"$logs/apt.log" 2>&1 \
    || fail "$logs/apt.log" "apt-get update" \
       "check the network and /etc/apt/sources.list (apt-get update must reach a Debian mirror)"
  apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$logs/apt.log" 2>&1 \
    || fail "$logs/apt.log" "apt-get install ${missing[*]}" \
       "run 'apt-get install ${missing[*]}' by hand to see the error; a held or broken package needs 'apt-get -f install'"
  say "Debian packages installed ($(took "$t"))"
fi

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv >"$logs/venv.log" 2>&1 \
    || fail "$logs/venv.log" "$PY -m venv .venv" "install python3-venv (Python >= 3.11)"
fi
# Every package from the lock file, each checked against its hash (deploy/lock/; refresh
# with deploy/lock/refresh): two installs a month apart are the same program.
lock=deploy/lock/requirements.txt
[[ $want_test == 1 ]] && lock=deploy/lock/requirements-test.txt
stamp=.venv/.installed-$(cat "$lock" pyproject.toml | sha256sum | cut -c1-16)
if [[ ! -f $stamp ]]; then
  say "installing the arbiter and its locked Python packages into .venv ($lock)"
  t=$(date +%s)
  hint="a TLS proxy with its own CA needs PIP_CERT=/path/to/ca.pem (or REQUESTS_CA_BUNDLE); a mirror needs PIP_INDEX_URL; then run this again"
  .venv/bin/pip install -q --require-hashes -r "$lock" >"$logs/pip.log" 2>&1 \
    || fail "$logs/pip.log" "pip install --require-hashes -r $lock" "$hint"
  .venv/bin/pip install -q --no-deps --no-build-isolation -e . >>"$logs/pip.log" 2>&1 \
    || fail "$logs/pip.log" "pip install -e . (the arbiter itself)" "$hint"
  rm -f .venv/.installed*
  touch "$stamp"
  say "Python packages installed ($(took "$t"))"
fi
# `arbiter` on PATH, so the README's commands work as typed (deploy/path-link.sh: never
# taken from another checkout whose venv is still there)
if [[ $(id -u) -eq 0 ]]; then
  bash deploy/path-link.sh "$PWD/.venv/bin/arbiter" /usr/local/bin/arbiter >&2
fi
say "ready: .venv/bin/arbiter"
