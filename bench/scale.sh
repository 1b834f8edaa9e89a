#!/usr/bin/env bash
# Point-select served by a read replica and through PgBouncer in session mode, each next to
# the primary served directly, in one run with the rounds interleaved (direct, replica,
# pgbouncer, direct, …): the "Beyond one server" figures of docs/PERFORMANCE.md.
#
# It starts a primary and a streaming standby (pg_basebackup -R) of its own, and a PgBouncer
# (pool_mode = session) in front of the primary, all on free loopback ports, seeds the
# benchmark's table (bench/sql/schema.sql and seed.sql) on the primary, and removes
# everything at the end. As root, the servers run as the `postgres` user.
#
# Environment: ROUNDS [5], BENCH_POINT_OPS [100000], BENCH_N [10000], BENCH_C [8], BENCH_P [8].
# Needs: PostgreSQL's server programs (initdb, pg_ctl, pg_basebackup, psql), pgbouncer and
# python3.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/db-target}"
ROUNDS=${ROUNDS:-5}
export BENCH_POINT_OPS=${BENCH_POINT_OPS:-100000} BENCH_N=${BENCH_N:-10000}
export BENCH_C=${BENCH_C:-8} BENCH_P=${BENCH_P:-8} BENCH_SSLMODE=disable

bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
pgbouncer=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
[[ -x $pgbouncer ]] || { echo "scale: pgbouncer is not installed" >&2; exit 1; }

work=$(mktemp -d /tmp/db-scale.XXXXXX)
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[[ $(id -u) == 0 ]] && chown postgres "$work"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
primary_port=$(free_port); standby_port=$(free_port); bouncer_port=$(free_port)

cleanup() {
  [[ -f $work/pgbouncer.pid ]] && kill "$(cat "$work/pgbouncer.pid")" 2>/dev/null || true
  for node in standby primary; do
    [[ -d $work/$node ]] && as_pg "$bin/pg_ctl" -D "$work/$node" -m immediate -w stop >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

start() { # node port
  as_pg "$bin/pg_ctl" -D "$work/$1" -l "$work/$1.log" -w -o \
    "-p $2 -c listen_addresses=127.0.0.1 -k $work" start >/dev/null
}
echo "scale: primary on $primary_port, standby on $standby_port, pgbouncer on $bouncer_port"
as_pg "$bin/initdb" -D "$work/primary" -U postgres -A trust -E UTF8 --no-sync >/dev/null
start primary "$primary_port"
psql_() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$primary_port" -U postgres "$@"; }
psql_ -d postgres -c "CREATE DATABASE bench"
psql_ -d bench -f bench/sql/schema.sql
psql_ -d bench -v rows="$BENCH_N" -v email_fmt='user%s@bench.example' -f bench/sql/seed.sql
as_pg "$bin/pg_basebackup" -h 127.0.0.1 -p "$primary_port" -U postgres -D "$work/standby" \
  -R -X stream --checkpoint=fast --no-sync
start standby "$standby_port"

user_line=""
[[ $(id -u) == 0 ]] && user_line="user = postgres"
cat >"$work/pgbouncer.ini" <<INI
[databases]
* = host=127.0.0.1 port=$primary_port
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bouncer_port
unix_socket_dir =
auth_type = trust
auth_file = $work/userlist.txt
pool_mode = session
default_pool_size = 16
max_client_conn = 200
logfile = $work/pgbouncer.log
pidfile = $work/pgbouncer.pid
$user_line
INI
echo '"postgres" ""' >"$work/userlist.txt"
[[ $(id -u) == 0 ]] && chown -R postgres "$work"
"$pgbouncer" -d "$work/pgbouncer.ini"
for _ in $(seq 50); do [[ -f $work/pgbouncer.pid ]] && break; sleep 0.1; done

export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=4
cargo build --release --quiet -p db-bench
db_bench="$CARGO_TARGET_DIR/release/db-bench"
results="$work/results.jsonl"
direct="postgres://postgres@127.0.0.1:$primary_port/bench"
for round in $(seq "$ROUNDS"); do
  BENCH_IMPL_NAME=direct BENCH_DATABASE_URL=$direct "$db_bench" point-select >>"$results"
  BENCH_IMPL_NAME=replica BENCH_DATABASE_URL=$direct \
    BENCH_REPLICA_URL="postgres://postgres@127.0.0.1:$standby_port/bench" \
    "$db_bench" point-select >>"$results"
  BENCH_IMPL_NAME=pgbouncer-session \
    BENCH_DATABASE_URL="postgres://postgres@127.0.0.1:$bouncer_port/bench" \
    "$db_bench" point-select >>"$results"
  echo "scale: round $round of $ROUNDS done"
done

python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault(r["impl"], []).append(r)
print(f"{'served by':<18} {'runs':>4} {'ops/s (median)':>15} {'p99 µs':>8} {'client CPU µs/op':>17}")
med = {}
for name, rs in by.items():
    med[name] = {k: statistics.median(r[k] for r in rs) for k in ("ops_per_s", "p99_us", "cpu_us_per_op")}
    m = med[name]
    print(f"{name:<18} {len(rs):>4} {m['ops_per_s']:>15.0f} {m['p99_us']:>8.0f} {m['cpu_us_per_op']:>17.2f}")
for name in med:
    if name != "direct":
        print(f"{name} / direct: ops/s {med[name]['ops_per_s'] / med['direct']['ops_per_s']:.3f}x, "
              f"client CPU per op {med[name]['cpu_us_per_op'] / med['direct']['cpu_us_per_op']:.3f}x")
PY
