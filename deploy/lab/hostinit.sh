#!/usr/bin/env bash
# PID 1 of a lab host (own pid + mount namespaces, inside its network namespace).
# Args: HOST ROLE HOSTDIR LABDIR PYTHON
set -eu
h=$1 role=$2 d=$3 lab=$4 py=$5
here=$(cd "$(dirname "$0")" && pwd)
# A private /run: pid files, sshd's privsep dir and sockets are this host's alone.
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/sshd
# A host of its own has its own accounts: root's login shell is /bin/sh here, so
# the machine's /root/.bashrc (tool shims, slow init) never runs in the arbiter's
# SSH commands. Bind-mounted in this host's mount namespace only.
awk -F: 'BEGIN { OFS = ":" } $1 == "root" { $7 = "/bin/sh" } { print }' /etc/passwd > "$d/passwd"
mount --bind "$d/passwd" /etc/passwd
echo "$d" > /run/lab-host-dir
if [[ $role == director ]]; then
  # Scripts keepalived runs must sit on a root-owned path (enable_script_security):
  # copy them into this host's private /run rather than run them from a checkout.
  mkdir -p /run/arbiter/bin
  cp "$here/../keepalived/arbiter-gate" "$here/../keepalived/arbiter-notify" \
     "$here/../node/arbiter-ssh-wrapper" "$here/host-keepalived" /run/arbiter/bin/
  chmod 755 /run/arbiter/bin/*
  cp "$d/ssh-wrapper.conf" /run/arbiter/ssh-wrapper.conf
  install -m 600 "$d/node.token" /run/arbiter/node.token
  mkdir -p /etc/keepalived
  mount --bind "$d/keepalived" /etc/keepalived   # this host's keepalived.conf at the usual path
  /usr/sbin/sshd -f "$d/sshd_config" -E "$d/log/sshd.log"
  nginx -c "$d/nginx.conf" -e "$d/log/nginx-error.log"
  "$here/host-keepalived" start
elif [[ $role == web ]]; then
  # the tiny responder: says which server it is
  setsid "$py" -m http.server 80 --bind 0.0.0.0 --directory "$d/www" >"$d/log/http.log" 2>&1 &
  for _ in $(seq 100); do curl -s -o /dev/null --max-time 1 http://127.0.0.1/ && break; sleep 0.05; done
fi
touch "$d/ready"
trap 'exit 0' TERM INT
while :; do sleep 3600 & wait $! || true; done
