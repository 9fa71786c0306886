#!/usr/bin/env bash
# Install what the demo and the tests need on a fresh Debian machine (as root):
# Debian packages for the lab, and the project in a virtualenv at .venv.
#   bash deploy/bootstrap.sh            # lab packages + the arbiter
#   bash deploy/bootstrap.sh --test     # also test extras and PostgreSQL
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
[[ ${1:-} == --test ]] && want_test=1

# netbase: /etc/protocols (nftables only recommends it); e2fsprogs: chattr for the
# store tests
pkgs=(keepalived openssh-server openssh-client nftables iproute2 iputils-ping iputils-arping nginx curl util-linux procps python3-venv busybox dash netbase e2fsprogs)
# chromium: tests/test_page.py drives it headless through playwright; prometheus:
# promtool checks deploy/prometheus/arbiter-rules.yml (its service is kept from starting)
[[ $want_test == 1 ]] && pkgs+=(postgresql chromium prometheus)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  [[ $(id -u) -eq 0 ]] || { echo "bootstrap: need root to install: ${missing[*]}" >&2; exit 1; }
  echo "bootstrap: apt-get install ${missing[*]}"
  # The lab runs its own sshd/nginx/keepalived inside namespaces: keep the packages
  # from starting system-wide copies in the root namespace while they install.
  made_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; made_policy=1
  fi
  trap '[[ $made_policy == 1 ]] && rm -f /usr/sbin/policy-rc.d' EXIT
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
extras=""
[[ $want_test == 1 ]] && extras="[test]"
stamp=.venv/.installed$extras
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
  echo "bootstrap: pip install -e .$extras"
  .venv/bin/pip install -q --upgrade pip >.venv/pip.log 2>&1 || { cat .venv/pip.log; exit 1; }
  .venv/bin/pip install -q -e ".$extras" >.venv/pip.log 2>&1 || { cat .venv/pip.log; exit 1; }
  touch "$stamp"
fi
# `arbiter` on PATH, so the README's commands work as typed: a link to this checkout's
# venv, made or moved here only where /usr/local/bin/arbiter is absent or is a link
link=/usr/local/bin/arbiter
if [[ $(id -u) -eq 0 && ( ! -e $link || -L $link ) ]]; then
  ln -sfn "$PWD/.venv/bin/arbiter" "$link"
fi
if command -v arbiter >/dev/null; then
  echo "bootstrap: ready ($(command -v arbiter) -> .venv/bin/arbiter)"
else
  echo "bootstrap: ready (.venv/bin/arbiter; not on PATH)"
fi
