#!/usr/bin/env bash
# Run every test: lint, unit and property tests, SSH against simulated nodes, the
# store on SQLite and PostgreSQL, the API, the network-namespace lab, and the
# benchmark smoke runs. Installs what it needs first. Run as root on Debian.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== set-up: Debian packages and .venv (bootstrap --test; a first run installs, later runs check)"
bash deploy/bootstrap.sh --test
PY=.venv/bin/python

echo "== ruff"
.venv/bin/ruff check arbiter tests migrations $(ls -d bench 2>/dev/null)
# the layers (pyproject.toml [tool.importlinter]): an import up a layer, between two
# adapters, or of I/O from the policy fails the run here
echo "== lint-imports"
.venv/bin/lint-imports --no-cache

# A throw-away PostgreSQL cluster on 127.0.0.1, stopped again on exit.
pgdir=$(mktemp -d /tmp/arbiter-pg.XXXXXX)
cleanup() {
  if [[ -f $pgdir/data/postmaster.pid ]]; then
    su postgres -s /bin/sh -c "cd / && $(ls -d /usr/lib/postgresql/*/bin | tail -1)/pg_ctl -D $pgdir/data -m immediate stop" >/dev/null 2>&1 || true
  fi
  rm -rf "$pgdir"
  bash deploy/lab/lab gc >/dev/null 2>&1 || true
}
trap cleanup EXIT
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tail -1 || true)
if [[ -n $pgbin ]]; then
  chown postgres "$pgdir"
  port=55432
  su postgres -s /bin/sh -c "cd / && $pgbin/initdb -D $pgdir/data -A trust -U postgres -E UTF8 --locale=C.UTF-8 >/dev/null && \
    $pgbin/pg_ctl -D $pgdir/data -o '-k $pgdir -h 127.0.0.1 -p $port' -l $pgdir/log -w start >/dev/null"
  su postgres -s /bin/sh -c "cd / && $pgbin/createdb -h 127.0.0.1 -p $port arbiter_test"
  export ARBITER_TEST_PG_URL="postgresql+psycopg://postgres@127.0.0.1:$port/arbiter_test"
  echo "== PostgreSQL $($pgbin/postgres --version | awk '{print $3}') on 127.0.0.1:$port"
else
  echo "== PostgreSQL not installed: store tests run on SQLite only"
fi

if [[ $# -eq 0 ]]; then
  # Benchmark smoke runs: tiny sizes, no timing assertions; they only must not rot.
  echo "== bench smoke (numbers are not judged here; see BENCHMARKS.md)"
  # Each on its own line: under `set -e` a failing `cmd && echo ok` would not stop CI.
  # no import cycle, none up a layer or across siblings (exit 1 otherwise)
  $PY -m bench.imports >/dev/null
  echo "bench.imports: ok"
  $PY -m bench.scale --nodes 10 --warm-rounds 2
  # the real `arbiter serve`, keepalived's view on and off (issue 32)
  $PY -m bench.scale --serve --nodes 10 --seconds 2 --warmup 1 >/dev/null
  echo "bench.scale --serve: ok"
  $PY -m bench.verdict --rate 200 --seconds 2 >/dev/null
  echo "bench.verdict: ok"
  $PY -m bench.verdict --mixed --rate 200 --seconds 2 --incidents 100 >/dev/null
  echo "bench.verdict --mixed: ok"
  # several arbiters ([ha]) on a throw-away PostgreSQL of its own, three shards
  $PY -m bench.ha --nodes 10 --rounds 3 --shards 3 >/dev/null
  echo "bench.ha: ok"
  # the lease's renewals beside pgbench load on a throw-away PostgreSQL
  $PY -m bench.lease_load --seconds 3 --clients 0 4 >/dev/null
  echo "bench.lease_load: ok"
  $PY -m bench.window --cuts 1 --modes push garp gate seed push6 ndp --seed-observe 6 >/dev/null
  echo "bench.window: ok"
  $PY -m bench.window --modes failover --failover-reps 1 --failover-observe 12 \
    --failover-faults keepalived-stop >/dev/null
  echo "bench.window failover (exclusive verdicts): ok"
  # the fault soak: 10 random faults on the lab, every invariant checked (exit 1 on any)
  $PY -m bench.soak --faults 10 --seed 1 2>/dev/null
  echo "bench.soak: ok"
  # the HA soak: 10 random faults on three arbiters and a PostgreSQL host (H1-H8)
  $PY -m bench.soak --ha 3 --faults 10 --seed 1 2>/dev/null
  echo "bench.soak --ha 3: ok"
fi

echo "== pytest"
export ARBITER_LAB_REQUIRED=1   # lab tests must run here, never skip
$PY -m pytest -q "$@"
