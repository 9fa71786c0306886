#!/usr/bin/env bash
# The demo: a real keepalived pair in network namespaces and a VRRP cut, twice:
# - reactive verdicts: the arbiter detects the split brain, fences one side and
#   records the incident;
# - exclusive verdicts, with arbiter-gate wired into keepalived: the backup asks
#   /verdict before it claims the VIP, is told "deny" while the master is healthy,
#   and the cut makes no split brain at all.
# Run as root on Debian: bash deploy/lab/demo.sh   (installs what it needs first)
set -euo pipefail
cd "$(dirname "$0")/../.."
LAB=deploy/lab/lab
py=.venv/bin/python

# bold headings on a terminal only: a log file gets plain text
if [[ -t 1 ]]; then bold=$'\033[1m' plain=$'\033[0m'; else bold="" plain=""; fi
say() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }
# seconds since $t0, as "[+3.6 s]"; awk, not bc: bc is not on a minimal Debian
since() { awk -v now="$(date +%s.%N)" -v t0="$t0" 'BEGIN { printf "[+%.1f s] ", now - t0 }'; }
step_t=$(date +%s)
done_in() { echo "($(( $(date +%s) - step_t )) s)"; step_t=$(date +%s); }

say "0. setting up: Debian packages and the arbiter in .venv (bootstrap; a first run installs, later runs check)"
bash deploy/bootstrap.sh
# this checkout's own venv, never whatever `arbiter` PATH finds first
export PATH="$PWD/.venv/bin:$PATH" ARBITER_BIN="$PWD/.venv/bin/arbiter"

say "1. bringing up the lab (reactive verdicts, no gate): gateway, lb1 + lb2 (keepalived, sshd, nginx), web1 + web2, arbiter"
step_t=$(date +%s)
LAB_ID=$(bash $LAB up --owner $$)
export LAB_ID
trap 'say "tearing the lab down"; bash $LAB down' EXIT
holders() { ip -n "al-$LAB_ID-$1" -o -4 addr show dev eth0 | grep -c 192.168.77.100 || true; }
for _ in $(seq 100); do [[ $(holders lb1) == 1 ]] && break; sleep 0.1; done
echo "lab $LAB_ID up $(done_in); keepalived elected lb1 (priority 100) as MASTER of 192.168.77.100"
echo "a client through the VIP: $(ip netns exec al-$LAB_ID-arb curl -s --max-time 2 http://192.168.77.100/) / $(ip netns exec al-$LAB_ID-arb curl -s --max-time 2 http://192.168.77.100/)"

say "2. starting the arbiter (embedded defaults, SQLite) and reading /status"
bash $LAB arbiter start
sleep 2
bash $LAB api /status | $py deploy/lab/show.py status

say "3. cutting VRRP between the directors (nft drops IP protocol 112; pings and SSH still work)"
bash $LAB fault vrrp-cut
t0=$(date +%s.%N)
last=""
for _ in $(seq 300); do  # at most 15 s, every 50 ms
  now="lb1:$(holders lb1) lb2:$(holders lb2)"
  if [[ $now != "$last" ]]; then
    case $now in
      "lb1:1 lb2:1") echo "$(since)SPLIT BRAIN: both lb1 and lb2 hold 192.168.77.100";;
      "lb1:1 lb2:0") [[ -n $last ]] && echo "$(since)one holder again: lb1";;
    esac
    [[ $now == "lb1:1 lb2:0" && $last == "lb1:1 lb2:1" ]] && break
    last=$now
  fi
  sleep 0.05
done

say "4. what the arbiter did, from its API"
id=""
for _ in $(seq 50); do
  id=$(bash $LAB api '/incidents?kind=split_brain' | $py -c 'import json,sys; i=json.load(sys.stdin)["items"]; print(i[0]["id"] if i and i[0]["state"] in ("fenced","held","resolved") else "")')
  # the survivor's gratuitous ARP is the last recorded step
  [[ -n $id ]] && bash $LAB api "/incidents/$id" | grep -Eq '"step": *"announce"' && break
  sleep 0.2
done
[[ -n $id ]] || { echo "no fenced incident after 10 s: see bash $LAB arbiter log" >&2; exit 1; }
bash $LAB api "/incidents/$id" | $py deploy/lab/show.py incident
echo
echo "verdicts: lb1 $(bash $LAB api '/verdict?cluster=web&node=lb1&format=text') lb2 $(bash $LAB api '/verdict?cluster=web&node=lb2&format=text')"
sleep 1.5  # keepalived exits just after dropping the VIP; the survivor's gratuitous ARP
echo "lb2's keepalived: $(bash $LAB exec lb2 pidof keepalived >/dev/null && echo running || echo stopped); a client through the VIP: $(ip netns exec al-$LAB_ID-arb curl -s --max-time 2 http://192.168.77.100/)"

say "5. the same cut with exclusive verdicts: lab up --gate (arbiter-gate, track files and notify in keepalived)"
bash $LAB down 2>/dev/null
echo "the first lab ($LAB_ID) is torn down; a second one comes up with the gate wired"
step_t=$(date +%s)
LAB_ID=$(bash $LAB up --gate --owner $$)
export LAB_ID
for _ in $(seq 100); do [[ $(holders lb1) == 1 ]] && break; sleep 0.1; done
bash $LAB arbiter start
echo "lab $LAB_ID up, arbiter started $(done_in)"
verdict_lb2() { bash $LAB api "/verdict?cluster=web&node=lb2&vip=192.168.77.100" | $py -c 'import json,sys; v=json.load(sys.stdin); print(v["verdict"] + ": " + v["reason"].removeprefix("deny: "))'; }
for _ in $(seq 100); do verdict_lb2 | grep -q "^allow: hears" && break; sleep 0.1; done
echo "lb2 hears lb1's adverts, so it stays BACKUP with its timers running: $(verdict_lb2)"
bash $LAB fault vrrp-cut
dual=0 n=0 denied=""
t0=$(date +%s.%N)
for _ in $(seq 160); do  # 8 s, every 50 ms
  n=$((n + 1))
  [[ $(holders lb1) == 1 && $(holders lb2) == 1 ]] && dual=$((dual + 1))
  [[ -z $denied && $(bash $LAB exec lb2 cat /run/arbiter-verdict/VI_1) == 1 ]] && denied=$(since)
  sleep 0.05
done
echo "${denied}lb2 stopped hearing lb1, which is alive and sending: denied through its track file (FAULT)"
echo "VRRP cut, sampled every 50 ms for 8 s: $dual of $n samples show two holders"
echo "why: $(verdict_lb2)"
echo "split-brain incidents: $(bash $LAB api '/incidents?kind=split_brain' | $py -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))')"

say "6. the cut heals: lb2 is allowed again without an operator"
bash $LAB heal vrrp-cut
t0=$(date +%s.%N)
# a denied backup counts no adverts in FAULT: a probe lifts its deny once every 10 s,
# and in BACKUP it hears lb1 again
for _ in $(seq 300); do verdict_lb2 | grep -q "allowed$" && break; sleep 0.1; done  # at most 30 s
echo "$(since)$(verdict_lb2) (a probe lifts a deny once every 10 s to test the cut)"

say "7. a real failover under exclusive verdicts: every keepalived process on lb1 killed (-9)"
bash $LAB fault keepalived-kill lb1
t0=$(date +%s.%N)
took=""
for _ in $(seq 300); do  # at most 15 s
  [[ -z $took && $(holders lb2) == 1 ]] && { took=$(since); echo "${took}lb2 holds 192.168.77.100: nobody denied it, since lb1 sends no adverts any more (plain keepalived: ~3.6 s)"; }
  [[ -n $took && $(holders lb1) == 0 ]] && { echo "$(since)lb1's stale copy of the VIP removed by the arbiter (ip addr del)"; break; }
  sleep 0.05
done
for _ in $(seq 50); do bash $LAB api /status | grep -q '"state":"fencing"' || break; sleep 0.1; done
bash $LAB api /status | $py deploy/lab/show.py status
