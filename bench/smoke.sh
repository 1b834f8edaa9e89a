#!/usr/bin/env bash
# Smoke run of the benchmark (CI's last step): builds db-bench (release), makes sure the
# `bench` role and database exist (the logic of the harness's setup-db.sh, idempotent), copies
# the read-only harness to a temporary folder and runs every workload once at tiny sizes,
# this project only. It checks that the binary still honours the harness contract (one JSON
# line, rows really inserted, emails really lower-cased); it measures nothing worth keeping.
#
# The harness is looked for in $BENCH_HARNESS, then ../shared/bench beside the clone, then
# /work/shared/bench. Needs root (for `su postgres`) only when the database must be created.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/db-target}"

harness=""
for dir in "${BENCH_HARNESS:-}" "$PWD/../shared/bench" /work/shared/bench; do
  if [[ -n $dir && -x $dir/run.sh ]]; then harness=$dir; break; fi
done
if [[ -z $harness ]]; then
  echo "bench smoke: the harness (shared/bench/run.sh) was not found; set BENCH_HARNESS" >&2
  exit 1
fi

# Built with peer-sqlx's codegen-units (its Cargo.toml sets 4), as docs/PERFORMANCE.md says.
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=4
echo "building db-bench (release)"
cargo build --release --quiet -p db-bench
bin="$CARGO_TARGET_DIR/release/db-bench"

export BENCH_DATABASE_URL=${BENCH_DATABASE_URL:-postgres://bench:bench@127.0.0.1:5432/bench}
export BENCH_SSLMODE=${BENCH_SSLMODE:-disable}
if ! PGSSLMODE=$BENCH_SSLMODE psql -X -q -d "$BENCH_DATABASE_URL" -Atc 'SELECT 1' >/dev/null 2>&1; then
  echo "creating the bench role and database (as the harness's setup-db.sh does)"
  read -r ver cluster < <(pg_lsclusters -h | awk '$4 == "online" { print $1, $2; exit }') || true
  if [[ -z ${ver:-} ]]; then
    read -r ver cluster < <(pg_lsclusters -h | awk '{ print $1, $2; exit }') || true
    pg_ctlcluster --skip-systemctl-redirect "$ver" "$cluster" start
  fi
  (cd / && su postgres -c "psql -X -q -v ON_ERROR_STOP=1") <<'SQL'
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bench') THEN
    CREATE ROLE bench LOGIN SUPERUSER PASSWORD 'bench';
  ELSE
    ALTER ROLE bench LOGIN SUPERUSER PASSWORD 'bench';
  END IF;
END $$;
SELECT 'CREATE DATABASE bench OWNER bench'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'bench')\gexec
SQL
  hba=/etc/postgresql/$ver/$cluster/pg_hba.conf
  if ! grep -Eq '^[[:space:]]*host[[:space:]]+(all|bench)[[:space:]]+(all|bench)[[:space:]]+127\.0\.0\.1/32[[:space:]]+(scram-sha-256|md5)' "$hba"; then
    sed -i '1i host    bench           bench           127.0.0.1/32            scram-sha-256' "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$ver" "$cluster" reload
  fi
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$harness" "$work/bench"
chmod -R u+w "$work/bench"
"$work/bench/run.sh" --no-build -R 1 -i seaorm --impl seaorm="$bin" --ref seaorm \
  -N 1000 --ops 2000 --insert-ops 500 --bulk-rows 5000 --lower-rows 5000 --health-ops 200
