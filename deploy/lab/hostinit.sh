#!/usr/bin/env bash
# PID 1 of a lab host (own pid, mount and UTS namespaces, inside its network namespace).
# Args: HOST ROLE HOSTDIR ADDRESS
# It starts the host's services, checks each one answers, then writes HOSTDIR/ready,
# or HOSTDIR/failed with the reason: `lab up` waits for one of the two, and reports it.
# No name lookup happens here: the host's /etc/hosts and resolv.conf are the lab's own
# (/etc/netns, mounted by ip netns exec), and every service binds an address.
set -eu
h=$1 role=$2 d=$3 addr=$4
here=$(cd "$(dirname "$0")" && pwd)
hostname "$h"  # this host's own name (its UTS namespace), listed in its /etc/hosts
# A private /run: pid files, sshd's privsep dir and sockets are this host's alone.
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/sshd
# and a private /tmp: keepalived writes its JSON dump to /tmp/keepalived.json. The
# checkout itself may live under /tmp (a throw-away clone, `mktemp -d`): it stays
# visible at its own path, the rest of the machine's /tmp does not.
repo=$(cd "$here/../.." && pwd)
if [[ $repo == /tmp/* ]]; then
  mkdir -p /run/lab-machine-tmp
  mount --bind /tmp /run/lab-machine-tmp
fi
mount -t tmpfs -o mode=1777 tmpfs /tmp
if [[ $repo == /tmp/* ]]; then
  mkdir -p "$repo"
  mount --bind "/run/lab-machine-tmp/${repo#/tmp/}" "$repo"
  umount -l /run/lab-machine-tmp && rmdir /run/lab-machine-tmp
fi
# A host of its own has its own accounts: root's login shell is /bin/sh here, so
# the machine's /root/.bashrc (tool shims, slow init) never runs in the arbiter's
# SSH commands. Bind-mounted in this host's mount namespace only.
awk -F: 'BEGIN { OFS = ":" } $1 == "root" { $7 = "/bin/sh" } { print }' /etc/passwd > "$d/passwd"
mount --bind "$d/passwd" /etc/passwd
echo "$d" > /run/lab-host-dir

failed() { echo "$*" > "$d/failed"; exit 1; }
listening() {  # PORT: a socket listens on this host's address (or any address)
  ss -Hltn "sport = :$1" | grep -q .
}
wait_for() {  # WHAT CMD...: up to 5 s
  local what=$1; shift
  for _ in $(seq 100); do "$@" && return 0; sleep 0.05; done
  failed "$what"
}

if [[ $role == director ]]; then
  # Scripts keepalived runs must sit on a root-owned path (enable_script_security):
  # copy them into this host's private /run rather than run them from a checkout.
  mkdir -p /run/arbiter/bin
  cp "$here/../keepalived/arbiter-gate" "$here/../keepalived/arbiter-notify" \
     "$here/../node/arbiter-ssh-wrapper" "$here/host-keepalived" /run/arbiter/bin/
  chmod 755 /run/arbiter/bin/*
  cp "$d/ssh-wrapper.conf" /run/arbiter/ssh-wrapper.conf
  install -m 600 "$d/node.token" /run/arbiter/node.token
  # the track files the arbiter writes its verdicts into (lab up --gate): allow at boot
  mkdir -p /run/arbiter-verdict
  echo 0 > /run/arbiter-verdict/VI_1
  echo 0 > /run/arbiter-verdict/VI_2
  echo 0 > /run/arbiter-verdict/VI_6
  mkdir -p /etc/keepalived
  mount --bind "$d/keepalived" /etc/keepalived   # this host's keepalived.conf at the usual path
  /usr/sbin/sshd -f "$d/sshd_config" -E "$d/log/sshd.log" || failed "sshd did not start (log/sshd.log)"
  nginx -c "$d/nginx.conf" -e "$d/log/nginx-error.log" || failed "nginx did not start (log/nginx-error.log)"
  "$here/host-keepalived" start >/dev/null || failed "keepalived did not start (log/keepalived.log)"
  wait_for "sshd does not listen on port 22 (log/sshd.log)" listening 22
  wait_for "nginx does not listen on port 80 (log/nginx-error.log)" listening 80
elif [[ $role == web ]]; then
  nginx -c "$d/nginx.conf" -e "$d/log/nginx-error.log" || failed "nginx did not start (log/nginx-error.log)"
  wait_for "http://$addr/ does not answer with the host's name" \
    sh -c "curl -s --max-time 1 http://$addr/ | grep -qx '$h'"
fi
touch "$d/ready"
trap 'exit 0' TERM INT
while :; do sleep 3600 & wait $! || true; done
